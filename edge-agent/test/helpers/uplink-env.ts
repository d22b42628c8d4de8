import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import type { DevPkiPaths } from '@vigil/certs';
import { DetectionEvent, subjectFor, TrackPhase } from '@vigil/proto';
import { natsConfig, useNats, type NatsServer } from '@vigil/testkit';
import { openOutbox, type Outbox, type Priority } from '../../src/buffer/index.js';
import { createUuidV7 } from '../../src/lib/uuidv7.js';
import { inboxPrefixFor } from '../../src/uplink/index.js';

/** Shared set-up of the uplink tests: a device, mTLS NATS config, connections, outboxes and events. */

export const DEVICE = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' } as const;
export const DEVICE_KEY = `${DEVICE.tenantId}/${DEVICE.deviceId}`;

/** A nats-server for the test file: mutual TLS with the test PKI, JetStream on. */
export function useMtlsNats(pki: () => DevPkiPaths): () => NatsServer {
  return useNats({
    config: (ctx) =>
      natsConfig({
        jetstream: true,
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
}

export function natsUrl(server: NatsServer): string {
  return `tls://localhost:${server.port}`;
}

/** The cloud service's connection (its client certificate). */
export function connectCloud(pki: DevPkiPaths, server: NatsServer): Promise<NatsConnection> {
  const svc = pki.services.cloud;
  if (!svc) throw new Error('no cloud service certificate');
  return connect({
    servers: natsUrl(server),
    name: 'test-cloud',
    tls: { caFile: pki.caCert, certFile: svc.cert, keyFile: svc.key },
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
  });
}

/** The device's connection as the agent makes it (device certificate, own inbox prefix, no echo). */
export function connectDevice(
  pki: DevPkiPaths,
  server: NatsServer,
  extra: Partial<ConnectionOptions> = {},
): Promise<NatsConnection> {
  const dev = pki.devices[DEVICE_KEY];
  if (!dev) throw new Error('no device certificate');
  return connect({
    servers: natsUrl(server),
    name: `vigil-agent/${DEVICE.deviceId}`,
    tls: { caFile: pki.caCert, certFile: dev.cert, keyFile: dev.key },
    inboxPrefix: inboxPrefixFor(DEVICE),
    noEcho: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
    waitOnFirstConnect: true,
    ...extra,
  });
}

export interface TempOutbox {
  outbox: Outbox;
  dir: string;
  dispose(): void;
}

export function tempOutbox(): TempOutbox {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-uplink-'));
  const outbox = openOutbox(join(dir, 'outbox.db')); // synchronous FULL, as in the agent
  return {
    outbox,
    dir,
    dispose: () => {
      outbox.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const newId = createUuidV7();

/** Fixed, so that every test event encodes to the same size (the stream-full tests size EVENTS in events). */
const OCCURRED_AT = new Date('2026-01-01T00:00:00.123Z');

/** A DetectionEvent as the camera pipeline encodes it. */
export function eventPayload(id: string, camera = 'cam1'): Uint8Array {
  return DetectionEvent.encode(
    DetectionEvent.fromPartial({
      eventId: id,
      ...DEVICE,
      cameraId: camera,
      occurredAt: OCCURRED_AT,
      trackId: `t-${id.slice(-8)}`,
      phase: TrackPhase.TRACK_PHASE_START,
      label: 'person',
      score: 0.9,
      box: { x: 0.1, y: 0.2, w: 0.3, h: 0.4 },
    }),
  ).finish();
}

export function eventSubject(camera = 'cam1'): string {
  return subjectFor(DEVICE.tenantId, DEVICE.deviceId, 'evt', camera);
}

export { newId };

/** Appends `n` DetectionEvents (as the camera pipeline builds them) in one transaction per 500; returns ids. */
export function appendEvents(
  outbox: Outbox,
  n: number,
  opts: { camera?: string; priority?: Priority } = {},
): string[] {
  const camera = opts.camera ?? 'cam1';
  const subject = eventSubject(camera);
  const ids: string[] = [];
  for (let i = 0; i < n; i += 500) {
    const entries = Array.from({ length: Math.min(500, n - i) }, () => {
      const id = newId();
      ids.push(id);
      const payload = eventPayload(id, camera);
      return { id, priority: opts.priority ?? 1, kind: 'event', subject, payload };
    });
    for (const r of outbox.appendMany(entries))
      if (!r.accepted) throw new Error(`append refused: ${r.reason}`);
  }
  return ids;
}
