// "An installer enrolls a gateway with one command": the real `vigil-agent enroll` process against a running
// cloud (gRPC DeviceService over TLS), then the real agent process with a config that names no device and no
// NATS credentials: it runs on the issued identity, nats-server (operator/JWT mode, mutual TLS) admits it as
// that device, its detections reach PostgreSQL and its heartbeats make it online. Revoking it through the
// API then drops its NATS connection.
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ensureDevConfigSigningKey,
  ensureDevSigningKey,
  ensureNatsAuthority,
  mintDevToken,
  parseCloudConfig,
  startCloud,
  type CloudApp,
  type NatsAuthorityFiles,
} from '@vigil/cloud';
import {
  asset,
  freePort,
  natsConfig,
  registry,
  repoRoot,
  useCameraSim,
  useDatabase,
  useNats,
  usePki,
} from '@vigil/testkit';

const clip = asset('videos/one-by-one-person-detection.mp4');
const model = asset('models/yolox_nano.onnx');
const haveAssets = clip !== undefined && model !== undefined;

describe.skipIf(!haveAssets)(
  'one-command enrollment: vigil-agent enroll, then events flow as that device',
  () => {
    const pki = usePki({ services: ['cloud'] });
    const work = mkdtempSync(join(tmpdir(), 'vigil-enroll-e2e-'));
    afterAll(() => rmSync(work, { recursive: true, force: true }));
    let auth: NatsAuthorityFiles;
    beforeAll(async () => {
      auth = await ensureNatsAuthority(join(work, 'nats-auth'));
    });
    const nats = useNats({
      config: (ctx) =>
        natsConfig({
          tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
          jetstream: true,
          extra: readFileSync(auth.serverConfigFile, 'utf8'),
        })(ctx),
    });
    const dbUrl = useDatabase();
    const camera = useCameraSim([{ name: 'lobby', source: { kind: 'file', path: clip ?? '', loop: true } }]);
    let cloud: CloudApp;
    let agent: ChildProcess | undefined;
    let agentLog = '';
    let agentHttpPort = 0;
    const agentHealthUrl = (): string => `http://127.0.0.1:${agentHttpPort}/healthz`;
    const dataDir = join(work, 'agent-data');
    const signingKey = () => ensureDevSigningKey(pki().dir);
    const apiToken = (role: string): Promise<string> =>
      mintDevToken({
        key: signingKey(),
        issuer: 'vigil-dev',
        audience: 'vigil-api',
        tenant: 'acme',
        roles: [role],
        sub: `${role}@acme`,
        ttlSeconds: 300,
      });

    beforeAll(async () => {
      const svc = pki().services.cloud!;
      cloud = await startCloud(
        parseCloudConfig({
          http: { port: 0 },
          database: { url: dbUrl() },
          nats: {
            servers: [`tls://localhost:${nats().port}`],
            tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key },
            auth: { authorityFile: auth.authorityFile },
          },
          // Short-lived certificates so that the agent renews during the test (at half: ~30 s in).
          identity: {
            caCertFile: pki().caCert,
            caKeyFile: pki().caKey,
            certificateTtlSeconds: 60,
            minRenewIntervalSeconds: 0,
          },
          grpc: {
            enabled: true,
            port: 0,
            tls: { certFile: pki().cloudApi.cert, keyFile: pki().cloudApi.key },
          },
          auth: { jwksFile: signingKey().jwksFile },
          fleet: { offlineAfterSeconds: 10 },
          configSigning: {
            privateJwkFile: (await ensureDevConfigSigningKey(join(work, 'config-key'))).privateJwkFile,
          },
          models: { dir: join(work, 'cloud-models') },
          media: { dir: join(work, 'cloud-media') },
        }),
        { logger: pino({ level: 'warn' }) },
      );
    });
    afterAll(async () => {
      if (agent && agent.exitCode === null) {
        agent.kill('SIGTERM');
        await new Promise((r) => agent?.once('exit', r));
      }
      await cloud?.stop();
    });

    const node = (args: string[], env: Record<string, string> = {}): ChildProcess =>
      registry.spawn(process.execPath, ['--conditions=@vigil/source', '--import', 'tsx', ...args], {
        cwd: repoRoot(),
        env: { ...process.env, ...env, FORCE_COLOR: '0' },
      });

    it('enrolls with one command and stores the identity privately', async () => {
      // The installer's token, minted through the API as an installer of the tenant.
      const installer = await apiToken('installer');
      const minted = await fetch(`http://127.0.0.1:${cloud.httpPort}/v1/enrollment-tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${installer}`, 'content-type': 'application/json' },
        body: JSON.stringify({ site_id: 'lobby', ttl_seconds: 600 }),
      });
      expect(minted.status).toBe(201);
      const secret = ((await minted.json()) as { token: string }).token;
      const child = node(
        [
          'edge-agent/src/main.ts',
          'enroll',
          '--cloud',
          `localhost:${cloud.grpcPort!}`,
          '--ca-file',
          pki().caCert,
          '--device-id',
          'gw-lobby',
          '--data-dir',
          dataDir,
        ],
        // The token travels in the environment: not on the command line, where `ps` shows it.
        { VIGIL_ENROLL_TOKEN: secret },
      );
      let out = '';
      child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number | null>((r) => child.once('exit', r));
      expect(code, out).toBe(0);
      expect(out).toMatch(/gw-lobby/);
      expect(out).toMatch(/acme/);
      const dev = await cloud.db
        .selectFrom('devices')
        .selectAll()
        .where('tenant_id', '=', 'acme')
        .where('id', '=', 'gw-lobby')
        .executeTakeFirstOrThrow();
      expect(dev.site_id).toBe('lobby');
      expect(dev.enrolled_at).toBeInstanceOf(Date);
      for (const secretFile of ['device.key', 'nats.creds'])
        expect(statSync(join(dataDir, 'identity', 'current', secretFile)).mode & 0o777).toBe(0o600);
    });

    it('runs the agent on that identity: detections reach PostgreSQL and the device is online', async () => {
      agentHttpPort = await freePort();
      const config = join(work, 'agent.json');
      writeFileSync(
        config,
        JSON.stringify({
          dataDir,
          http: { port: agentHttpPort },
          heartbeatSeconds: 1,
          identity: { renew: { atFraction: 0.5 } },
          models: [{ name: 'yolox', type: 'yolox', path: model ?? '' }],
          cameras: [
            {
              id: 'lobby',
              url: camera().url('lobby'),
              width: 640,
              height: 360,
              fps: 5,
              detect: { model: 'yolox', labels: ['person'] },
            },
          ],
          log: { level: 'info' },
        }),
      );
      agent = node(['edge-agent/src/main.ts', '--config', config]);
      agent.stdout?.on('data', (d: Buffer) => (agentLog = (agentLog + d.toString()).slice(-200_000)));
      agent.stderr?.on('data', (d: Buffer) => (agentLog = (agentLog + d.toString()).slice(-200_000)));

      // The first person walks in ~6 s into the clip; allow for start-up and a slow machine.
      await expect
        .poll(
          async () =>
            (
              await cloud.db
                .selectFrom('events')
                .select(['device_id', 'label'])
                .where('tenant_id', '=', 'acme')
                .execute()
            ).length,
          { timeout: 60_000, interval: 500 },
        )
        .toBeGreaterThan(0);
      const rows = await cloud.db.selectFrom('events').select(['device_id', 'site_id', 'label']).execute();
      expect(new Set(rows.map((r) => `${r.device_id}/${r.site_id}/${r.label}`))).toEqual(
        new Set(['gw-lobby/lobby/person']),
      );
      const token = await apiToken('viewer');
      await expect
        .poll(
          async () =>
            (
              (await (
                await fetch(`http://127.0.0.1:${cloud.httpPort}/v1/devices/gw-lobby`, {
                  headers: { authorization: `Bearer ${token}` },
                })
              ).json()) as { status?: string }
            ).status,
          { timeout: 15_000 },
        )
        .toBe('online');
      // nats-server admitted it as the device user the cloud issued.
      const connz = (await (await fetch(`http://127.0.0.1:${nats().httpPort}/connz?auth=true`)).json()) as {
        connections?: Array<{ name?: string; authorized_user?: string; name_tag?: string }>;
      };
      const conn = connz.connections?.find((c) => c.name === 'vigil-agent/gw-lobby');
      expect(conn, JSON.stringify(connz)).toBeDefined();
      expect(conn?.name_tag).toBe('acme/gw-lobby');
    });

    it('ships snapshots: stored in the media store, linked from their event, readable by an admin', async () => {
      // Start and end events carry the track's best snapshot; the agent publishes it to MEDIA before the event.
      const withSnapshot = async () =>
        cloud.db
          .selectFrom('events')
          .select(['event_id', 'snapshot_media_id', 'snapshot_sha256', 'snapshot_bytes'])
          .where('tenant_id', '=', 'acme')
          .where('snapshot_media_id', 'is not', null)
          .execute();
      await expect.poll(async () => (await withSnapshot()).length, { timeout: 30_000 }).toBeGreaterThan(0);
      const ev = (await withSnapshot())[0]!;
      await expect
        .poll(
          async () =>
            (
              await cloud.db
                .selectFrom('media')
                .select('media_id')
                .where('tenant_id', '=', 'acme')
                .where('media_id', '=', ev.snapshot_media_id!)
                .execute()
            ).length,
          { timeout: 15_000 },
        )
        .toBe(1);
      const row = await cloud.db
        .selectFrom('media')
        .selectAll()
        .where('media_id', '=', ev.snapshot_media_id!)
        .executeTakeFirstOrThrow();
      expect(row).toMatchObject({
        device_id: 'gw-lobby',
        site_id: 'lobby',
        camera_id: 'lobby',
        event_id: ev.event_id,
        sha256: ev.snapshot_sha256,
        content_type: 'image/jpeg',
      });
      const res = await fetch(`http://127.0.0.1:${cloud.httpPort}/v1/media/${ev.snapshot_media_id}`, {
        headers: { authorization: `Bearer ${await apiToken('admin')}` },
      });
      expect(res.status).toBe(200);
      const jpeg = Buffer.from(await res.arrayBuffer());
      expect(jpeg.length).toBe(Number(ev.snapshot_bytes));
      expect(jpeg.subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff]))).toBe(true);
      expect(createHash('sha256').update(jpeg).digest('hex')).toBe(ev.snapshot_sha256);
      const audited = await cloud.db
        .selectFrom('audit_log')
        .select(['actor', 'outcome'])
        .where('action', '=', 'media.read')
        .where('resource', '=', `media:acme/${ev.snapshot_media_id}`)
        .execute();
      expect(audited).toHaveLength(1);
    });

    it('renews its certificate and NATS credentials on its own and stays connected', async () => {
      const certs = () =>
        cloud.db
          .selectFrom('device_certificates')
          .select(['serial', 'issued_by', 'nats_public_key'])
          .where('device_id', '=', 'gw-lobby')
          .orderBy('issued_at')
          .execute();
      await expect.poll(async () => (await certs()).length, { timeout: 60_000, interval: 500 }).toBe(2);
      const [first, second] = await certs();
      expect(second?.issued_by).toBe('renew');
      expect(second?.serial).not.toBe(first?.serial);
      // The stored identity is the renewed one (the agent swaps it in after the cloud recorded the renewal).
      const renewedAt = (): string | null | undefined =>
        (
          JSON.parse(readFileSync(join(dataDir, 'identity', 'current', 'identity.json'), 'utf8')) as {
            renewedAt?: string | null;
          }
        ).renewedAt;
      await expect.poll(renewedAt, { timeout: 10_000 }).toBeTruthy();
      // After its reconnect the agent is connected again and heartbeats keep it online.
      const before = Date.now();
      await expect
        .poll(
          async () => {
            const connz = (await (await fetch(`http://127.0.0.1:${nats().httpPort}/connz`)).json()) as {
              connections?: Array<{ name?: string }>;
            };
            return (connz.connections ?? []).some((c) => c.name === 'vigil-agent/gw-lobby');
          },
          { timeout: 15_000 },
        )
        .toBe(true);
      await expect
        .poll(
          async () =>
            (
              await cloud.db
                .selectFrom('devices')
                .select('last_seen_at')
                .where('id', '=', 'gw-lobby')
                .executeTakeFirstOrThrow()
            ).last_seen_at?.getTime() ?? 0,
          { timeout: 15_000 },
        )
        .toBeGreaterThan(before);
    });

    it('takes a signed config from the cloud: the model by sha256 over gRPC, a new threshold, applied', async () => {
      const admin = await apiToken('admin');
      const api = (path: string, init: RequestInit = {}): Promise<Response> =>
        fetch(`http://127.0.0.1:${cloud.httpPort}${path}`, {
          ...init,
          headers: {
            authorization: `Bearer ${admin}`,
            'content-type': 'application/json',
            ...(init.headers ?? {}),
          },
        });
      // Models OTA: the admin uploads the model once, content-addressed; the agent fetches it by hash.
      const bytes = readFileSync(model!);
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const up = await api(`/v1/models/${sha256}`, {
        method: 'PUT',
        body: bytes,
        headers: { 'content-type': 'application/octet-stream' },
      });
      expect([200, 201]).toContain(up.status);
      const body = {
        models: [{ name: 'yolox-ota', type: 'yolox', sha256 }],
        cameras: [
          {
            id: 'lobby',
            url: camera().url('lobby'),
            enabled: true,
            detectFps: 5,
            width: 640,
            height: 360,
            modelName: 'yolox-ota',
            labels: ['person'],
            defaultThreshold: 0.6,
          },
        ],
      };
      expect(
        (await api('/v1/configs/device/gw-lobby', { method: 'PUT', body: JSON.stringify(body) })).status,
      ).toBeLessThan(300);
      const issued = await api('/v1/devices/gw-lobby/config/issue', { method: 'POST', body: '{}' });
      expect(issued.status, await issued.clone().text()).toBeLessThan(300);
      await expect
        .poll(
          async () => {
            const v = (await (await api('/v1/devices/gw-lobby/config')).json()) as {
              state?: string;
              appliedVersion?: number | string;
              applied_version?: number | string;
            };
            return `${v.state}`;
          },
          { timeout: 60_000, interval: 500 },
        )
        .toBe('applied');
      // The agent runs it: its metrics say which version, and the model file it fetched is the uploaded one.
      const metrics = await (await fetch(`http://127.0.0.1:${agentHttpPort}/metrics`)).text();
      expect(metrics).toMatch(/vigil_agent_config_version 1/);
      const local = readFileSync(join(dataDir, 'models', sha256));
      expect(createHash('sha256').update(local).digest('hex')).toBe(sha256);
    });

    it('revoking the device through the API drops its NATS connection', async () => {
      const token = await apiToken('admin');
      const logMark = agentLog.length;
      const started = Date.now();
      const res = await fetch(`http://127.0.0.1:${cloud.httpPort}/v1/devices/gw-lobby/revoke`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'gateway stolen' }),
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({
        result: 'revoked',
        nats: 'cut',
        revoked_by: 'admin@acme',
        certificates_revoked: 2,
      });
      await expect
        .poll(
          async () => {
            const connz = (await (await fetch(`http://127.0.0.1:${nats().httpPort}/connz`)).json()) as {
              connections?: Array<{ name?: string }>;
            };
            return (connz.connections ?? []).some((c) => c.name === 'vigil-agent/gw-lobby');
          },
          { timeout: 10_000, interval: 50 },
        )
        .toBe(false);
      console.log(
        `[enroll-e2e] revoked device gone from nats-server ${Date.now() - started} ms after the request`,
      );
      // It keeps trying and keeps being refused; its outbox keeps what it detects (nothing is lost, nothing sent).
      // Waits for a refused attempt (the agent's reconnect comes when its backoff and a busy machine let it).
      await expect
        .poll(() => agentLog.slice(logMark), { timeout: 20_000 })
        .toMatch(/authorization violation/i);
      const connz = (await (await fetch(`http://127.0.0.1:${nats().httpPort}/connz`)).json()) as {
        connections?: Array<{ name?: string }>;
      };
      expect((connz.connections ?? []).some((c) => c.name === 'vigil-agent/gw-lobby')).toBe(false);
      expect(agentLog).toMatch(/authorization violation/i);
      // ...and the agent itself keeps running (offline, buffering), it does not crash.
      expect(agent?.exitCode).toBeNull();
      expect((await fetch(agentHealthUrl())).status).toBeLessThan(600);
    });
  },
);
