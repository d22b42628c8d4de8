// Config OTA against real services: documents through the API, signed versioned configs issued to an enrolled
// device, pushed on its cfg subject and answered on its status polls over NATS (JWT mode, mutual TLS), the
// reported state back in PostgreSQL and the API, and models streamed over gRPC FetchModel.
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createUser, type KeyPair } from '@nats-io/nkeys';
import { connect, jwtAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { compactVerify, createLocalJWKSet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigState,
  ConfigStatus,
  DeviceConfig,
  DeviceHealth,
  type DeviceServiceClient,
  type EnrollRequest,
  type EnrollResponse,
  type FetchModelResponse,
  SignedConfig,
  subjectFor,
} from '@vigil/proto';
import { ensureDevConfigSigningKey } from '../src/index.js';
import { useFleetStack } from './support/fleet-stack.js';

const tmp = mkdtempSync(join(tmpdir(), 'vigil-config-ota-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const keyDir = join(tmp, 'keys');
const modelsDir = join(tmp, 'models');
const signingKey = ensureDevConfigSigningKey(keyDir);

function makeCsr(deviceId: string): { csrPem: string; keyPem: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const keyFile = join(tmp, `k-${deviceId}.pem`);
  writeFileSync(keyFile, keyPem, { mode: 0o600 });
  const csrPem = execFileSync('openssl', ['req', '-new', '-key', keyFile, '-subj', `/CN=${deviceId}`], {
    encoding: 'utf8',
  });
  return { csrPem, keyPem };
}

interface Enrolled {
  res: EnrollResponse;
  keyPem: string;
  nkey: KeyPair;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const model = randomBytes(200 * 1024 + 123);
const modelSha = sha(model);

describe('config OTA: documents, signed versions, NATS delivery, reported state, models', () => {
  let keys: { privateJwkFile: string; jwksFile: string };
  beforeAll(async () => {
    keys = await signingKey;
  });
  const stack = useFleetStack({
    configSigning: { privateJwkFile: join(keyDir, 'config-signing.jwk.json') },
    models: { dir: modelsDir, maxBytes: 1024 * 1024 },
  });
  const open: NatsConnection[] = [];
  afterAll(async () => {
    for (const nc of open) await nc.close().catch(() => undefined);
  });

  async function enroll(deviceId: string, site = 'hq', tenant = 'acme'): Promise<Enrolled> {
    const token = await stack.enrollmentToken(tenant, site);
    const nkey = createUser();
    const { csrPem, keyPem } = makeCsr(deviceId);
    const req: EnrollRequest = {
      token,
      csrPem,
      agentVersion: '0.1.0',
      hardwareId: `hw-${deviceId}`,
      natsPublicKey: nkey.getPublicKey(),
    };
    const res = await new Promise<EnrollResponse>((resolve, reject) =>
      stack.client().enroll(req, (err, v) => (err ? reject(err) : resolve(v))),
    );
    return { res, keyPem, nkey };
  }
  async function dial(d: Enrolled): Promise<NatsConnection> {
    const certFile = join(tmp, `${d.res.deviceId}.crt`);
    const keyFile = `${certFile}.key`;
    writeFileSync(certFile, d.res.certificatePem);
    writeFileSync(keyFile, d.keyPem, { mode: 0o600 });
    const nc = await connect({
      servers: [stack.natsUrl()],
      tls: { caFile: stack.pki().caCert, certFile, keyFile },
      authenticator: jwtAuthenticator(d.res.natsUserJwt, d.nkey.getSeed()),
      inboxPrefix: `_DEVINBOX.${d.res.tenantId}.${d.res.deviceId}`,
      reconnect: false,
      timeout: 5_000,
    });
    open.push(nc);
    return nc;
  }
  const admin = (): Promise<string> => stack.token('acme', ['admin']);
  /** FetchModel to the end: the bytes, or the gRPC error. */
  const fetchAll = (client: DeviceServiceClient, hash: string): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const call = client.fetchModel({ sha256: hash, offset: 0n }, { deadline: Date.now() + 10_000 });
      call.on('data', (c: FetchModelResponse) => chunks.push(Buffer.from(c.data)));
      call.on('error', reject);
      call.on('end', () => resolve(Buffer.concat(chunks)));
    });
  async function put(path: string, body: unknown, token?: string): Promise<Response> {
    return stack.api(path, token ?? (await admin()), { method: 'PUT', body: JSON.stringify(body) });
  }
  function status(d: Enrolled, s: Partial<ConfigStatus>): Uint8Array {
    return ConfigStatus.encode(
      ConfigStatus.fromPartial({ tenantId: 'acme', deviceId: d.res.deviceId, reportedAt: new Date(), ...s }),
    ).finish();
  }
  async function verify(signed: SignedConfig, jwks: string): Promise<DeviceConfig> {
    const { payload, protectedHeader } = await compactVerify(
      signed.jws,
      createLocalJWKSet(JSON.parse(jwks) as Parameters<typeof createLocalJWKSet>[0]),
    );
    expect(protectedHeader).toMatchObject({ alg: 'ES256', typ: 'vigil-config+jws', kid: signed.keyId });
    return DeviceConfig.decode(payload);
  }

  const tenantDoc = {
    models: [{ name: 'yolox', type: 'yolox', sha256: modelSha, uri: 'vigil://models' }],
    buffer: { maxBytes: 1_000_000, ttlSeconds: 3600 },
    attributes: { region: 'eu', tier: 'gold' },
  };
  const siteDoc = {
    cameras: [{ id: 'lobby', url: 'rtsp://cam/lobby', modelName: 'yolox', detectFps: 5 }],
    attributes: { tier: 'silver' },
  };

  it('validates documents: a bad field is a 400 naming it, unknown keys are refused', async () => {
    const bad = await put('/v1/configs/site/hq', { cameras: [{ id: 'lobby', url: 'x', detectFps: -1 }] });
    expect(bad.status).toBe(400);
    const problem = (await bad.json()) as { errors: Array<{ path: string }> };
    expect(problem.errors.map((e) => e.path)).toContain('cameras.0.detectFps');
    const unknown = await put('/v1/configs/site/hq', { cameras: [], colour: 'red' });
    expect(unknown.status).toBe(400);
    expect(JSON.stringify(await unknown.json())).toContain('colour');
    expect((await put('/v1/configs/galaxy/hq', {})).status).toBe(400);
    // The tenant scope's id is the caller's tenant; another is a 404.
    expect((await put('/v1/configs/tenant/globex', {})).status).toBe(404);
  });

  it('stores revisions per scope; viewers read, only admins write', async () => {
    const first = await put('/v1/configs/tenant/acme', tenantDoc);
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ scope: 'tenant', scope_id: 'acme', revision: 1 });
    expect((await put('/v1/configs/site/hq', { cameras: [] })).status).toBe(200);
    const second = await put('/v1/configs/site/hq', siteDoc);
    expect(await second.json()).toMatchObject({ revision: 2, body: siteDoc });
    const viewer = await stack.token('acme', ['viewer']);
    const got = await stack.api('/v1/configs/site/hq', viewer);
    expect(got.status).toBe(200);
    expect(await got.json()).toMatchObject({ revision: 2, body: siteDoc, created_by: 'user@acme' });
    expect((await put('/v1/configs/site/hq', siteDoc, viewer)).status).toBe(403);
    expect((await stack.api('/v1/configs/site/nowhere', viewer)).status).toBe(404);
    // Another tenant's admin sees nothing of acme's.
    expect((await stack.api('/v1/configs/site/hq', await stack.token('globex', ['admin']))).status).toBe(404);
  });

  let d1: Enrolled;
  let nc1: NatsConnection;
  let firstVersion: bigint;

  it('issues the effective config: signed, pushed on cfg, with the device ids and expiry', async () => {
    d1 = await enroll('cfg-1');
    expect(JSON.parse(d1.res.configSigningJwks)).toHaveProperty('keys.0.kid');
    nc1 = await dial(d1);
    const pushed = new Promise<SignedConfig>((resolve) => {
      nc1.subscribe(subjectFor('acme', 'cfg-1', 'cfg'), {
        max: 1,
        callback: (_err, msg) => resolve(SignedConfig.decode(msg.data)),
      });
    });
    await nc1.flush();
    expect((await put('/v1/configs/device/cfg-1', { attributes: { owner: 'ops' } })).status).toBe(200);
    const before = Date.now();
    const res = await stack.api('/v1/devices/cfg-1/config/issue', await admin(), { method: 'POST' });
    expect(res.status).toBe(201);
    const issued = (await res.json()) as { device_id: string; version: string };
    expect(issued.device_id).toBe('cfg-1');
    firstVersion = BigInt(issued.version);
    expect(firstVersion).toBeGreaterThan(0n);

    const signed = await pushed;
    expect(signed.version).toBe(firstVersion);
    const cfg = await verify(signed, d1.res.configSigningJwks);
    expect(cfg).toMatchObject({ version: firstVersion, tenantId: 'acme', deviceId: 'cfg-1' });
    const ttl = cfg.expiresAt!.getTime() - cfg.issuedAt!.getTime();
    expect(ttl).toBe(7 * 86_400_000);
    expect(cfg.issuedAt!.getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(cfg.cameras.map((c) => c.id)).toEqual(['lobby']);
    expect(cfg.models[0]).toMatchObject({ name: 'yolox', sha256: modelSha });
    expect(cfg.attributes).toEqual({ region: 'eu', tier: 'silver', owner: 'ops' });
    expect(cfg.buffer).toMatchObject({ maxBytes: 1_000_000n, ttlSeconds: 3600 });
    // The public JWKS verifies it too (the file that ops would hand out).
    const { readFileSync } = await import('node:fs');
    await verify(signed, readFileSync(keys.jwksFile, 'utf8'));
    // A tampered payload does not verify.
    const [h, , s] = signed.jws.split('.');
    const forged = `${h}.${Buffer.from('x').toString('base64url')}.${s}`;
    await expect(verify({ ...signed, jws: forged }, d1.res.configSigningJwks)).rejects.toThrow();
  });

  it('versions strictly increase and survive a rollback-style reissue of an old body', async () => {
    const configs = stack.cloud().configs;
    const old = (await configs.effectiveConfigBody('acme', 'cfg-1'))!;
    const [v2] = await configs.issue({
      tenantId: 'acme',
      deviceIds: ['cfg-1'],
      body: { ...old, attributes: { tier: 'bad' } },
      actor: 'test',
      rolloutId: 'r-1',
    });
    const [v3] = await configs.issue({ tenantId: 'acme', deviceIds: ['cfg-1'], body: old, actor: 'test' });
    expect(v2!.version).toBe(firstVersion + 1n);
    expect(v3!.version).toBe(firstVersion + 2n);
    const rows = await stack
      .cloud()
      .db.selectFrom('device_configs')
      .select(['version', 'rollout_id'])
      .where('device_id', '=', 'cfg-1')
      .orderBy('version')
      .execute();
    expect(rows.map((r) => BigInt(r.version))).toEqual([firstVersion, firstVersion + 1n, firstVersion + 2n]);
    expect(rows[1]?.rollout_id).toBe('r-1');
    const audit = await stack
      .cloud()
      .db.selectFrom('audit_log')
      .select('action')
      .where('action', '=', 'config.issue')
      .execute();
    expect(audit.length).toBeGreaterThanOrEqual(3);
    await expect(
      configs.issue({ tenantId: 'globex', deviceIds: ['cfg-1'], body: old, actor: 'test' }),
    ).rejects.toThrow(/no such device/);
  });

  it('answers polls: the latest config to a device that was away, empty when current, refuses other ids', async () => {
    const latest = firstVersion + 2n;
    const subject = subjectFor('acme', 'cfg-1', 'status');
    const away = await nc1.request(
      subject,
      status(d1, {
        version: firstVersion,
        appliedVersion: firstVersion,
        state: ConfigState.CONFIG_STATE_APPLIED,
      }),
      { timeout: 5000 },
    );
    const signed = SignedConfig.decode(away.data);
    expect(signed.version).toBe(latest);
    expect((await verify(signed, d1.res.configSigningJwks)).version).toBe(latest);

    const current = await nc1.request(
      subject,
      status(d1, {
        version: latest,
        appliedVersion: latest,
        state: ConfigState.CONFIG_STATE_APPLIED,
        health: DeviceHealth.DEVICE_HEALTH_OK,
      }),
      { timeout: 5000 },
    );
    expect(current.data.length).toBe(0);

    // A status naming another device on this device's subject: refused, not recorded.
    const forged = await nc1.request(
      subject,
      status(d1, { deviceId: 'cfg-other', version: 0n, state: ConfigState.CONFIG_STATE_FAILED }),
      { timeout: 5000 },
    );
    expect(forged.data.length).toBe(0);
    const metrics = await (await fetch(`http://127.0.0.1:${stack.cloud().httpPort}/metrics`)).text();
    expect(metrics).toMatch(/vigil_cloud_config_status_total\{result="mismatch"\} [1-9]/);
    // And a device cannot publish on another device's status subject at all.
    await expect(
      nc1.request(subjectFor('acme', 'cfg-2', 'status'), status(d1, {}), { timeout: 1500 }),
    ).rejects.toThrow();
  });

  it('records the reported state: device_config_state and GET /v1/devices/{id}/config', async () => {
    const latest = firstVersion + 2n;
    const row = await stack
      .cloud()
      .db.selectFrom('device_config_state')
      .selectAll()
      .where('device_id', '=', 'cfg-1')
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({ state: 'applied', health: 'ok' });
    expect(BigInt(row.applied_version!)).toBe(latest);
    const res = await stack.api('/v1/devices/cfg-1/config', await stack.token('acme', ['operator']));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      device_id: 'cfg-1',
      desired_version: latest.toString(),
      applied_version: latest.toString(),
      state: 'applied',
      health: 'ok',
      effective_body: { attributes: { region: 'eu', tier: 'silver', owner: 'ops' } },
    });
    // A failed report on the desired version is what rollouts see.
    await nc1.request(
      subjectFor('acme', 'cfg-1', 'status'),
      status(d1, {
        version: latest,
        appliedVersion: latest - 1n,
        state: ConfigState.CONFIG_STATE_FAILED,
        reason: 'camera lobby did not start',
        health: DeviceHealth.DEVICE_HEALTH_DEGRADED,
      }),
      { timeout: 5000 },
    );
    const [state] = await stack.cloud().configs.desiredAndReported('acme', ['cfg-1', 'nope']);
    expect(state).toMatchObject({
      deviceId: 'cfg-1',
      desiredVersion: latest,
      state: 'failed',
      reason: 'camera lobby did not start',
      health: 'degraded',
    });
    expect((await stack.api('/v1/devices/nope/config', await admin())).status).toBe(404);
    expect((await stack.api('/v1/devices/cfg-1/config', await stack.token('globex', ['admin']))).status).toBe(
      404,
    );
  });

  it('stores models by hash and streams them to enrolled devices over FetchModel', async () => {
    const upload = (hash: string, body: Buffer): Promise<Response> =>
      admin().then((t) =>
        stack.api(`/v1/models/${hash}`, t, {
          method: 'PUT',
          body,
          headers: { 'content-type': 'application/octet-stream' },
        }),
      );
    const wrong = await upload('b'.repeat(64), model);
    expect(wrong.status).toBe(400);
    const ok = await upload(modelSha, model);
    expect(ok.status).toBe(201);
    expect(await ok.json()).toMatchObject({ sha256: modelSha, size: model.length });
    expect((await upload(modelSha, model)).status).toBe(200);
    const list = await stack.api('/v1/models', await stack.token('acme', ['viewer']));
    expect(((await list.json()) as { items: Array<{ sha256: string }> }).items.map((m) => m.sha256)).toEqual([
      modelSha,
    ]);
    const big = Buffer.alloc(1024 * 1024 + 1);
    expect((await upload(sha(big), big)).status).toBe(413);

    const fetchModel = (client: DeviceServiceClient, hash: string, offset = 0n): Promise<Buffer> =>
      new Promise((resolve, reject) => {
        const chunks: FetchModelResponse[] = [];
        const call = client.fetchModel({ sha256: hash, offset }, { deadline: Date.now() + 10_000 });
        call.on('data', (c: FetchModelResponse) => chunks.push(c));
        call.on('error', reject);
        call.on('end', () => {
          for (const c of chunks) expect(c.totalSize).toBe(BigInt(model.length));
          resolve(Buffer.concat(chunks.map((c) => Buffer.from(c.data))));
        });
      });
    const device = stack.client({ certPem: d1.res.certificatePem, keyPem: d1.keyPem });
    const got = await fetchModel(device, modelSha);
    expect(got.length).toBe(model.length);
    expect(sha(got)).toBe(modelSha);
    const rest = await fetchModel(device, modelSha, 100_000n);
    expect(rest.equals(model.subarray(100_000))).toBe(true);
    await expect(fetchModel(device, 'c'.repeat(64))).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await expect(fetchModel(stack.client(), modelSha)).rejects.toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
    });
  });

  it('scopes the models store per tenant: listing, upload, and a device fetches only what its configs name', async () => {
    // Issue 12, finding 10. acme uploaded modelSha (above) and its tenant document names it.
    const upload = (token: string, body: Buffer): Promise<Response> =>
      stack.api(`/v1/models/${sha(body)}`, token, {
        method: 'PUT',
        body,
        headers: { 'content-type': 'application/octet-stream' },
      });
    const list = async (token: string): Promise<string[]> =>
      (
        (await (await stack.api('/v1/models', token)).json()) as { items: Array<{ sha256: string }> }
      ).items.map((m) => m.sha256);
    const globexViewer = await stack.token('globex', ['viewer']);
    const globexAdmin = await stack.token('globex', ['admin']);
    expect(await list(globexViewer)).toEqual([]);

    // A globex device cannot fetch acme's model by its hash.
    const g = await enroll('gw-models-g', 'plant', 'globex');
    const gClient = stack.client({ certPem: g.res.certificatePem, keyPem: g.keyPem });
    await expect(fetchAll(gClient, modelSha)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    // Nor can an acme device that no config issued to it names the model for.
    const bare = await enroll('cfg-no-config');
    const bareClient = stack.client({ certPem: bare.res.certificatePem, keyPem: bare.keyPem });
    await expect(fetchAll(bareClient, modelSha)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });

    // globex uploads its own copy: its store, its listing; acme's listing is unchanged.
    const own = randomBytes(4096);
    expect((await upload(globexAdmin, model)).status).toBe(201);
    expect((await upload(globexAdmin, own)).status).toBe(201);
    expect((await list(globexViewer)).sort()).toEqual([modelSha, sha(own)].sort());
    expect(await list(await stack.token('acme', ['viewer']))).not.toContain(sha(own));
    // Still refused until a config issued to the device names it; then served.
    await expect(fetchAll(gClient, sha(own))).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    expect(
      (
        await put(
          '/v1/configs/device/gw-models-g',
          { models: [{ name: 'own', type: 'yolox', sha256: sha(own) }] },
          globexAdmin,
        )
      ).status,
    ).toBeLessThan(300);
    const issued = await stack.api('/v1/devices/gw-models-g/config/issue', globexAdmin, {
      method: 'POST',
      body: '{}',
    });
    expect(issued.status, await issued.clone().text()).toBe(201);
    expect((await fetchAll(gClient, sha(own))).equals(own)).toBe(true);
    await expect(fetchAll(gClient, modelSha)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    const metrics = await (await fetch(`http://127.0.0.1:${stack.cloud().httpPort}/metrics`)).text();
    expect(metrics).toMatch(/vigil_cloud_model_fetches_total\{result="not_named"\} [1-9]/);
  });
});
