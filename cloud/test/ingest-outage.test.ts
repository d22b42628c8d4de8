import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, PostgresCluster, printLogsOnFailure, registry } from '@vigil/testkit';
import { DEAD_LETTER_STREAM, EVENTS_STREAM } from '../src/index.js';
import {
  makeEvent,
  publishAll,
  useIngestStack,
  type DeviceLink,
  type TestDevice,
} from './support/ingest-stack.js';
import { CommitReceipt, ReceiptQuery, subjectFor, type DetectionEvent } from '@vigil/proto';

const gw1: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' };
const gw2: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-2' };

/** Publishes like the agent's uplink: retry until JetStream acks (a PubAck may be lost in an outage). */
async function publishUntilAcked(link: DeviceLink, ev: DetectionEvent): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await link.publish(ev);
      return;
    } catch (err) {
      if (attempt > 100) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

// A private PostgreSQL cluster, so that this file can crash it without touching the shared server.
describe('ingest survives a PostgreSQL crash and a nats-server kill', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-ingest-pg-'));
  const cluster = new PostgresCluster({ dir, registry });
  let dbUrl = '';
  beforeAll(async () => {
    await cluster.start();
    dbUrl = (await createDatabase(cluster.url)).url;
  });
  afterAll(async () => {
    await cluster.stop('immediate');
    rmSync(dir, { recursive: true, force: true });
  });
  printLogsOnFailure('postgres', () => cluster.logs());
  const stack = useIngestStack({ devices: [gw1, gw2], registered: [gw1, gw2], databaseUrl: () => dbUrl });

  async function distinctRows(): Promise<{ n: number; ids: number }> {
    const { rows } = await sql<{ n: string; ids: string }>`
      select count(*) as n, count(distinct event_id) as ids from events`.execute(stack.cloud().db);
    return { n: Number(rows[0]?.n), ids: Number(rows[0]?.ids) };
  }

  it('stores every event exactly once across a database crash', async () => {
    const a = await stack.device(gw1);
    const b = await stack.device(gw2);
    const linkOf = (ev: DetectionEvent) => (ev.deviceId === gw1.deviceId ? a : b);
    const batch = (n: number, tag: string) =>
      Array.from({ length: n }, (_, i) => makeEvent(i % 2 === 0 ? gw1 : gw2, { trackId: `${tag}-${i}` }));

    const before = batch(300, 'before');
    await publishAll(before, 100, (ev) => linkOf(ev).publish(ev));
    await expect.poll(() => stack.rowCount(), { timeout: 15_000 }).toBe(300);

    await cluster.kill();
    const during = batch(600, 'during');
    await publishAll(during, 100, (ev) => linkOf(ev).publish(ev));
    // Ingest keeps trying (and failing) while the database is down; nothing is acked or dead-lettered.
    await expect
      .poll(() => stack.metric('vigil_cloud_ingest_errors_total', '{stage="database"}'), { timeout: 15_000 })
      .toBeGreaterThanOrEqual(2);
    const info = await stack.jsm().streams.info(EVENTS_STREAM);
    expect(info.state.messages).toBe(600);

    await cluster.start();
    const after = batch(100, 'after');
    await publishAll(after, 100, (ev) => linkOf(ev).publish(ev));
    await expect.poll(() => stack.rowCount(), { timeout: 45_000, interval: 250 }).toBe(1000);
    expect(await distinctRows()).toEqual({ n: 1000, ids: 1000 });
    await expect.poll(async () => (await stack.jsm().streams.info(EVENTS_STREAM)).state.messages).toBe(0);
    expect((await stack.jsm().streams.info(DEAD_LETTER_STREAM)).state.messages).toBe(0);
    const all = [...before, ...during, ...after];
    await expect
      .poll(() => all.filter((ev) => !linkOf(ev).receipted.has(ev.eventId)).length, { timeout: 10_000 })
      .toBe(0);
  });

  it('resumes after nats-server is killed and restarted', async () => {
    const a = await stack.device(gw1);
    const start = await stack.rowCount();
    const first = Array.from({ length: 50 }, () => makeEvent(gw1));
    await publishAll(first, 50, (ev) => a.publish(ev));

    await stack.nats().kill();
    await stack.nats().start();
    const second = Array.from({ length: 50 }, () => makeEvent(gw1));
    // Published after the restart (the device reconnects and retries, as the uplink does).
    for (const ev of second) await publishUntilAcked(a, ev);
    await expect.poll(() => stack.rowCount(), { timeout: 45_000, interval: 250 }).toBe(start + 100);
    expect(await distinctRows()).toEqual({ n: start + 100, ids: start + 100 });
    // Receipts are core NATS: those pushed just before the kill are lost with the server. That costs
    // latency only: the device asks for the state of what it still holds, as the uplink does.
    await expect.poll(() => second.filter((ev) => !a.receipted.has(ev.eventId)).length).toBe(0);
    const unreceipted = first.filter((ev) => !a.receipted.has(ev.eventId)).map((ev) => ev.eventId);
    console.log(`[ingest] receipts lost in the nats-server kill: ${unreceipted.length} of ${first.length}`);
    const reply = await a.nc.request(
      subjectFor('acme', 'gw-1', 'rcpt'),
      ReceiptQuery.encode(
        ReceiptQuery.fromPartial({ tenantId: 'acme', deviceId: 'gw-1', eventIds: unreceipted }),
      ).finish(),
      { timeout: 5_000 },
    );
    expect(CommitReceipt.decode(reply.data).eventIds).toEqual(unreceipted);
  });
});
