import { jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll } from 'vitest';
import { ensureDevSigningKey, parseCloudConfig, startCloud, type CloudApp } from '@vigil/cloud';
import { DetectionEvent, subjectFor, TrackPhase } from '@vigil/proto';
import type { DevPkiPaths } from '@vigil/certs';
import { natsConfig, useDatabase, useNats, usePki, uuidV7 } from '@vigil/testkit';
import { runCli } from '../../src/index.js';

export { uuidV7 };

export interface CliCloud {
  cloud: () => CloudApp;
  /** Runs the CLI in-process against this cloud (its API and dev PKI). */
  cli: (...args: string[]) => Promise<{ code: number; out: string; err: string }>;
  /** The dev PKI of this cloud (fleet CA, service certificates). */
  pki: () => DevPkiPaths;
  /** Publishes a DetectionEvent as device acme/gw-1 on `camera` (JetStream, msg id = event id); its id. */
  publish: (camera: string, label: string) => Promise<string>;
}

/**
 * The real cloud for one CLI test file: its own nats-server (mutual TLS), PostgreSQL database and dev PKI,
 * the API on a free port, `overrides` merged into the config. Device acme/gw-1 (site hq) is registered.
 */
export function useCliCloud(
  overrides: Record<string, unknown> | ((pki: DevPkiPaths) => Record<string, unknown>) = {},
): CliCloud {
  const pki = usePki({ services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const dbUrl = useDatabase();
  let cloud: CloudApp | undefined;

  beforeAll(async () => {
    const key = ensureDevSigningKey(pki().dir);
    const svc = pki().services.cloud!;
    cloud = await startCloud(
      parseCloudConfig({
        http: { port: 0 },
        database: { url: dbUrl() },
        nats: {
          servers: [`tls://localhost:${nats().port}`],
          tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key },
        },
        auth: { jwksFile: key.jwksFile },
        log: { level: 'silent' },
        ...(typeof overrides === 'function' ? overrides(pki()) : overrides),
      }),
    );
    await cloud.registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' });
  });
  afterAll(async () => {
    await cloud?.stop();
  });

  return {
    cloud: () => cloud!,
    pki,
    cli: async (...args) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await runCli(
        ['--api', `http://127.0.0.1:${cloud!.httpPort}`, '--pki', pki().dir, ...args],
        { io: { out: (t) => out.push(t), err: (t) => err.push(t) } },
      );
      return { code, out: out.join('\n'), err: err.join('\n') };
    },
    publish: async (camera, label) => {
      const svc = pki().services.cloud!;
      const nc = await connect({
        servers: [`tls://localhost:${nats().port}`],
        tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key },
      });
      const id = uuidV7(Date.now());
      try {
        await jetstream(nc).publish(
          subjectFor('acme', 'gw-1', 'evt', camera),
          DetectionEvent.encode(
            DetectionEvent.fromPartial({
              eventId: id,
              tenantId: 'acme',
              siteId: 'hq',
              deviceId: 'gw-1',
              cameraId: camera,
              occurredAt: new Date(),
              trackId: 't1',
              phase: TrackPhase.TRACK_PHASE_START,
              label,
              score: 0.75,
              box: { x: 0.1, y: 0.1, w: 0.2, h: 0.2 },
            }),
          ).finish(),
          { msgID: id },
        );
      } finally {
        await nc.close();
      }
      return id;
    },
  };
}
