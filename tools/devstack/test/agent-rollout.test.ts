// Staged agent-version rollouts (issue 14 point 4) with real agents: the real cloud (gRPC enrollment, NATS in
// JWT mode with mutual TLS, PostgreSQL, the rollout executor, the TUF release repository), releases published
// with `vigil release publish`, four edge agents enrolled with `vigil-agent enroll` and running in this process,
// and, per agent, a stand-in for vigil-updater: a loop that reads <dataDir>/update/request.json and writes
// status.json as the updater does (downloading, then committed after restarting the agent as the new version,
// or rolled_back for a release marked bad, the old agent left running).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '@vigil/cli';
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
  parseAgentConfig,
  runEnrollCommand,
  startAgent,
  updateRequestSchema,
  type Agent,
  type UpdateRequest,
  type UpdateStatus,
} from '@vigil/edge-agent';
import { natsConfig, useDatabase, useNats, usePki } from '@vigil/testkit';

const IDS = ['gw-0', 'gw-1', 'gw-2', 'gw-3'];
const V1 = '1.0.0';
const GOOD = '1.1.0';
const BAD = '1.2.0';
const silent = pino({ level: 'silent' });

/** What the tests read of the API's answers (rollouts, devices, problems): every field they touch, typed. */
interface Answer {
  id: string;
  state: string;
  abort_reason: string | null;
  type: string;
  detail: string;
  errors: Array<{ path: string; message: string }>;
  items: unknown[];
  totals: Record<string, number>;
  waves: Array<{ devices: number }>;
  update: Record<string, unknown> | null;
}

/** One gateway: its agent (restarted as another version by the stand-in updater) and what it was asked. */
interface Gateway {
  id: string;
  dataDir: string;
  version: string;
  agent: Agent | undefined;
  /** Every distinct request.json the stand-in saw, with when it saw it. */
  requests: Array<UpdateRequest & { seenAt: number }>;
  timer?: NodeJS.Timeout;
  busy: boolean;
}

describe('agent-version rollouts with real agents and a stand-in updater', () => {
  const work = mkdtempSync(join(tmpdir(), 'vigil-agent-rollout-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  const keysDir = join(work, 'release-keys');
  const pki = usePki({ services: ['cloud'] });
  let auth: NatsAuthorityFiles;
  beforeAll(async () => {
    auth = await ensureNatsAuthority(join(work, 'nats-auth'));
    // The release keys must exist before the cloud starts (it loads the online key).
    const lines: string[] = [];
    const code = await runCli(['release', 'root', 'init', '--keys-dir', keysDir], {
      io: { out: (t) => lines.push(t), err: (t) => lines.push(t) },
    });
    expect(code, lines.join('\n')).toBe(0);
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
  let cloud: CloudApp;
  const gateways: Gateway[] = [];
  const badVersions = new Set([BAD]);

  const cli = async (...args: string[]): Promise<{ code: number; out: string }> => {
    const out: string[] = [];
    const code = await runCli(['--api', `http://127.0.0.1:${cloud.httpPort}`, '--pki', pki().dir, ...args], {
      io: { out: (t) => out.push(t), err: (t) => out.push(t) },
    });
    return { code, out: out.join('\n') };
  };
  const token = (tenant: string, role: string): Promise<string> =>
    mintDevToken({
      key: ensureDevSigningKey(pki().dir),
      issuer: 'vigil-dev',
      audience: 'vigil-api',
      tenant,
      roles: [role],
      sub: `${role}@${tenant}`,
      ttlSeconds: 900,
    });
  const api = async (
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json: Answer }> => {
    const res = await fetch(`http://127.0.0.1:${cloud.httpPort}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${await token('acme', 'admin')}`,
        'content-type': 'application/json',
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json().catch(() => null)) as Answer };
  };

  function bundle(version: string): string {
    const src = join(work, `src-${version}`, 'vigil-agent');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'VERSION'), `${version}\n`);
    const out = join(work, `vigil-agent-${version}-linux-x64.tar.gz`);
    execFileSync('tar', ['-czf', out, '-C', join(work, `src-${version}`), 'vigil-agent']);
    return out;
  }
  const publish = async (version: string, channel: string, minVersion: string): Promise<void> => {
    const r = await cli(
      'release',
      'publish',
      bundle(version),
      '--agent-version',
      version,
      '--channel',
      channel,
      '--min-version',
      minVersion,
      '--keys-dir',
      keysDir,
      '--tenant',
      'vigil',
      '--role',
      'admin',
    );
    expect(r.code, r.out).toBe(0);
  };

  const start = (g: Gateway): Promise<Agent> =>
    startAgent(
      parseAgentConfig({
        dataDir: g.dataDir,
        http: { port: 0 },
        heartbeatSeconds: 1,
        remoteConfig: { pollSeconds: 1, healthTimeoutSeconds: 5 },
        cameras: [],
        log: { level: 'silent' },
      }),
      { logger: silent, agentVersion: g.version },
    );

  /** Writes status.json as the updater does: tmp, then rename. */
  const writeStatus = (g: Gateway, s: Omit<UpdateStatus, 'updatedAt'>): void => {
    const dir = join(g.dataDir, 'update');
    mkdirSync(dir, { recursive: true });
    const tmp = join(dir, '.status.json.tmp');
    writeFileSync(tmp, JSON.stringify({ ...s, updatedAt: new Date().toISOString() }));
    renameSync(tmp, join(dir, 'status.json'));
  };

  /**
   * The stand-in updater: a new request (not the running version, not handled yet) goes downloading; a good
   * release restarts the agent as that version and commits; a bad one "fails its health gate" and rolls back
   * (the old agent keeps running).
   */
  async function updaterStep(g: Gateway): Promise<void> {
    let req: UpdateRequest;
    try {
      req = updateRequestSchema.parse(
        JSON.parse(readFileSync(join(g.dataDir, 'update', 'request.json'), 'utf8')),
      );
    } catch {
      return;
    }
    const last = g.requests[g.requests.length - 1];
    if (last?.requestedAt === req.requestedAt && last.version === req.version) return;
    g.requests.push({ ...req, seenAt: Date.now() });
    if (req.version === g.version) return;
    writeStatus(g, {
      state: 'downloading',
      current: g.version,
      previous: null,
      target: req.version,
      reason: null,
    });
    await new Promise((r) => setTimeout(r, 200));
    if (badVersions.has(req.version)) {
      writeStatus(g, {
        state: 'rolled_back',
        current: g.version,
        previous: null,
        target: req.version,
        reason: `health gate: cameras never streamed on ${req.version}`,
      });
      return;
    }
    writeStatus(g, {
      state: 'switching',
      current: g.version,
      previous: null,
      target: req.version,
      reason: null,
    });
    await g.agent?.stop();
    const previous = g.version;
    g.version = req.version;
    g.agent = await start(g);
    writeStatus(g, { state: 'committed', current: g.version, previous, target: g.version, reason: null });
  }

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
        identity: {
          caCertFile: pki().caCert,
          caKeyFile: pki().caKey,
          certificateTtlSeconds: 3600,
          minRenewIntervalSeconds: 0,
        },
        grpc: { enabled: true, port: 0, tls: { certFile: pki().cloudApi.cert, keyFile: pki().cloudApi.key } },
        auth: { jwksFile: ensureDevSigningKey(pki().dir).jwksFile },
        configSigning: {
          privateJwkFile: (await ensureDevConfigSigningKey(join(work, 'config-key'))).privateJwkFile,
        },
        releases: {
          dir: join(work, 'releases'),
          onlineKeyFile: join(keysDir, 'online.key.json'),
          publisherTenant: 'vigil',
        },
        log: { level: 'silent' },
      }),
      { logger: silent },
    );
    const push = await cli(
      'release',
      'root',
      'push',
      '--keys-dir',
      keysDir,
      '--tenant',
      'vigil',
      '--role',
      'admin',
    );
    expect(push.code, push.out).toBe(0);
    await publish(V1, 'stable', '0.1.0');
    await publish(GOOD, 'stable', '1.0.0');
    await publish(BAD, 'stable', '1.0.0');
    await publish('2.0.0', 'stable', '1.5.0');
    await publish('1.3.0', 'beta', '1.0.0');

    const installer = await token('acme', 'installer');
    for (const id of IDS) {
      const minted = await fetch(`http://127.0.0.1:${cloud.httpPort}/v1/enrollment-tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${installer}`, 'content-type': 'application/json' },
        body: JSON.stringify({ site_id: 'hq', ttl_seconds: 600 }),
      });
      const secret = ((await minted.json()) as { token: string }).token;
      const dataDir = join(work, id);
      const out: string[] = [];
      const code = await runEnrollCommand(
        [
          '--cloud',
          `localhost:${cloud.grpcPort!}`,
          '--ca-file',
          pki().caCert,
          '--device-id',
          id,
          '--data-dir',
          dataDir,
        ],
        { out: (l) => out.push(l), err: (l) => out.push(l) },
        { env: { VIGIL_ENROLL_TOKEN: secret } },
      );
      expect(code, out.join('\n')).toBe(0);
      gateways.push({ id, dataDir, version: V1, agent: undefined, requests: [], busy: false });
    }
    // A config document for the tenant: what carries the agent section to devices that ran no remote config.
    expect(
      (await api('PUT', '/v1/configs/tenant/acme', { attributes: { fleet: 'agent-rollout-test' } })).status,
    ).toBe(200);
    for (const g of gateways) {
      g.agent = await start(g);
      g.timer = setInterval(() => {
        if (g.busy) return;
        g.busy = true;
        void updaterStep(g).finally(() => (g.busy = false));
      }, 100);
    }
    // Every device heartbeats its version before a rollout is created (the minimum-version check needs it).
    const until = Date.now() + 30_000;
    const onV1 = async (): Promise<number> =>
      (
        await cloud.db.selectFrom('devices').select('agent_version').where('tenant_id', '=', 'acme').execute()
      ).filter((d) => d.agent_version === V1).length;
    while ((await onV1()) < IDS.length && Date.now() < until) await new Promise((r) => setTimeout(r, 250));
    expect(await onV1()).toBe(IDS.length);
  }, 180_000);
  afterAll(async () => {
    for (const g of gateways) {
      clearInterval(g.timer);
      while (g.busy) await new Promise((r) => setTimeout(r, 50));
      await g.agent?.stop();
    }
    await cloud?.stop();
  });

  let badRollout = '';
  const rolloutState = async (id: string): Promise<Answer> => (await api('GET', `/v1/rollouts/${id}`)).json;
  const waitFor = async (id: string, states: string[], timeout = 90_000): Promise<Answer> => {
    await expect
      .poll(async () => (await rolloutState(id)).state, { timeout, interval: 500 })
      .toSatisfy((s: string) => states.includes(s));
    return rolloutState(id);
  };

  it('refuses what cannot be rolled out, with problem+json naming the reason', async () => {
    const create = (agent: unknown) =>
      api('POST', '/v1/rollouts', { target: { scope: 'tenant' }, agent, spec: { canary: 1, waves: [100] } });
    const unpublished = await create({ version: '9.9.9', channel: 'stable' });
    expect(unpublished.status).toBe(422);
    expect(unpublished.json.type).toBe('urn:vigil:problem:agent-rollout-refused');
    expect(unpublished.json.errors[0]?.message).toMatch(
      /9\.9\.9 is not a published release of channel stable/,
    );
    // Published, but in another channel.
    const otherChannel = await create({ version: '1.3.0', channel: 'stable' });
    expect(otherChannel.status).toBe(422);
    expect(otherChannel.json.errors[0]?.message).toMatch(
      /1\.3\.0 is not a published release of channel stable/,
    );
    // 2.0.0 upgrades only from 1.5.0: every device (1.0.0) is named.
    const tooOld = await create({ version: '2.0.0', channel: 'stable' });
    expect(tooOld.status).toBe(422);
    expect(tooOld.json.detail).toMatch(/4 of 4 target devices cannot upgrade to 2\.0\.0/);
    expect(tooOld.json.errors.map((e) => e.path).sort()).toEqual(IDS.map((i) => `devices.${i}`));
    expect(tooOld.json.errors[0]?.message).toMatch(/runs 1\.0\.0, older than 1\.5\.0/);
    // Malformed: the schema refuses it (400), and agent with a body is ambiguous.
    expect((await create({ version: 'v1', channel: 'stable' })).status).toBe(400);
    const both = await api('POST', '/v1/rollouts', {
      target: { scope: 'tenant' },
      agent: { version: GOOD },
      body: {},
    });
    expect(both.status).toBe(400);
    // Nothing was created.
    expect((await api('GET', '/v1/rollouts')).json.items).toHaveLength(0);
    // The CLI says it too, and exits non-zero.
    const r = await cli(
      'rollout',
      'create',
      '--agent-version',
      '2.0.0',
      '--tenant',
      'acme',
      '--role',
      'admin',
    );
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/cannot upgrade to 2\.0\.0/);
  });

  it('a staged rollout of a good version leaves every agent running it, committed', async () => {
    const t0 = Date.now();
    const r = await cli(
      'rollout',
      'create',
      '--agent-version',
      GOOD,
      '--channel',
      'stable',
      '--canary',
      '1',
      '--waves',
      '50,100',
      '--window',
      '60',
      '--min-reported',
      '1',
      '--failure-ratio',
      '0.3',
      '--applied-ratio',
      '1',
      '--tenant',
      'acme',
      '--role',
      'admin',
      '--json',
    );
    expect(r.code, r.out).toBe(0);
    const created = JSON.parse(r.out) as { id: string; agent: { version: string } };
    expect(created.agent.version).toBe(GOOD);
    const done = await waitFor(created.id, ['completed', 'aborted', 'rolling_back', 'rolled_back']);
    expect(done.state, JSON.stringify(done)).toBe('completed');
    expect(done.totals.applied).toBe(IDS.length);
    // Staged: the canary (1), then 50 % (2), then all (4).
    expect(done.waves.map((w) => w.devices)).toEqual([1, 1, 2]);
    console.log(
      `[agent-rollout] ${IDS.length} real agents on ${GOOD} in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
    for (const g of gateways) {
      expect(g.version).toBe(GOOD);
      expect(g.requests.filter((q) => q.version === GOOD)).toHaveLength(1);
    }
    // The registry and `vigil devices` show the version and the updater state.
    await expect
      .poll(
        async () => {
          const page = (await api('GET', '/v1/devices')).json as {
            items: Array<{ agent_version: string; update: { state: string; current: string } | null }>;
          };
          return page.items.every((d) => d.agent_version === GOOD && d.update?.state === 'committed');
        },
        { timeout: 15_000 },
      )
      .toBe(true);
    const one = (await api('GET', '/v1/devices/gw-0')).json;
    expect(one.update).toMatchObject({ state: 'committed', current: GOOD, previous: V1, target: GOOD });
    const list = await cli('devices', 'list', '--tenant', 'acme', '--role', 'admin');
    expect(list.out).toMatch(/AGENT\s+UPDATE/);
    expect(list.out.split('\n').filter((l) => /gw-\d\s.*1\.1\.0\s+committed/.test(l))).toHaveLength(
      IDS.length,
    );
  }, 150_000);

  it('a bad version rolled back by the canaries aborts the rollout; no device is asked for it after the abort', async () => {
    const r = await cli(
      'rollout',
      'create',
      '--agent-version',
      BAD,
      '--canary',
      '2',
      '--waves',
      '100',
      '--window',
      '60',
      '--min-reported',
      '1',
      '--failure-ratio',
      '0.1',
      '--tenant',
      'acme',
      '--role',
      'admin',
      '--json',
    );
    expect(r.code, r.out).toBe(0);
    const id = (JSON.parse(r.out) as { id: string }).id;
    badRollout = id;
    const aborted = await waitFor(id, ['aborted', 'rolling_back', 'rolled_back', 'completed']);
    expect(aborted.state).not.toBe('completed');
    const abortedAt = Date.now();
    const ended = await waitFor(id, ['rolled_back']);
    expect(ended.abort_reason).toMatch(/failure ratio|gate failed/);
    const devices = (await api('GET', `/v1/rollouts/${id}/devices`)).json.items as Array<{
      device_id: string;
      wave: number | null;
      status: string;
      reason: string | null;
    }>;
    const canaries = devices.filter((d) => d.wave === 0);
    expect(canaries).toHaveLength(2);
    // The device's own reason travels to the rollout.
    expect(
      canaries.some((d) => /rolled_back: health gate: cameras never streamed/.test(d.reason ?? '')),
    ).toBe(true);
    expect(devices.filter((d) => d.wave !== null)).toHaveLength(2);
    // Give any late request a chance to show, then check: the devices outside the canary were never asked for
    // the bad version, and no device was asked for it after the abort.
    await new Promise((res) => setTimeout(res, 3_000));
    const canaryIds = new Set(canaries.map((d) => d.device_id));
    for (const g of gateways) {
      const asked = g.requests.filter((q) => q.version === BAD);
      if (canaryIds.has(g.id)) expect(asked.length).toBeGreaterThanOrEqual(1);
      else expect(asked, g.id).toHaveLength(0);
      expect(
        asked.filter((q) => q.seenAt > abortedAt + 1_000),
        g.id,
      ).toHaveLength(0);
      // Every agent still runs the good version; the stale request for the bad one was withdrawn.
      expect(g.version).toBe(GOOD);
      let req: UpdateRequest | null = null;
      try {
        req = JSON.parse(readFileSync(join(g.dataDir, 'update', 'request.json'), 'utf8')) as UpdateRequest;
      } catch {
        req = null;
      }
      expect(req?.version ?? GOOD, g.id).not.toBe(BAD);
    }
  }, 150_000);

  it('after the rollout ended, its view reads the agent version each device reports, not only the config it applied', async () => {
    expect(badRollout).not.toBe('');
    const devicesOf = async () =>
      (await api('GET', `/v1/rollouts/${badRollout}/devices`)).json.items as Array<{
        device_id: string;
        wave: number | null;
        status: string;
        config_state: string;
        agent: {
          version: string | null;
          previous_version: string | null;
          update_state: string | null;
        } | null;
      }>;
    const before = await devicesOf();
    const canary = before.find((d) => d.wave === 0)!;
    expect(canary.status).toBe('rolled_back');
    expect(canary.agent).toMatchObject({
      version: GOOD,
      previous_version: GOOD,
      update_state: 'rolled_back',
    });
    // Devices outside the issued waves have no agent version to return to, but still report theirs.
    for (const d of before) expect(d.agent?.version).toBe(GOOD);
    // The case the view must not hide: the rollout ended while this device was still rolling back, and its
    // restored config is applied (that only asks its updater to go back) but its heartbeat says it still runs the
    // bad version. Its agent is stopped so that no heartbeat overwrites what is set here.
    const g = gateways.find((x) => x.id === canary.device_id)!;
    clearInterval(g.timer);
    while (g.busy) await new Promise((res) => setTimeout(res, 50));
    await g.agent?.stop();
    g.agent = undefined;
    await cloud.db
      .updateTable('rollout_devices')
      .set({ status: 'rolling_back' })
      .where('rollout_id', '=', badRollout)
      .where('device_id', '=', g.id)
      .execute();
    await cloud.db
      .updateTable('devices')
      .set({ agent_version: BAD, update_state: 'committed', update_current: BAD, update_target: BAD })
      .where('tenant_id', '=', 'acme')
      .where('id', '=', g.id)
      .execute();
    let row = (await devicesOf()).find((d) => d.device_id === g.id)!;
    expect(row.config_state).toBe('applied');
    expect(row.status).toBe('rolling_back');
    expect(row.agent?.version).toBe(BAD);
    let view = await rolloutState(badRollout);
    expect(view.totals.rolling_back).toBe(1);
    // Its heartbeat now says it runs the version it ran before: rolled back, in the view and its totals.
    await cloud.db
      .updateTable('devices')
      .set({ agent_version: GOOD, update_state: 'rolled_back', update_current: GOOD })
      .where('tenant_id', '=', 'acme')
      .where('id', '=', g.id)
      .execute();
    row = (await devicesOf()).find((d) => d.device_id === g.id)!;
    expect(row.status).toBe('rolled_back');
    expect(row.agent?.version).toBe(GOOD);
    view = await rolloutState(badRollout);
    expect(view.totals.rolling_back).toBe(0);
    expect(view.totals.rolled_back).toBe(2);
  });
});
