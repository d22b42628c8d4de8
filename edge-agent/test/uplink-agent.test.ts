import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommitReceipt, subjectFor } from '@vigil/proto';
import { usePki } from '@vigil/testkit';
import { parseAgentConfig, startAgent, type Agent } from '../src/index.js';
import { createEventsStream, ReceiptResponder } from './helpers/receipt-responder.js';
import { appendEvents, connectCloud, DEVICE, natsUrl, useMtlsNats } from './helpers/uplink-env.js';

// The uplink as the agent wires it: config defaults, the device's connection (own inbox prefix, no echo),
// /healthz and /metrics, stop before the NATS drain.
describe('agent with uplink', () => {
  const pki = usePki({ devices: [DEVICE], services: ['cloud'] });
  const nats = useMtlsNats(pki);
  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-uplink-agent-'));
  let cloud: NatsConnection;
  let responder: ReceiptResponder;
  let agent: Agent | undefined;

  beforeAll(async () => {
    cloud = await connectCloud(pki(), nats());
    await createEventsStream(cloud);
    responder = await new ReceiptResponder({ nc: cloud }).start();
    const dev = pki().devices[`${DEVICE.tenantId}/${DEVICE.deviceId}`]!;
    agent = await startAgent(
      parseAgentConfig({
        device: DEVICE,
        dataDir,
        nats: {
          servers: [natsUrl(nats())],
          tls: { caFile: pki().caCert, certFile: dev.cert, keyFile: dev.key },
        },
        http: { port: 0 },
        uplink: { receiptTimeoutMs: 1_000 },
      }),
      { logger: pino({ level: 'warn' }) },
    );
  });
  afterAll(async () => {
    await agent?.stop();
    await responder?.stop();
    await cloud?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('has uplink defaults in the config', () => {
    const cfg = parseAgentConfig({ device: DEVICE });
    expect(cfg.uplink).toEqual({
      enabled: true,
      windowSize: 256,
      windowBytes: 8 * 1024 * 1024,
      batchSize: 64,
      publishTimeoutMs: 5_000,
      receiptTimeoutMs: 10_000,
      backoff: { initialMs: 500, maxMs: 30_000 },
    });
    expect(() =>
      parseAgentConfig({ device: DEVICE, uplink: { backoff: { initialMs: 5_000, maxMs: 1_000 } } }),
    ).toThrow(/uplink\.backoff\.initialMs/);
  });

  it('drains the outbox, reports the uplink in /healthz and /metrics', async () => {
    const a = agent!;
    expect(a.uplink).toBeDefined();
    const ids = appendEvents(a.outbox, 50);
    await expect.poll(() => a.outbox.stats().depth, { timeout: 10_000 }).toBe(0);
    expect(ids.every((id) => responder.committed.has(id))).toBe(true);

    const health = (await (await fetch(`http://127.0.0.1:${a.httpPort}/healthz`)).json()) as {
      uplink: { state: string; inFlight: number };
      checks: Record<string, { ok: boolean; detail: string }>;
    };
    expect(health.uplink).toMatchObject({ state: 'online', inFlight: 0 });
    // What vigil-updater's health gate reads (no cameras here: that check passes, saying so).
    expect(health.checks).toEqual({
      uplink: { ok: true, detail: 'uplink online' },
      cameras: { ok: true, detail: 'no cameras configured' },
      models: { ok: true, detail: 'no detection configured' },
      outbox: { ok: true, detail: 'writable' },
    });
    const metrics = await (await fetch(`http://127.0.0.1:${a.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^vigil_agent_uplink_acked_total 50$/m);
    expect(metrics).toMatch(/^vigil_agent_uplink_state\{state="online"\} 1$/m);
    expect(metrics).toMatch(/^vigil_agent_uplink_commit_latency_seconds_count 50$/m);
  });

  it('receives PubAcks and query answers on its own inbox prefix', async () => {
    const res = await fetch(`http://127.0.0.1:${nats().httpPort}/connz?subs=1`);
    const connz = (await res.json()) as {
      connections: Array<{ name?: string; subscriptions_list?: string[] }>;
    };
    const mine = connz.connections.find((c) => c.name === `vigil-agent/${DEVICE.deviceId}`);
    expect(mine?.subscriptions_list).toEqual(
      expect.arrayContaining([
        'vigil.v1.acme.gw-1.rcpt',
        expect.stringMatching(/^_DEVINBOX\.acme\.gw-1\.[A-Za-z0-9]+\.\*$/),
      ]),
    );
    expect(mine?.subscriptions_list?.some((s) => s.startsWith('_INBOX.'))).toBe(false);
  });

  it('drops and counts junk on its rcpt subject: a PubAck aimed there, a receipt naming another device', async () => {
    // Issue 12: inside a tenant account a device can still aim its PubAcks at a peer's rcpt subject.
    const a = agent!;
    const count = async (reason: string): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${a.httpPort}/metrics`)).text();
      const m = new RegExp(
        `^vigil_agent_uplink_receipts_rejected_total\\{reason="${reason}"\\} (\\d+)$`,
        'm',
      ).exec(text);
      return Number(m?.[1] ?? 0);
    };
    const invalid = await count('invalid');
    const foreign = await count('foreign');
    const rcpt = subjectFor(DEVICE.tenantId, DEVICE.deviceId, 'rcpt');
    cloud.publish(rcpt, JSON.stringify({ stream: 'EVENTS', seq: 7 }));
    cloud.publish(
      rcpt,
      CommitReceipt.encode(
        CommitReceipt.fromPartial({ tenantId: DEVICE.tenantId, deviceId: 'gw-other', eventIds: ['x'] }),
      ).finish(),
    );
    await cloud.flush();
    await expect.poll(() => count('invalid'), { timeout: 10_000 }).toBe(invalid + 1);
    await expect.poll(() => count('foreign'), { timeout: 10_000 }).toBe(foreign + 1);
    // Still working: a new event is committed and leaves the outbox.
    appendEvents(a.outbox, 1);
    await expect.poll(() => a.outbox.stats().depth, { timeout: 10_000 }).toBe(0);
  });

  it('stops the uplink before draining NATS', async () => {
    const a = agent!;
    appendEvents(a.outbox, 5);
    await a.stop();
    agent = undefined;
    expect(a.uplink?.state).toBe('offline');
  });
});
