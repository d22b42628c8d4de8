// The operator/account JWT setup on a 3-node cluster: every node gets the same fragment (natsServerAuthConfig,
// full resolver), the cloud starts in JWT mode with R3 streams (its service, responder and system users, the
// account publisher and the auth callout on the cluster), and every node on its own admits a service user.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { printLogsOnFailure, useDatabase, useNatsCluster, usePki } from '@vigil/testkit';
import {
  ACCOUNT_MAX_STREAMS,
  connectWithAuthority,
  ensureNatsAuthority,
  loadNatsAuthority,
  parseCloudConfig,
  startCloud,
  type CloudApp,
  type NatsAuthorityFiles,
} from '../src/index.js';

describe('NATS cluster in operator/JWT mode', () => {
  const pki = usePki({ services: ['cloud'] });
  let files: NatsAuthorityFiles | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'vigil-cluster-auth-'));
  // Before the cluster starts: the fragment goes into every node's config.
  beforeAll(async () => {
    files = await ensureNatsAuthority(dir, { maxStreams: ACCOUNT_MAX_STREAMS });
  });
  const cluster = useNatsCluster(pki, { extra: () => readFileSync(files!.serverConfigFile, 'utf8') });
  const dbUrl = useDatabase();
  const lines: string[] = [];
  printLogsOnFailure('cloud', () => lines.join(''));
  let cloud: CloudApp | undefined;
  const tls = () => {
    const c = pki().services.cloud!;
    return { caFile: pki().caCert, certFile: c.cert, keyFile: c.key };
  };

  beforeAll(async () => {
    cloud = await startCloud(
      parseCloudConfig({
        http: { port: 0 },
        database: { url: dbUrl() },
        nats: { servers: cluster().urls, tls: tls(), auth: { authorityFile: files!.authorityFile } },
        streams: { replicas: 3 },
        api: { enabled: false },
        tracing: { enabled: false },
      }),
      {
        logger: pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }),
      },
    );
  }, 180_000);
  afterAll(async () => {
    await cloud?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the cloud runs in JWT mode with R3 streams, and each node alone admits its service user', async () => {
    const authority = loadNatsAuthority(files!.authorityFile);
    for (const url of cluster().urls) {
      const nc = await connectWithAuthority(authority, 'service', 'probe', {
        servers: [url],
        tls: tls(),
        reconnect: false,
      });
      const jsm = await jetstreamManager(nc);
      const events = await jsm.streams.info('EVENTS');
      expect([url, events.config.num_replicas]).toEqual([url, 3]);
      await nc.close();
    }
  }, 120_000);
});
