// The outbox relay under a JetStream error: JOBS is full (discard new), so every publish is refused. The jobs
// of newly committed events must wait in the outbox (depth and oldest age visible, failures counted, backoff)
// and go out, each once, when JOBS has room again.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AckPolicy } from '@nats-io/jetstream';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useDatabase } from '@vigil/testkit';
import { JOBS_STREAM, WEBHOOK_JOB_SUBJECT } from '../src/integrations/jobs.js';
import { WebhookStore } from '../src/integrations/store.js';
import { makeEvent, publishAll, useIngestStack, type TestDevice } from './support/ingest-stack.js';

const gw: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-relay' };
const MIB = 1024 * 1024;

describe('webhook outbox relay: JOBS refuses, jobs wait in the outbox', () => {
  const databaseUrl = useDatabase();
  const stack = useIngestStack({
    devices: [gw],
    registered: [gw],
    databaseUrl,
    config: {
      integrations: { allowInsecureHttp: true, allowPrivateNetworks: true, jobsMaxBytes: MIB },
    },
  });
  const received: string[] = [];
  let server: Server;

  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push(
          (JSON.parse(Buffer.concat(chunks).toString()) as { event: { event_id: string } }).event.event_id,
        );
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server?.close(() => resolve()));
  });

  const depth = async (): Promise<number> => {
    const r = await sql<{ n: string }>`select count(*) as n from webhook_outbox`.execute(stack.cloud().db);
    return Number(r.rows[0]?.n);
  };

  it('keeps the jobs while JOBS is full and relays each once when it has room', async () => {
    const port = (server.address() as AddressInfo).port;
    await new WebhookStore(stack.cloud().db).create({
      tenantId: 'acme',
      url: `http://127.0.0.1:${port}/hook`,
      filter: {},
      description: undefined,
      createdBy: 'test',
    });
    // Fill JOBS with messages no consumer takes, up to its 1 MiB: on a subject the test adds to the stream
    // (JOBS itself captures only the subjects its consumers take).
    await stack.jsm().streams.update(JOBS_STREAM, { subjects: [WEBHOOK_JOB_SUBJECT, 'vigil.jobs.filler'] });
    const js = stack.jsm().jetstream();
    // Big messages, then ever smaller ones, so that not even a small job fits afterwards.
    for (const size of [60 * 1024, 4096, 256, 1]) {
      for (;;) {
        try {
          await js.publish('vigil.jobs.filler', new Uint8Array(size));
        } catch {
          break; // maximum bytes exceeded
        }
      }
    }

    const device = await stack.device(gw);
    const events = Array.from({ length: 30 }, (_, i) => makeEvent(gw, { trackId: `r-${i}` }));
    await publishAll(events, 10, (ev) => device.publish(ev));
    await expect.poll(() => stack.rowCount(), { timeout: 30_000 }).toBe(30);
    expect(await depth()).toBe(30);
    await expect
      .poll(() => stack.metric('vigil_cloud_webhook_outbox_failures_total', '{stage="publish"}'), {
        timeout: 30_000,
      })
      .toBeGreaterThanOrEqual(30);
    await expect.poll(() => stack.metric('vigil_cloud_webhook_outbox_depth'), { timeout: 30_000 }).toBe(30);
    await expect
      .poll(() => stack.metric('vigil_cloud_webhook_outbox_oldest_age_seconds'), { timeout: 30_000 })
      .toBeGreaterThan(0);
    expect(received).toEqual([]);

    // Room again: the relay (backing off meanwhile) moves every job; each event arrives once.
    // JOBS refuses purges (deny_purge, issue 12): consume the filler instead (a work queue drops what is acked).
    await stack.jsm().consumers.add(JOBS_STREAM, {
      durable_name: 'filler',
      ack_policy: AckPolicy.Explicit,
      filter_subject: 'vigil.jobs.filler',
    });
    const filler = await stack.jsm().jetstream().consumers.get(JOBS_STREAM, 'filler');
    for (let m = await filler.next({ expires: 2_000 }); m; m = await filler.next({ expires: 2_000 }))
      await m.ackAck();
    await stack.jsm().consumers.delete(JOBS_STREAM, 'filler');
    await expect.poll(() => received.length, { timeout: 60_000 }).toBeGreaterThanOrEqual(30);
    await expect.poll(() => depth(), { timeout: 30_000 }).toBe(0);
    await expect
      .poll(async () => (await stack.jsm().streams.info(JOBS_STREAM)).state.messages, { timeout: 30_000 })
      .toBe(0);
    expect([...received].sort()).toEqual(events.map((e) => e.eventId).sort());
    expect(await stack.metric('vigil_cloud_webhook_outbox_relayed_total', '{result="enqueued"}')).toBe(30);
    expect(await stack.metric('vigil_cloud_webhook_jobs_total', '{result="outboxed"}')).toBe(30);

    // A job repeated after its delivery (as after a relay crash older than the JOBS duplicate window, or a worker
    // killed between recording and acking): the worker sees the delivered attempt and does not POST again.
    const first = received[0]!;
    const db = stack.cloud().db;
    const hookId = (await sql<{ id: string }>`select id from webhooks limit 1`.execute(db)).rows[0]!.id;
    const delivered = await sql<{ n: string }>`
      select count(*) as n from webhook_deliveries where state = 'delivered'`.execute(db);
    expect(Number(delivered.rows[0]!.n)).toBe(30);
    await js.publish(
      WEBHOOK_JOB_SUBJECT,
      JSON.stringify({ webhook_id: hookId, tenant_id: 'acme', event: { event_id: first } }),
      { msgID: `repeat-${first}` },
    );
    await expect
      .poll(() => stack.metric('vigil_cloud_webhook_deliveries_total', '{result="already_delivered"}'), {
        timeout: 30_000,
      })
      .toBe(1);
    expect(received).toHaveLength(30);
  }, 180_000);
});
