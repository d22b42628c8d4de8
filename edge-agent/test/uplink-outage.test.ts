import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { usePki } from '@vigil/testkit';
import { createEventsStream } from './helpers/receipt-responder.js';
import { startRig, type UplinkRig } from './helpers/uplink-harness.js';
import { appendEvents, connectCloud, DEVICE, useMtlsNats } from './helpers/uplink-env.js';

// A nats-server outage while the agent keeps producing events: offline, buffer, reconnect, state-based sync.
describe('uplink across a nats-server outage', () => {
  const pki = usePki({ devices: [DEVICE], services: ['cloud'] });
  const nats = useMtlsNats(pki);
  let cloud: NatsConnection;
  let rig: UplinkRig | undefined;

  beforeAll(async () => {
    cloud = await connectCloud(pki(), nats());
  });
  afterEach(async () => {
    await rig?.dispose();
    rig = undefined;
  });
  afterAll(async () => {
    await cloud?.close();
  });

  it('goes offline, keeps events, reconnects, syncs, drains: nothing lost, nothing extra', async () => {
    await createEventsStream(cloud);
    // Receipts of the last batches before the outage are lost (as if the disconnect swallowed them): only the
    // query after the reconnect can tell the agent that those events are committed.
    let loseReceipts = false;
    const r = await startRig({
      pki: pki(),
      server: nats(),
      cloud,
      uplink: { windowSize: 64, receiptTimeoutMs: 10_000 },
      responder: { dropReceipt: () => loseReceipts },
    });
    rig = r;
    const before = appendEvents(r.outbox, 300);
    await expect.poll(() => r.responder.committed.size, { timeout: 10_000 }).toBeGreaterThanOrEqual(100);
    loseReceipts = true;
    await expect.poll(() => r.responder.receiptsDropped, { timeout: 10_000 }).toBeGreaterThan(0);

    await nats().stop();
    await expect.poll(() => r.uplink.state, { timeout: 10_000 }).toBe('offline');
    const publishedOffline = await r.metric('vigil_agent_uplink_published_total');
    const during = appendEvents(r.outbox, 300);
    await sleep(500);
    expect(r.uplink.state).toBe('offline');
    expect(await r.metric('vigil_agent_uplink_published_total')).toBe(publishedOffline);
    const depthOffline = r.outbox.stats().depth;
    expect(depthOffline).toBeGreaterThanOrEqual(300);
    const committedBefore = r.responder.committed.size;

    loseReceipts = false;
    await nats().restart();
    await expect.poll(() => r.outbox.stats().depth, { timeout: 30_000 }).toBe(0);

    const all = [...before, ...during];
    expect(all.filter((id) => !r.responder.committed.has(id))).toEqual([]);
    expect(r.responder.committed.size).toBe(600);
    const afterOutage = r.states.slice(r.states.lastIndexOf('offline'));
    expect(afterOutage.slice(0, 2)).toEqual(['offline', 'syncing']);
    expect(afterOutage).toContain('online');
    expect(r.uplink.state).toBe('online');
    expect(await r.metric('vigil_agent_uplink_queries_total', { reason: 'reconnect' })).toBeGreaterThan(0);
    expect(await r.metric('vigil_agent_uplink_receipts_total', { source: 'query' })).toBeGreaterThan(0);
    const published = await r.metric('vigil_agent_uplink_published_total');
    const storedTwice = [...r.responder.stored.values()].filter((n) => n > 1).length;
    console.log(
      `outage: ${committedBefore} committed before, ${depthOffline} buffered while offline; ` +
        `${published} publishes for 600 events, ${storedTwice} stored twice in EVENTS (deduplicated by the id), ` +
        `${await r.metric('vigil_agent_uplink_requeued_total')} requeued after queries`,
    );
  });
});
