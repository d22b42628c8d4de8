import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevSigningKey, parseCloudConfig, startCloud, type CloudApp } from '@vigil/cloud';
import { natsConfig, useDatabase, useNats, usePki } from '@vigil/testkit';
import { runCli } from '../src/index.js';

interface Device {
  id: string;
  site_id: string;
  status: string;
  revoked_at: string | null;
  revoked_by: string | null;
  revoke_reason: string | null;
}

// The CLI against the real cloud: the device registry and revocation through the REST API. NATS runs
// without per-device JWTs here, so a revocation reports nats: tls_only.
describe('vigil devices (against the cloud API)', () => {
  const pki = usePki({ services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const dbUrl = useDatabase();
  let cloud: CloudApp;
  const enrolledAt = new Date('2026-03-01T08:00:00Z');

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
    for (const [tenantId, siteId, deviceId] of [
      ['acme', 'hq', 'gw-1'],
      ['acme', 'hq', 'gw-2'],
      ['acme', 'lab', 'gw-3'],
      ['acme', 'lab', 'gw-4'],
      ['globex', 'hq', 'gw-9'],
    ] as const)
      await cloud.registry.registerDevice({ tenantId, siteId, deviceId });
    // gw-1 is online (a heartbeat just now), gw-2 offline (one an hour ago); gw-3 and gw-4 never sent one.
    await cloud.registry.recordHeartbeat('acme', 'gw-1', new Date(), '0.4.2', 7n);
    await cloud.registry.recordHeartbeat('acme', 'gw-2', new Date(Date.now() - 3_600_000), '0.4.1', 3n);
    await cloud.db
      .updateTable('devices')
      .set({ enrolled_at: enrolledAt, hardware_id: 'hw-abc' })
      .where('tenant_id', '=', 'acme')
      .where('id', '=', 'gw-1')
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
  const jsonLines = (text: string): Device[] =>
    text === '' ? [] : text.split('\n').map((l) => JSON.parse(l) as Device);
  const get = async (id: string): Promise<Device> =>
    JSON.parse((await cli('--json', 'devices', 'get', id, '--tenant', 'acme')).out) as Device;

  it('lists devices as a table, by site and status, one page or all of them', async () => {
    const all = await cli('devices', 'list', '--tenant', 'acme');
    expect(all.code, all.err).toBe(0);
    const lines = all.out.split('\n');
    expect(lines[0]).toMatch(/^ID\s+SITE\s+STATUS\s+LAST SEEN\s+AGENT\s+UPDATE\s+ENROLLED$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 3))).toEqual([
      ['gw-1', 'hq', 'online'],
      ['gw-2', 'hq', 'offline'],
      ['gw-3', 'lab', 'never'],
      ['gw-4', 'lab', 'never'],
    ]);
    expect(lines[1]).toMatch(
      /^gw-1 +hq +online +\d{4}-\d\d-\d\dT\S+Z +0\.4\.2 +- +2026-03-01T08:00:00\.000Z$/,
    );
    expect(lines[3]).toMatch(/^gw-3 +lab +never +- +- +- +-$/);
    expect(all.err).toBe('');

    const lab = await cli('devices', 'list', '--tenant', 'acme', '--site', 'lab', '--status', 'never');
    expect(
      lab.out
        .split('\n')
        .slice(1)
        .map((l) => l.split(/\s+/)[0]),
    ).toEqual(['gw-3', 'gw-4']);
    const offline = await cli('--json', 'devices', 'list', '--tenant', 'acme', '--status', 'offline');
    expect(jsonLines(offline.out)).toMatchObject([{ id: 'gw-2', status: 'offline', agent_version: '0.4.1' }]);
    expect(await cli('devices', 'list', '--tenant', 'acme', '--site', 'nowhere')).toMatchObject({
      code: 0,
      out: '',
      err: 'no devices',
    });

    const page = await cli('devices', 'list', '--tenant', 'acme', '--limit', '3');
    expect(page.out.split('\n')).toHaveLength(4);
    expect(page.err).toMatch(/^more: --cursor \S+ \(or --all\)$/);
    const cursor = page.err.split(' ')[2]!;
    const rest = await cli('--json', 'devices', 'list', '--tenant', 'acme', '--cursor', cursor);
    expect(jsonLines(rest.out).map((d) => d.id)).toEqual(['gw-4']);

    const followed = await cli('--json', 'devices', 'list', '--tenant', 'acme', '--limit', '1', '--all');
    expect(followed.code).toBe(0);
    expect(followed.err).toBe('');
    expect(jsonLines(followed.out).map((d) => d.id)).toEqual(['gw-1', 'gw-2', 'gw-3', 'gw-4']);
    const table = await cli('devices', 'list', '--tenant', 'acme', '--limit', '1', '--all');
    expect(table.out).toBe(all.out);

    const bad = await cli('devices', 'list', '--tenant', 'acme', '--status', 'lost');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain(
      "argument 'lost' is invalid. Allowed choices are online, offline, never, revoked",
    );
  });

  it('gets one device, and stays inside the token’s tenant', async () => {
    const one = await cli('devices', 'get', 'gw-1', '--tenant', 'acme');
    expect(one.code, one.err).toBe(0);
    expect(one.out).toMatch(/^id: +gw-1\ntenant: +acme\nsite: +hq\nstatus: +online\nlast seen: +\d{4}-/);
    expect(one.out).toContain('\nagent version:  0.4.2\nconfig version: 7\nheartbeats:     1\n');
    expect(one.out).toContain('\nenrolled at:    2026-03-01T08:00:00.000Z\nhardware id:    hw-abc');
    expect(one.out).not.toContain('revoked');
    expect(await get('gw-3')).toMatchObject({
      id: 'gw-3',
      tenant_id: 'acme',
      site_id: 'lab',
      status: 'never',
    });

    const other = await cli('devices', 'get', 'gw-1', '--tenant', 'globex');
    expect(other).toMatchObject({
      code: 1,
      out: '',
      err: 'vigil: no device gw-1 in tenant globex (API answered 404)',
    });
    const bad = await cli('devices', 'get', 'no such id', '--tenant', 'acme');
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('  id: must be 1-63 letters, digits, - or _');
  });

  it('refuses to revoke without --yes, and revokes nothing', async () => {
    const res = await cli('devices', 'revoke', 'gw-3', '--tenant', 'acme', '--reason', 'lost');
    expect(res.code).toBe(2);
    expect(res.out).toBe('');
    expect(res.err).toMatch(/^vigil: revoking device gw-3 is permanent: .*\nadd --yes to revoke it$/);
    expect(await get('gw-3')).toMatchObject({ status: 'never', revoked_at: null });

    const noReason = await cli('devices', 'revoke', 'gw-3', '--tenant', 'acme', '--yes');
    expect(noReason.code).toBe(2);
    expect(noReason.err).toContain("required option '--reason <text>' not specified");
    const blank = await cli('devices', 'revoke', 'gw-3', '--tenant', 'acme', '--yes', '--reason', '  ');
    expect(blank.code).toBe(2);
    expect(blank.err).toContain('expected 1 to 500 characters');
    expect(await get('gw-3')).toMatchObject({ revoked_at: null });
  });

  it('refuses a viewer’s revocation with the API’s 403, and an unknown device with not found', async () => {
    const viewer = await cli(
      'devices',
      'revoke',
      'gw-3',
      '--tenant',
      'acme',
      '--role',
      'viewer',
      '--reason',
      'x',
      '--yes',
    );
    expect(viewer).toMatchObject({
      code: 1,
      out: '',
      err: 'vigil: API answered 403 Forbidden: You are not allowed to perform devices:revoke.',
    });
    expect(await get('gw-3')).toMatchObject({ revoked_at: null });

    const unknown = await cli('devices', 'revoke', 'gw-404', '--tenant', 'acme', '--reason', 'x', '--yes');
    expect(unknown).toMatchObject({
      code: 1,
      out: '',
      err: 'vigil: no device gw-404 in tenant acme (API answered 404)',
    });
    // Another tenant's admin cannot reach the device either.
    const globex = await cli('devices', 'revoke', 'gw-3', '--tenant', 'globex', '--reason', 'x', '--yes');
    expect(globex.err).toBe('vigil: no device gw-3 in tenant globex (API answered 404)');
    expect(await get('gw-3')).toMatchObject({ revoked_at: null });
  });

  it('revokes as admin by default, says what NATS does, and a second revocation says already revoked', async () => {
    const res = await cli(
      'devices',
      'revoke',
      'gw-3',
      '--tenant',
      'acme',
      '--reason',
      ' stolen from lab ',
      '--yes',
    );
    expect(res.code, res.err).toBe(0);
    expect(res.err).toBe('');
    const lines = res.out.split('\n');
    expect(lines[0]).toMatch(/^device gw-3 revoked at \d{4}-\d\d-\d\dT\S+Z by dev-admin@acme$/);
    expect(lines.slice(1)).toEqual([
      'reason: stolen from lab',
      'certificates revoked: 0',
      'NATS: tls_only: NATS access ends when its certificate expires (NATS runs without per-device credentials here)',
    ]);
    const revokedAt = /revoked at (\S+)/.exec(lines[0]!)![1];
    expect(await get('gw-3')).toMatchObject({
      status: 'revoked',
      revoked_at: revokedAt,
      revoked_by: 'dev-admin@acme',
      revoke_reason: 'stolen from lab',
    });
    const detail = await cli('devices', 'get', 'gw-3', '--tenant', 'acme');
    expect(detail.out).toContain(
      `\nrevoked at:     ${revokedAt}\nrevoked by:     dev-admin@acme\nrevoke reason:  stolen from lab`,
    );

    const again = await cli('devices', 'revoke', 'gw-3', '--tenant', 'acme', '--reason', 'again', '--yes');
    expect(again.code).toBe(0);
    expect(again.out.split('\n').slice(0, 2)).toEqual([
      `device gw-3 was already revoked, at ${revokedAt} by dev-admin@acme`,
      'reason: stolen from lab',
    ]);
    const json = await cli(
      '--json',
      'devices',
      'revoke',
      'gw-3',
      '--tenant',
      'acme',
      '--reason',
      'x',
      '--yes',
    );
    expect(JSON.parse(json.out)).toEqual({
      device_id: 'gw-3',
      result: 'already_revoked',
      revoked_at: revokedAt,
      revoked_by: 'dev-admin@acme',
      reason: 'stolen from lab',
      certificates_revoked: 0,
      nats: 'tls_only',
    });

    const revoked = await cli('devices', 'list', '--tenant', 'acme', '--status', 'revoked');
    expect(revoked.out.split('\n').slice(1)).toEqual([
      expect.stringMatching(/^gw-3 +lab +revoked +- +- +- +-$/),
    ]);
    const never = await cli('--json', 'devices', 'list', '--tenant', 'acme', '--status', 'never');
    expect(jsonLines(never.out).map((d) => d.id)).toEqual(['gw-4']);
  });

  it('records and shows as the revoker the principal the cloud authenticated, not the CLI', async () => {
    // A token of someone else (as an admin's SSO token would be): its subject is the revoker.
    const minted = await cli('token', 'mint', '--tenant', 'acme', '--role', 'admin', '--sub', 'alice@acme');
    expect(minted.code, minted.err).toBe(0);
    const byToken = await cli(
      ...['devices', 'revoke', 'gw-4', '--token', minted.out, '--reason', 'decommissioned', '--yes'],
    );
    expect(byToken.code, byToken.err).toBe(0);
    expect(byToken.out.split('\n')[0]).toMatch(/^device gw-4 revoked at \S+ by alice@acme$/);
    expect(await get('gw-4')).toMatchObject({ revoked_by: 'alice@acme' });
    // A minted dev token names the subject given (--sub), or the dev user of its roles.
    const bob = await cli(
      ...['devices', 'revoke', 'gw-2', '--tenant', 'acme', '--sub', 'bob@acme', '--reason', 'x', '--yes'],
    );
    expect(bob.out.split('\n')[0]).toMatch(/ by bob@acme$/);
    expect(await get('gw-2')).toMatchObject({ revoked_by: 'bob@acme' });
    const audit = await cloud.db
      .selectFrom('audit_log')
      .select(['actor'])
      .where('action', '=', 'device.revoke')
      .orderBy('seq')
      .execute();
    expect(audit.map((a) => a.actor)).toEqual(expect.arrayContaining(['alice@acme', 'bob@acme']));
  });
});
