import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevSigningKey, parseCloudConfig, startCloud, type CloudApp } from '@vigil/cloud';
import { natsConfig, useDatabase, useNats, usePki, uuidV7 } from '@vigil/testkit';
import { runCli } from '../src/index.js';

// The CLI against the real cloud: tokens minted from the dev signing key, events through the REST API.
describe('vigil token / events (against the cloud API)', () => {
  const pki = usePki({ services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const dbUrl = useDatabase();
  let cloud: CloudApp;
  const start = Date.parse('2026-03-01T08:00:00Z');
  const ids = Array.from({ length: 5 }, (_, i) => uuidV7(start + i * 3_600_000));

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
      }),
    );
    await cloud.db
      .selectNoFrom((eb) =>
        eb.fn('vigil_ensure_event_partition', [eb.cast(eb.val('2026-03-01'), 'date')]).as('p'),
      )
      .execute();
    await cloud.db
      .insertInto('events')
      .values(
        ids.map((id, i) => ({
          event_id: id,
          occurred_at: new Date(start + i * 3_600_000),
          tenant_id: 'acme',
          site_id: 'hq',
          device_id: 'gw-1',
          camera_id: i % 2 === 0 ? 'lobby' : 'gate',
          track_id: `t${i}`,
          phase: 'start',
          label: 'person',
          score: 0.75,
          box_x: 0,
          box_y: 0,
          box_w: 0.5,
          box_h: 0.5,
          zones: [],
          trigger_zone: i === 4 ? 'door' : null,
          model_name: null,
          model_sha256: null,
          snapshot_media_id: null,
          snapshot_sha256: null,
          snapshot_bytes: null,
          priority: 2,
          attributes: '{}',
          payload: Buffer.from([i]),
        })),
      )
      .execute();
  });
  afterAll(async () => {
    await cloud?.stop();
  });

  async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(['--api', `http://127.0.0.1:${cloud.httpPort}`, '--pki', pki().dir, ...args], {
      io: { out: (t) => out.push(t), err: (t) => err.push(t) },
    });
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  it('mints a dev token that the API accepts', async () => {
    const res = await cli('token', 'mint', '--tenant', 'acme', '--role', 'auditor', '--ttl', '120');
    expect(res.code).toBe(0);
    const claims = decodeJwt(res.out);
    expect(claims).toMatchObject({ iss: 'vigil-dev', aud: 'vigil-api', tenant: 'acme', roles: ['auditor'] });
    expect(claims.exp! - claims.iat!).toBe(120);
    const api = await fetch(`http://127.0.0.1:${cloud.httpPort}/v1/events`, {
      headers: { authorization: `Bearer ${res.out}` },
    });
    expect(api.status).toBe(200);
    const json = await cli('--json', 'token', 'mint', '--tenant', 'acme');
    expect(JSON.parse(json.out)).toMatchObject({
      claims: { roles: ['admin'] },
      expires_at: expect.any(String) as unknown,
    });
  });

  it('lists events as a table, one page or all of them', async () => {
    const page = await cli('events', 'list', '--tenant', 'acme', '--limit', '2');
    expect(page.code).toBe(0);
    const lines = page.out.split('\n');
    expect(lines[0]).toMatch(/^OCCURRED AT\s+EVENT ID\s+DEVICE\s+CAMERA\s+LABEL\s+SCORE\s+PHASE\s+ZONES$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[1])).toEqual([ids[4], ids[3]]);
    expect(lines[1]).toMatch(/gw-1 +lobby +person +0\.75 +start +door\*$/);
    expect(page.err).toMatch(/^more: --cursor \S+ \(or --all\)$/);

    const all = await cli('--json', 'events', 'list', '--tenant', 'acme', '--limit', '2', '--all');
    expect(all.out.split('\n').map((l) => (JSON.parse(l) as { event_id: string }).event_id)).toEqual(
      [...ids].reverse(),
    );
    const lobby = await cli('events', 'list', '--tenant', 'acme', '--camera', 'lobby', '--json');
    expect(lobby.out.split('\n')).toHaveLength(3);
  });

  it('gets one event, and stays inside the token’s tenant', async () => {
    const one = await cli('--json', 'events', 'get', ids[0]!, '--tenant', 'acme');
    expect(JSON.parse(one.out)).toMatchObject({ event_id: ids[0], camera_id: 'lobby', tenant_id: 'acme' });
    const other = await cli('events', 'get', ids[0]!, '--tenant', 'globex');
    expect(other.code).toBe(1);
    expect(other.err).toBe('vigil: API answered 404 Not found: The requested resource does not exist.');
    expect(await cli('events', 'list', '--tenant', 'globex')).toMatchObject({
      code: 0,
      out: '',
      err: 'no events',
    });
  });

  it('prints API problems with their field errors', async () => {
    const res = await cli('events', 'list', '--tenant', 'acme', '--since', 'yesterday', '--limit', '501');
    expect(res.code).toBe(1);
    expect(res.err).toContain('vigil: API answered 400 Invalid request');
    expect(res.err).toContain('  limit: must be at most 500');
    expect(res.err).toContain('  since: must be an RFC 3339 date-time');
    const denied = await cli('events', 'list', '--tenant', 'acme', '--role', 'installer');
    expect(denied.err).toContain('API answered 403 Forbidden');
    const down = await runCli(['--api', 'http://127.0.0.1:9', '--pki', pki().dir, 'events', 'list'], {
      io: { out: () => {}, err: (t) => expect(t).toMatch(/cannot reach the API at http:\/\/127\.0\.0\.1:9/) },
    });
    expect(down).toBe(1);
  });

  it('creates and lists enrollment tokens (the secret only once)', async () => {
    const created = await cli('enroll-token', 'create', '--tenant', 'acme', '--site', 'hq', '--ttl', '600');
    expect(created.code, created.err).toBe(0);
    expect(created.out).toMatch(/^vgl_et_[A-Za-z0-9_-]{43}$/);
    expect(created.err).toMatch(/for acme\/hq, one use, expires \d{4}-/);
    const list = await cli('enroll-token', 'list', '--tenant', 'acme');
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/^ID\s+SITE\s+EXPIRES\s+USED BY\s+CREATED BY\s+NOTE\n\S+\s+hq\s+/);
    expect(list.out).not.toContain('vgl_et_');
    const json = await cli('--json', 'enroll-token', 'list', '--tenant', 'acme', '--all');
    expect(JSON.parse(json.out)).toMatchObject({
      site_id: 'hq',
      created_by: 'dev-admin@acme',
      used_at: null,
    });
    const viewer = await cli('enroll-token', 'list', '--tenant', 'acme', '--role', 'viewer');
    expect(viewer.err).toContain('API answered 403 Forbidden');
    const bad = await cli('enroll-token', 'create', '--tenant', 'acme', '--site', 'hq', '--ttl', '30');
    expect(bad.code).toBe(2);
  });
});
