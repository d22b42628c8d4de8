import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { useNatsCluster, usePki } from '../src/index.js';

// The 3-node harness: routes over mutual TLS form one JetStream cluster; an R3 stream keeps accepting writes
// with its leader's node killed -9, and the restarted node rejoins.
describe('nats-server cluster (3 nodes, routes over mutual TLS)', () => {
  const pki = usePki({ services: ['cloud'] });
  const cluster = useNatsCluster(pki);

  it('elects a meta leader, serves an R3 stream through a kill -9 of its leader, and rejoins', async () => {
    const svc = pki().services.cloud!;
    const nc = await connect({
      servers: cluster().urls,
      tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key },
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.add({ name: 'T', subjects: ['t.>'], num_replicas: 3 });
    expect(info.config.num_replicas).toBe(3);
    const js = jetstream(nc);
    for (let i = 0; i < 20; i++) await js.publish('t.a', new Uint8Array([i]), { msgID: `m${i}` });
    const leader = (await jsm.streams.info('T')).cluster?.leader;
    expect(leader).toMatch(/^n[123]$/);
    await cluster().kill(leader!);
    // Writes resume once the two remaining replicas elect a new stream leader.
    for (let i = 20; i < 40; i++) {
      for (let attempt = 0; ; attempt++) {
        try {
          await js.publish('t.a', new Uint8Array([i]), { msgID: `m${i}`, timeout: 2000 });
          break;
        } catch (err) {
          if (attempt > 60) throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    }
    const after = await jsm.streams.info('T');
    expect(after.state.messages).toBe(40);
    expect(after.cluster?.leader).not.toBe(leader);
    // Back in the meta group (the leader sees every peer current again), and the stream's peer is online.
    await cluster().restart(leader!);
    await cluster().waitForMetaLeader(60_000);
    await expect
      .poll(
        async () => {
          const r = (await jsm.streams.info('T')).cluster?.replicas ?? [];
          return r.length === 2 && r.every((p) => !p.offline);
        },
        { timeout: 60_000 },
      )
      .toBe(true);
    await nc.close();
  }, 120_000);
});
