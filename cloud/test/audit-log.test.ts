// The audit log against a real PostgreSQL: one linear hash chain across processes, append-only even for the
// owner and superusers, tampering named at exactly the entry affected, atomic with the audited change.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql, type Kysely } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa } from '@vigil/certs';
import { useDatabase } from '@vigil/testkit';
import {
  AUDIT_DETAIL_MAX_BYTES,
  AUDIT_GENESIS_HASH,
  AuditEntryInvalidError,
  AuditLog,
  canonicalEntry,
  canonicalJson,
  chainHash,
  createDb,
  DeviceIdentityService,
  DeviceRevoker,
  EnrollmentTokens,
  FleetRegistry,
  migrateToLatest,
  type AuditEntry,
} from '../src/index.js';
import type { Database } from '../src/storage/tables.js';
import { useApiCloud } from './api-fixtures.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const silent = pino({ level: 'silent' });
const TRIGGER = 'audit_log_append_only';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the verifier as `pnpm -F @vigil/cloud audit:verify` does, in its own process. */
function verifyMain(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const baseEnv = { ...process.env };
    delete baseEnv.DATABASE_URL;
    const child = spawn(
      process.execPath,
      ['--conditions=@vigil/source', '--import', 'tsx', 'cloud/src/audit/verify-main.ts', ...args],
      { cwd: repoRoot, env: { ...baseEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A CSR for CN=<deviceId>, made by openssl as a gateway's tooling would. */
function makeCsr(deviceId: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-audit-csr-'));
  try {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyFile = join(dir, 'key.pem');
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    return execFileSync('openssl', ['req', '-new', '-key', keyFile, '-subj', `/CN=${deviceId}`, '-sha256'], {
      encoding: 'utf8',
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const entry = (over: Partial<AuditEntry> = {}): AuditEntry => ({
  tenantId: 'acme',
  actor: 'alice@acme',
  actorKind: 'user',
  action: 'media.read',
  resource: 'media:acme/clip-1',
  outcome: 'allowed',
  ...over,
});

describe('audit log', () => {
  const dbUrl = useDatabase();
  let db: Kysely<Database>;
  let metrics: Registry;
  let audit: AuditLog;
  let clock = Date.parse('2026-03-01T12:34:56.789Z');

  beforeAll(async () => {
    db = createDb(dbUrl());
    await migrateToLatest(db as Kysely<unknown>);
    metrics = new Registry();
    audit = new AuditLog(db, silent, metrics, () => new Date(clock));
  });
  afterAll(() => db.destroy());

  const count = async (): Promise<number> => {
    const r = await db
      .selectFrom('audit_log')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(r.n);
  };
  const counter = async (name: string): Promise<Record<string, number>> => {
    const m = await metrics.getSingleMetric(name)!.get();
    return Object.fromEntries(m.values.map((v) => [Object.values(v.labels).join('/') || 'total', v.value]));
  };
  /** Runs `statements` with the append-only trigger disabled, as a superuser could. */
  const tamper = (statements: (tx: Kysely<Database>) => Promise<unknown>): Promise<void> =>
    db.transaction().execute(async (tx) => {
      await sql`alter table audit_log disable trigger ${sql.id(TRIGGER)}`.execute(tx);
      await statements(tx);
      await sql`alter table audit_log enable always trigger ${sql.id(TRIGGER)}`.execute(tx);
    });

  it('chains entries from the genesis hash exactly as documented, and verifies them', async () => {
    const first = await audit.append(
      entry({
        action: 'device.revoke',
        resource: 'device:acme/gw-1',
        detail: { b: { y: true, x: null, skipped: undefined }, a: [1, 2.5, 'é'], 'z\n"': 'ü' },
        requestId: 'req-1',
      }),
    );
    expect(first.seq).toBe(1n);
    // The definition in audit-log.ts, spelled out by hand: SHA-256(prev_hash || canonical JSON array).
    const canonical =
      '["vigil.audit.v1","1","2026-03-01T12:34:56.789000Z","acme","alice@acme","user","device.revoke",' +
      '"device:acme/gw-1","allowed",{"a":[1,2.5,"é"],"b":{"x":null,"y":true},"z\\n\\"":"ü"},"req-1"]';
    expect(first.hash).toEqual(
      createHash('sha256').update(Buffer.alloc(32)).update(canonical, 'utf8').digest(),
    );

    const appended = [first];
    for (let i = 0; i < 6; i++) {
      clock += 1001;
      appended.push(
        await audit.append(
          entry({
            tenantId: i % 3 === 0 ? null : 'acme',
            actor: i % 2 ? 'system' : 'svc-backup',
            actorKind: i % 2 ? 'system' : 'service',
            action: 'media.read',
            resource: i === 4 ? null : `media:acme/clip-${i}`,
            outcome: i === 5 ? 'failed' : 'allowed',
            detail: { i, big: 1e21, small: 1e-7, nested: { k: [{ b: 1, a: 2 }] }, when: new Date(clock) },
          }),
        ),
      );
    }
    expect(appended.map((a) => a.seq)).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n]);

    const rows = await db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
    expect(rows[0]!.prev_hash).toEqual(AUDIT_GENESIS_HASH);
    for (let i = 1; i < rows.length; i++) expect(rows[i]!.prev_hash).toEqual(rows[i - 1]!.hash);
    // What PostgreSQL stores is what was hashed: milliseconds, no more.
    const at = await sql<{ t: string }>`
      select to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as t from audit_log where seq = 1`.execute(
      db,
    );
    expect(at.rows[0]?.t).toBe('2026-03-01T12:34:56.789000Z');

    // Small batches: the walk crosses batch boundaries.
    const result = await audit.verify({ batchSize: 2 });
    expect(result).toEqual({ checked: 7, head: { seq: 7n, hash: appended[6]!.hash } });
    expect(await audit.verify({ fromSeq: 4, batchSize: 3 })).toEqual({
      checked: 4,
      head: { seq: 7n, hash: appended[6]!.hash },
    });
    expect(await counter('vigil_cloud_audit_entries_total')).toMatchObject({
      'device.revoke/allowed': 1,
      'media.read/allowed': 5,
      'media.read/failed': 1,
    });
  });

  it('keeps one gap-free chain when two processes (two pools) append concurrently', async () => {
    const other = createDb(dbUrl());
    try {
      const audit2 = new AuditLog(other, silent, new Registry());
      const before = await count();
      const run = (log: AuditLog, who: string): Promise<Array<{ seq: bigint }>> =>
        Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            log.append(entry({ actor: who, action: 'media.read', detail: { i } })),
          ),
        );
      const [a, b] = await Promise.all([run(audit, 'proc-a'), run(audit2, 'proc-b')]);
      const seqs = [...a, ...b].map((x) => Number(x.seq)).sort((x, y) => x - y);
      expect(seqs).toEqual(Array.from({ length: 100 }, (_, i) => before + 1 + i));
      const byActor = await db
        .selectFrom('audit_log')
        .select(['actor', (eb) => eb.fn.countAll<string>().as('n')])
        .where('actor', 'in', ['proc-a', 'proc-b'])
        .groupBy('actor')
        .orderBy('actor')
        .execute();
      expect(byActor).toEqual([
        { actor: 'proc-a', n: '50' },
        { actor: 'proc-b', n: '50' },
      ]);
      const result = await audit.verify({ batchSize: 17 });
      expect(result.firstBroken).toBeUndefined();
      expect(result.checked).toBe(before + 100);
    } finally {
      await other.destroy();
    }
  });

  it('refuses UPDATE, DELETE and TRUNCATE even for the owner and a superuser', async () => {
    const who = await sql<{ superuser: boolean; owner: boolean }>`
      select r.rolsuper as superuser, c.relowner = r.oid as owner
      from pg_roles r, pg_class c where r.rolname = current_user and c.relname = 'audit_log'`.execute(db);
    expect(who.rows[0]).toEqual({ superuser: true, owner: true });
    const before = await count();

    await expect(sql`update audit_log set actor = 'mallory' where seq = 1`.execute(db)).rejects.toThrow(
      'audit_log is append-only: UPDATE is not allowed',
    );
    await expect(sql`delete from audit_log where seq = 1`.execute(db)).rejects.toThrow(
      'audit_log is append-only: DELETE is not allowed',
    );
    await expect(sql`truncate audit_log`.execute(db)).rejects.toThrow(
      'audit_log is append-only: TRUNCATE is not allowed',
    );
    // Statement-level: even a statement that matches nothing, and an upsert, are refused.
    await expect(sql`delete from audit_log where false`.execute(db)).rejects.toThrow(
      'audit_log is append-only: DELETE is not allowed',
    );
    await expect(
      sql`insert into audit_log select * from audit_log where seq = 1
          on conflict (seq) do update set actor = 'mallory'`.execute(db),
    ).rejects.toThrow('audit_log is append-only: UPDATE is not allowed');
    // ENABLE ALWAYS: the replica role, which skips ordinary triggers, does not skip this one.
    await expect(
      db.transaction().execute(async (tx) => {
        await sql`set local session_replication_role = replica`.execute(tx);
        await sql`delete from audit_log`.execute(tx);
      }),
    ).rejects.toThrow('audit_log is append-only: DELETE is not allowed');
    const grants = await sql<{ n: number }>`
      select count(*)::int as n from information_schema.role_table_grants
      where table_name = 'audit_log' and grantee = 'PUBLIC'`.execute(db);
    expect(grants.rows[0]?.n).toBe(0);

    expect(await count()).toBe(before);
    expect((await audit.verify()).firstBroken).toBeUndefined();
  });

  it('names exactly the entry whose content was changed behind its back', async () => {
    const original = await db
      .selectFrom('audit_log')
      .select(['detail', 'hash'])
      .where('seq', '=', '3')
      .executeTakeFirstOrThrow();
    const restore = (): Promise<void> =>
      tamper((tx) =>
        sql`update audit_log set detail = ${JSON.stringify(original.detail)}::jsonb, hash = ${original.hash}
            where seq = 3`.execute(tx),
      );

    await tamper((tx) =>
      sql`update audit_log set detail = jsonb_set(detail, '{i}', '99') where seq = 3`.execute(tx),
    );
    // Re-enabled as it was: ALWAYS.
    const trigger = await sql<{ mode: string }>`
      select tgenabled as mode from pg_trigger where tgname = ${TRIGGER}`.execute(db);
    expect(trigger.rows[0]?.mode).toBe('A');
    const broken = await audit.verify({ batchSize: 2 });
    expect(broken).toMatchObject({ checked: 2, head: { seq: 2n }, firstBroken: { seq: 3n } });
    expect(broken.firstBroken?.reason).toMatch(/^hash mismatch: stored [0-9a-f]{64}, the entry's content/);
    await restore();
    expect((await audit.verify()).firstBroken).toBeUndefined();

    // Whoever also recomputes that entry's hash breaks the link to the next one instead.
    await tamper(async (tx) => {
      await sql`update audit_log set detail = jsonb_set(detail, '{i}', '99') where seq = 3`.execute(tx);
      const row = await tx
        .selectFrom('audit_log')
        .selectAll()
        .select(sql<string>`to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('t'))
        .where('seq', '=', '3')
        .executeTakeFirstOrThrow();
      const forged = chainHash(
        row.prev_hash,
        canonicalEntry({
          seq: 3n,
          at: row.t,
          tenantId: row.tenant_id,
          actor: row.actor,
          actorKind: row.actor_kind,
          action: row.action,
          resource: row.resource,
          outcome: row.outcome,
          detail: canonicalJson(row.detail),
          requestId: row.request_id,
        }),
      );
      await sql`update audit_log set hash = ${forged} where seq = 3`.execute(tx);
    });
    const relinked = await audit.verify();
    expect(relinked.firstBroken?.seq).toBe(4n);
    expect(relinked.firstBroken?.reason).toMatch(
      /^broken link: prev_hash [0-9a-f]{64} is not the hash of entry 3 \([0-9a-f]{64}\)$/,
    );
    await restore();
    expect((await audit.verify()).firstBroken).toBeUndefined();

    // A microsecond is enough: `at` is read as PostgreSQL stores it, not through a JS Date.
    await tamper((tx) =>
      sql`update audit_log set at = at + interval '1 microsecond' where seq = 5`.execute(tx),
    );
    expect((await audit.verify()).firstBroken).toMatchObject({ seq: 5n, reason: /^hash mismatch/ });
    await tamper((tx) =>
      sql`update audit_log set at = at - interval '1 microsecond' where seq = 5`.execute(tx),
    );
    expect((await audit.verify()).firstBroken).toBeUndefined();
  });

  it('names exactly the entry that was deleted', async () => {
    const saved = await sql<Record<string, unknown>>`select * from audit_log where seq = 6`.execute(db);
    await tamper((tx) => sql`delete from audit_log where seq = 6`.execute(tx));
    const broken = await audit.verify({ batchSize: 4 });
    expect(broken).toMatchObject({
      checked: 5,
      head: { seq: 5n },
      firstBroken: { seq: 6n, reason: 'gap in seq: entry 6 is missing (the next entry is 7)' },
    });

    const cli = await verifyMain(['--database-url', dbUrl()]);
    expect(cli.stdout).toBe(
      'audit log BROKEN at seq 6: gap in seq: entry 6 is missing (the next entry is 7)\n',
    );
    expect(cli.code).toBe(1);

    // Put the row back (INSERT is allowed): intact again, so detection is exact, not approximate.
    const r = saved.rows[0]!;
    await sql`insert into audit_log (seq, at, tenant_id, actor, actor_kind, action, resource, outcome, detail,
                request_id, prev_hash, hash)
              values (${r.seq}, ${r.at}, ${r.tenant_id}, ${r.actor}, ${r.actor_kind}, ${r.action}, ${r.resource},
                ${r.outcome}, ${JSON.stringify(r.detail)}::jsonb, ${r.request_id}, ${r.prev_hash}, ${r.hash})`.execute(
      db,
    );
    expect((await audit.verify()).firstBroken).toBeUndefined();
  });

  it('writes nothing when the caller’s transaction rolls back, and leaves no gap', async () => {
    const before = await count();
    await expect(
      db.transaction().execute(async (tx) => {
        const appended = await audit.append(entry({ action: 'device.revoke', detail: { reason: 'x' } }), tx);
        expect(appended.seq).toBe(BigInt(before + 1));
        throw new Error('the audited change failed');
      }),
    ).rejects.toThrow('the audited change failed');
    expect(await count()).toBe(before);
    const next = await audit.append(entry());
    expect(next.seq).toBe(BigInt(before + 1));
    expect((await audit.verify()).firstBroken).toBeUndefined();
  });

  it('refuses an oversize detail with a clear error, counted, and writes nothing', async () => {
    const before = await count();
    const failures = (await counter('vigil_cloud_audit_append_failures_total')).total ?? 0;
    // {"blob":"..."} is 11 bytes around the value.
    const fits = await audit.append(entry({ detail: { blob: 'x'.repeat(AUDIT_DETAIL_MAX_BYTES - 11) } }));
    expect(fits.seq).toBe(BigInt(before + 1));
    const refused = audit.append(entry({ detail: { blob: 'x'.repeat(AUDIT_DETAIL_MAX_BYTES - 10) } }));
    await expect(refused).rejects.toThrow(AuditEntryInvalidError);
    await expect(refused).rejects.toThrow(
      'audit entry refused: detail is 8193 bytes of canonical JSON, more than the 8192 allowed',
    );
    await expect(refused).rejects.toMatchObject({ code: 'AUDIT_DETAIL_TOO_LARGE' });
    // Multi-byte characters count as bytes.
    await expect(audit.append(entry({ detail: { blob: 'é'.repeat(4096) } }))).rejects.toThrow(
      /detail is 8203 bytes/,
    );
    await expect(audit.append(entry({ detail: { bad: 'a\u0000b' } }))).rejects.toThrow(/U\+0000/);
    await expect(audit.append(entry({ action: 'Revoke' }))).rejects.toThrow(/must look like noun.verb/);
    expect(await count()).toBe(before + 1);
    expect((await counter('vigil_cloud_audit_append_failures_total')).total).toBe(failures + 4);
  });

  it('records a revocation through DeviceRevoker once, with who and why, in the same transaction', async () => {
    const registry = new FleetRegistry(db);
    await registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' });
    await db
      .insertInto('device_certificates')
      .values({
        serial: '0A1B',
        tenant_id: 'acme',
        device_id: 'gw-1',
        fingerprint_sha256: 'AA:BB',
        not_before: new Date('2026-01-01T00:00:00Z'),
        not_after: new Date('2027-01-01T00:00:00Z'),
        nats_public_key: '',
        issued_by: 'enroll',
      })
      .execute();
    const revoker = new DeviceRevoker(db, undefined, audit, silent);
    const before = await count();

    const outcome = await revoker.revoke({
      tenantId: 'acme',
      deviceId: 'gw-1',
      by: 'bob@acme',
      reason: 'stolen',
    });
    expect(outcome).toMatchObject({ result: 'revoked', certificates: 1 });
    const rows = await db
      .selectFrom('audit_log')
      .selectAll()
      .where('seq', '>', String(before))
      .orderBy('seq')
      .execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      tenant_id: 'acme',
      actor: 'bob@acme',
      actor_kind: 'user',
      action: 'device.revoke',
      resource: 'device:acme/gw-1',
      outcome: 'allowed',
      detail: { reason: 'stolen', certificates: 1, result: 'revoked' },
    });

    // A missing device: nothing to revoke, nothing recorded.
    expect(await revoker.revoke({ tenantId: 'acme', deviceId: 'nope', by: 'bob@acme', reason: 'x' })).toEqual(
      {
        result: 'missing',
      },
    );
    expect(await count()).toBe(before + 1);

    // No record, no revocation: when the append fails, the device stays as it was.
    await registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-2' });
    await expect(
      revoker.revoke({ tenantId: 'acme', deviceId: 'gw-2', by: 'bob@acme', reason: 'r'.repeat(9000) }),
    ).rejects.toThrow(/detail is \d+ bytes/);
    const gw2 = await db
      .selectFrom('devices')
      .select('revoked_at')
      .where('tenant_id', '=', 'acme')
      .where('id', '=', 'gw-2')
      .executeTakeFirstOrThrow();
    expect(gw2.revoked_at).toBeNull();
    expect(await count()).toBe(before + 1);
  });

  it('records enrollment and renewal as the device, in the identity transaction', async () => {
    const tokens = new EnrollmentTokens(db, silent, new Registry());
    const identity = new DeviceIdentityService(
      db,
      tokens,
      {
        ca: createCa({ commonName: 'Audit Test CA' }),
        authority: () => undefined,
        certificateTtlSeconds: 86_400,
        minRenewIntervalSeconds: 0,
        natsUrls: [],
      },
      silent,
      new Registry(),
      undefined,
      audit,
    );
    const before = await count();
    const { secret } = await tokens.createToken({ tenantId: 'acme', siteId: 'lab', createdBy: 'alice@acme' });
    const enrolled = await identity.enroll({
      token: secret,
      csrPem: makeCsr('gw-e'),
      agentVersion: '1.0.0',
      hardwareId: 'hw-1',
      natsPublicKey: '',
    });
    const peer = { raw: new X509Certificate(enrolled.certificatePem).raw };
    await identity.renew(peer, { csrPem: makeCsr('gw-e'), natsPublicKey: '' });
    // Refused (the id is taken): the transaction rolls back, and its audit entry with it.
    const { secret: second } = await tokens.createToken({
      tenantId: 'acme',
      siteId: 'lab',
      createdBy: 'alice@acme',
    });
    await expect(
      identity.enroll({
        token: second,
        csrPem: makeCsr('gw-e'),
        agentVersion: '',
        hardwareId: '',
        natsPublicKey: '',
      }),
    ).rejects.toThrow(/already enrolled/);

    const rows = await db
      .selectFrom('audit_log')
      .selectAll()
      .where('seq', '>', String(before))
      .orderBy('seq')
      .execute();
    const serial = new X509Certificate(enrolled.certificatePem).serialNumber.toUpperCase();
    expect(rows).toMatchObject([
      {
        tenant_id: 'acme',
        actor: 'device:acme/gw-e',
        actor_kind: 'device',
        action: 'device.enroll',
        resource: 'device:acme/gw-e',
        outcome: 'allowed',
        detail: { site_id: 'lab', serial },
      },
      {
        actor: 'device:acme/gw-e',
        action: 'device.renew',
        detail: { previous: serial },
      },
    ]);
    expect(rows).toHaveLength(2);
  });

  it('verify-main prints OK with the head hash and exits 0', async () => {
    const result = await audit.verify();
    expect(result.firstBroken).toBeUndefined();
    const run = await verifyMain([], { DATABASE_URL: dbUrl() });
    expect(run.stdout).toBe(
      `audit log OK: ${result.checked} entries, head ${result.head!.hash.toString('hex')}\n`,
    );
    expect(run.code).toBe(0);
    const usage = await verifyMain(['--batch-size', '0', '--database-url', dbUrl()]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('--batch-size must be a positive integer');
  });
});

describe('audit log through the API', () => {
  const api = useApiCloud();
  const post = (path: string, token: string, body: unknown): Promise<Response> =>
    api.get(path, token, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const entries = (action: string) =>
    api.cloud().db.selectFrom('audit_log').selectAll().where('action', '=', action).orderBy('seq').execute();

  it('records token creation (never the secret), revocations and denied mutations', async () => {
    const admin = await api.token('acme', ['admin']);
    const viewer = await api.token('acme', ['viewer']);
    const created = await post('/v1/enrollment-tokens', admin, { site_id: 'hq', ttl_seconds: 3600 });
    expect(created.status).toBe(201);
    const { id, token } = (await created.json()) as { id: string; token: string };
    const [made] = await entries('enrollment_token.create');
    expect(made).toMatchObject({
      tenant_id: 'acme',
      actor: 'user@acme',
      outcome: 'allowed',
      resource: `enrollment_token:acme/${id}`,
      detail: { token_id: id, site_id: 'hq', ttl_seconds: 3600 },
    });
    expect(JSON.stringify(made)).not.toContain(token);

    await api.cloud().registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-9' });
    expect((await post('/v1/devices/gw-9/revoke', viewer, { reason: 'curious' })).status).toBe(403);
    expect((await post('/v1/enrollment-tokens', viewer, { site_id: 'hq' })).status).toBe(403);
    expect((await post('/v1/devices/gw-9/revoke', admin, { reason: 'decommissioned' })).status).toBe(200);
    // Reads are not audited when denied.
    expect((await api.get('/v1/enrollment-tokens', viewer)).status).toBe(403);

    const revokes = await entries('device.revoke');
    expect(revokes.map((e) => [e.outcome, e.detail.reason])).toEqual([
      ['denied', 'no policy permits devices:revoke'],
      ['allowed', 'decommissioned'],
    ]);
    expect(revokes[0]).toMatchObject({ actor: 'user@acme', resource: 'device:acme/gw-9' });
    expect((await entries('enrollment_token.create')).map((e) => e.outcome)).toEqual(['allowed', 'denied']);
    const verified = await api.cloud().audit.verify();
    expect(verified.checked).toBe(4);
    expect(verified.firstBroken).toBeUndefined();
  });
});
