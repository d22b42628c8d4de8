// The API adversarial probe, generated from the route registry (api/openapi.ts): every route x every role of
// both tenants x hostile values of every input (test/support/api-probe.ts), against the real cloud (PostgreSQL,
// Redis rate limits, Cedar policies, NATS). A route gets probed as soon as it is in the registry; the one thing
// it needs is a valid sample request (support/api-probe-samples.ts); a route without one fails the first test
// by name. API_PROBE_DUMP=<file> writes the refusal test's findings to a file.
//
// What must hold: no 5xx, ever; every 4xx is problem+json; a bad input sent by a caller the route allows is a
// 400 naming the field; another tenant's ids are never a 2xx; a role the registry does not grant never gets a
// 2xx; no refused request changes PostgreSQL. It ends printing `tried=N refused=N`.
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useRedis } from '@vigil/testkit';
import { apiOperations, isIdempotent, type ApiOperation } from '../src/api/openapi.js';
import { ensureDevConfigSigningKey } from '../src/index.js';
import { AlertStore } from '../src/alerts/store.js';
import { WebhookStore } from '../src/integrations/store.js';
import { ErasureStore } from '../src/privacy/erasure-store.js';
import { MediaRepository } from '../src/media/repository.js';
import { FsMediaStore, mediaKeyFor } from '../src/media/store.js';
import { insertEvents, PROBLEM_JSON, useApiCloud } from './api-fixtures.js';
import {
  fixture,
  RELEASE_PUBLISHER,
  samples,
  sha,
  type Fx,
  type SampleSpec,
} from './support/api-probe-samples.js';
import {
  hostileVariants,
  pool,
  propertiesOf,
  send,
  validRequest,
  type RawRequest,
  type RawResponse,
} from './support/api-probe.js';

const MAX_PAGE = 100;
const CONCURRENCY = 8;
// Each hostile value is sent by one caller the route allows and one it does not, rotating over every role of
// both tenants (so every combination is met across the values); API_PROBE_FULL=1 sends each by every caller.
const FULL = process.env.API_PROBE_FULL === '1';
const tmp = mkdtempSync(join(tmpdir(), 'vigil-api-probe-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const signingKey = ensureDevConfigSigningKey(join(tmp, 'keys'));
// The evidence export signing key (privacy.export.signingKeyFile), made for this run.
const exportKeyFile = join(tmp, 'export-key.pem');
writeFileSync(
  exportKeyFile,
  generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
);
const A = fixture('initech', 'hq', 'a');
const B = fixture('globex', 'plant', 'g');

interface Caller {
  fx: Fx;
  role: string;
  token: string;
  /** Site-scoped (a `sites` claim): what the role may do, but only at its site, as the policies decide. */
  scoped?: boolean;
}

interface Case {
  name: string;
  op: ApiOperation;
  caller: Caller | undefined;
  req: RawRequest;
  /** ok: 2xx; refused: 4xx; forbidden: 403; named: 400 naming `field`; lenient: anything but 5xx. */
  expect: 'ok' | 'refused' | 'forbidden' | 'named' | 'lenient';
  field?: string | undefined;
}

const allowed = (op: ApiOperation, role: string): boolean =>
  op.authorization === null || op.authorization === 'authenticated' || op.authorization.roles.includes(role);

/** Every problem with an answer; empty when it is what the case expects. */
function judge(c: Case, res: RawResponse): string[] {
  const out: string[] = [];
  const { status } = res;
  if (status >= 500) return [`${status} (server error)`];
  if (status >= 400) {
    if (!PROBLEM_JSON.test(res.contentType)) out.push(`${status} without problem+json (${res.contentType})`);
    else {
      let p: { status?: unknown; type?: unknown; errors?: Array<{ path: string }> } = {};
      try {
        p = JSON.parse(res.text) as typeof p;
      } catch {
        out.push(`${status}: the problem is not JSON`);
      }
      if (p.status !== status || typeof p.type !== 'string') out.push(`${status}: malformed problem`);
      if (c.expect === 'named') {
        const paths = (p.errors ?? []).map((e) => e.path);
        const f = c.field!;
        if (status !== 400) out.push(`${status}, expected 400 naming ${f}`);
        else if (!paths.some((x) => x === f || x.startsWith(`${f}.`)))
          out.push(`400 names ${JSON.stringify(paths)}, not ${f}`);
      }
    }
  }
  if (c.expect === 'forbidden' && status !== 403) out.push(`${status}, expected 403`);
  if (status < 300) {
    if (c.expect === 'refused' || c.expect === 'named') out.push(`${status}: accepted`);
    if (c.caller) {
      const other = c.caller.fx === A ? B : A;
      for (const m of [
        other.tenant,
        other.device,
        other.event,
        other.mediaRead,
        other.rollout,
        other.webhook,
        other.alertTarget,
        other.alertIncident,
        other.erasure,
      ])
        if (m !== '' && res.text.includes(m))
          out.push(`${status}: the answer holds ${m} of the other tenant`);
    }
  } else if (c.expect === 'ok') out.push(`${status}: expected 2xx (${res.text.slice(0, 200)})`);
  return out;
}

describe('API adversarial probe (every route x role x tenant x hostile input)', () => {
  const redis = useRedis();
  let keys: { privateJwkFile: string } | undefined;
  beforeAll(async () => {
    keys = await signingKey;
  });
  const generous = { ratePerSecond: 1_000_000, burst: 1_000_000 };
  const api = useApiCloud({
    api: { maxPageSize: MAX_PAGE },
    media: { dir: join(tmp, 'media') },
    models: { dir: join(tmp, 'models'), maxBytes: 64 * 1024 },
    releases: { dir: join(tmp, 'releases'), publisherTenant: RELEASE_PUBLISHER },
    privacy: { export: { signingKeyFile: exportKeyFile } },
    // Getters: evaluated when the cloud starts, after Redis and the signing key exist.
    get rateLimit() {
      return { redisUrl: redis().url, tenant: generous, client: generous };
    },
    get configSigning() {
      return { privateJwkFile: keys!.privateJwkFile };
    },
  });
  const ops = apiOperations(MAX_PAGE);
  const roles = [
    ...new Set(
      ops.flatMap((o) =>
        o.authorization === null || o.authorization === 'authenticated' ? [] : o.authorization.roles,
      ),
    ),
    'nobody',
  ].sort();
  const callers: Caller[] = [];
  const specs = new Map<Fx, Record<string, SampleSpec>>();
  const tally = { tried: 0, refused: 0, lenient: 0, baseline: 0 };
  const failures: string[] = [];
  let port = 0;

  const endRollouts = async (tenant: string): Promise<void> => {
    await api
      .cloud()
      .db.updateTable('rollouts')
      .set({ state: 'completed', finished_at: new Date() } as never)
      .where('tenant_id', '=', tenant)
      .execute();
  };

  beforeAll(async () => {
    const db = api.cloud().db;
    const reg = api.cloud().registry;
    const media = new FsMediaStore(join(tmp, 'media'));
    const repo = new MediaRepository(db);
    const hooks = new WebhookStore(db);
    for (const fx of [A, B]) {
      for (const d of [fx.device, fx.revokeDevice])
        await reg.registerDevice({ tenantId: fx.tenant, siteId: fx.site, deviceId: d });
      await db
        .updateTable('devices')
        .set({ enrolled_at: new Date() })
        .where('tenant_id', '=', fx.tenant)
        .execute();
      await insertEvents(db, [
        {
          event_id: fx.event,
          tenant_id: fx.tenant,
          device_id: fx.device,
          camera_id: 'cam1',
          label: 'person',
          at: fx.eventAt,
        },
      ]);
      for (const id of [fx.mediaRead, fx.mediaErase]) {
        const bytes = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(256)]);
        const capturedAt = new Date();
        const key = mediaKeyFor({
          tenantId: fx.tenant,
          mediaId: id,
          capturedAt,
          contentType: 'image/jpeg',
          sha256: sha(bytes),
        });
        await media.put(key, bytes);
        await repo.insert({
          tenantId: fx.tenant,
          mediaId: id,
          siteId: fx.site,
          deviceId: fx.device,
          cameraId: 'cam1',
          eventId: fx.event,
          contentType: 'image/jpeg',
          sha256: sha(bytes),
          sizeBytes: bytes.length,
          redacted: true,
          capturedAt,
          storedAt: new Date(),
          storageKey: key,
        });
      }
      await db
        .insertInto('rollouts')
        .values({
          id: fx.rollout,
          tenant_id: fx.tenant,
          scope: 'tenant',
          scope_id: fx.tenant,
          body: JSON.stringify({ cameras: [] }),
          spec: JSON.stringify({ canary: 1, waves: [100] }),
          state: 'running',
          created_by: `admin@${fx.tenant}`,
          created_at: new Date(),
          updated_at: new Date(),
        } as never)
        .execute();
      fx.webhook = (
        await hooks.create({
          tenantId: fx.tenant,
          url: 'https://hooks.example.com/x',
          filter: {},
          description: undefined,
          createdBy: `admin@${fx.tenant}`,
        })
      ).id;
      const alertStore = new AlertStore(db);
      fx.alertTarget = (
        await alertStore.createTarget({
          tenantId: fx.tenant,
          name: 'probe',
          url: 'https://agency.example.com/cap',
          auth: 'signature',
          createdBy: `admin@${fx.tenant}`,
        })
      ).target.id;
      const rule = await alertStore.createRule({
        tenantId: fx.tenant,
        name: 'probe',
        match: {},
        targetIds: [fx.alertTarget],
        createdBy: `admin@${fx.tenant}`,
        cap: { event: 'Intrusion', urgency: 'Immediate', severity: 'Severe', certainty: 'Observed' },
      });
      fx.alertRule = rule.id;
      fx.alertIncident = randomUUID();
      await db
        .insertInto('alert_incidents')
        .values({
          id: fx.alertIncident,
          tenant_id: fx.tenant,
          rule_id: rule.id,
          site_id: fx.site,
          device_id: fx.device,
          camera_id: 'cam1',
          track_id: 't1',
          state: 'alerted',
          first_seen_at: new Date(),
          last_event_id: fx.event,
          fingerprint: '[]',
          seq: 1,
          created_at: new Date(),
          updated_at: new Date(),
        })
        .execute();
      fx.alertMessage = `${fx.alertTarget}:vigil-${fx.alertIncident}-1`;
      await db
        .insertInto('alert_messages')
        .values({
          id: fx.alertMessage,
          identifier: `vigil-${fx.alertIncident}-1`,
          tenant_id: fx.tenant,
          incident_id: fx.alertIncident,
          target_id: fx.alertTarget,
          seq: 1,
          msg_type: 'Alert',
          references_id: null,
          sent: new Date(),
          event_id: fx.event,
          info: JSON.stringify({}),
          state: 'dead',
          updated_at: new Date(),
        })
        .execute();
      // Legal holds: one active (the release sample), one awaiting a second admin (the approve sample). On a
      // track nothing else of the probe touches, so that media erasure's sample is not held.
      await db
        .insertInto('legal_holds')
        .values(
          [fx.hold, fx.holdPending].map((id, i) => ({
            id,
            tenant_id: fx.tenant,
            kind: 'track' as const,
            event_id: null,
            device_id: fx.device,
            camera_id: 'cam9',
            track_id: 'probe',
            from_ts: null,
            to_ts: null,
            reason: 'probe',
            placed_by: `legal@${fx.tenant}`,
            state: i === 0 ? ('active' as const) : ('place_pending' as const),
            released_by: null,
            released_at: null,
            release_reason: null,
          })),
        )
        .execute();
      fx.erasure = (
        await new ErasureStore(db, api.cloud().audit, () => new Date()).create(
          fx.tenant,
          { kind: 'event', event_ids: [randomUUID()] },
          'probe',
          `admin@${fx.tenant}`,
        )
      ).id;
      specs.set(fx, samples(fx, endRollouts));
      for (const role of roles)
        callers.push({
          fx,
          role,
          token: await api.token(fx.tenant, role === 'nobody' ? [] : [role], { ttlSeconds: 3600 }),
        });
      // Site-scoped callers: the registry does not say what a site scope allows, so their valid requests are
      // only held to "no 5xx, nothing of the other tenant"; every refusal below still applies to them.
      for (const role of ['installer', 'operator'])
        callers.push({
          fx,
          role,
          scoped: true,
          token: await api.token(fx.tenant, [role], { ttlSeconds: 3600, sites: [fx.site] }),
        });
    }
    port = Number(new URL(api.base()).port);
  });

  afterAll(() => {
    console.log(
      `[api-probe] tried=${tally.tried} refused=${tally.refused} (bad inputs, forbidden roles, other tenants' ids); ` +
        `also ${tally.baseline} valid requests answered 2xx and ${tally.lenient} odd-but-maybe-valid inputs, none a 5xx`,
    );
  });

  async function run(cases: readonly Case[]): Promise<void> {
    await pool(
      cases.map((c) => async () => {
        const res = await send(port, c.req, c.caller?.token);
        const problems = judge(c, res);
        if (c.expect === 'refused' || c.expect === 'named') {
          tally.tried++;
          if (res.status >= 400 && res.status < 500) tally.refused++;
        } else if (c.expect === 'lenient') tally.lenient++;
        else if (problems.length === 0) tally.baseline++;
        for (const p of problems) failures.push(`${c.name} -> ${p}`);
      }),
      CONCURRENCY,
    );
  }

  function takeFailures(): string[] {
    return failures.splice(0, failures.length);
  }

  const label = (op: ApiOperation, c: Caller | undefined): string =>
    `${op.operationId} [${c ? `${c.fx.tenant}/${c.role}${c.scoped ? `@${c.fx.site}` : ''}` : 'anonymous'}]`;
  const spec = (fx: Fx, op: ApiOperation): SampleSpec => specs.get(fx)![op.operationId]!;
  // Routes without a sample fail the first test by name; the others are probed all the same.
  const sampled = (): ApiOperation[] => ops.filter((o) => specs.get(A)?.[o.operationId] !== undefined);
  const methodsOf = (op: ApiOperation): string[] =>
    ops.filter((o) => o.mount === op.mount && o.path === op.path).map((o) => o.method);
  const authCallers = (op: ApiOperation): Array<Caller | undefined> =>
    op.authorization === null ? [undefined] : callers;

  it('has a valid sample for every route of the registry', () => {
    const problems: string[] = [];
    const table = samples(A, endRollouts);
    for (const op of ops) {
      const s = table[op.operationId]?.sample;
      if (!s) {
        problems.push(`${op.operationId}: no sample (add one to test/support/api-probe-samples.ts)`);
        continue;
      }
      const want = (schema: typeof op.params): string[] => Object.keys(propertiesOf(schema)).sort();
      if (JSON.stringify(Object.keys(s.params ?? {}).sort()) !== JSON.stringify(want(op.params)))
        problems.push(`${op.operationId}: sample path parameters differ from the route's`);
      // Every query parameter is in the sample, so that each one is probed on a request otherwise valid.
      if (JSON.stringify(Object.keys(s.query ?? {}).sort()) !== JSON.stringify(want(op.query)))
        problems.push(
          `${op.operationId}: sample query must set every parameter: ${want(op.query).join(', ')}`,
        );
      const jsonBody = op.body !== undefined && op.bodyContentType === undefined;
      if (jsonBody !== (s.body !== undefined))
        problems.push(`${op.operationId}: sample body does not match the route's`);
      if (jsonBody && s.body !== undefined) {
        const parsed = op.body!.safeParse(s.body);
        if (!parsed.success) problems.push(`${op.operationId}: sample body invalid: ${parsed.error.message}`);
      }
    }
    for (const id of Object.keys(table))
      if (!ops.some((o) => o.operationId === id))
        problems.push(`${id}: sample of a route that does not exist`);
    expect(problems).toEqual([]);
  });

  // The probes send thousands of requests one after the other, so their time grows with the machine's load: a
  // clean-clone CI run at load average 25-30 on 2 cores took over 300 s for the refusal probe. The verdict is
  // on the answers, never on the time.
  it('answers every valid sample with a 2xx, for every role the registry grants, in both tenants', async () => {
    const phases = [...new Set(sampled().map((op) => spec(A, op).phase ?? 0))].sort();
    for (const phase of phases)
      for (const op of sampled().filter((o) => (spec(A, o).phase ?? 0) === phase))
        for (const fx of [A, B]) {
          const s = spec(fx, op);
          for (const caller of authCallers(op).filter(
            (c) => c === undefined || (c.fx === fx && !c.scoped && allowed(op, c.role)),
          )) {
            await s.before?.(fx);
            const req = validRequest(op, s.sample, isIdempotent(op) ? randomUUID() : undefined);
            const other = s.onlyTenant !== undefined && fx.tenant !== s.onlyTenant;
            await run([
              { name: `${label(op, caller)} valid`, op, caller, req, expect: other ? 'forbidden' : 'ok' },
            ]);
          }
          if (op.authorization === null) break;
        }
    expect(takeFailures()).toEqual([]);
  }, 900_000);

  it('never answers an odd input with a 5xx', async () => {
    const cases: Case[] = [];
    for (const op of sampled()) {
      const who = authCallers(op);
      for (const caller of who.filter((c) => c?.scoped === true && allowed(op, c.role))) {
        const req = validRequest(
          op,
          spec(caller!.fx, op).sample,
          isIdempotent(op) ? randomUUID() : undefined,
        );
        cases.push({ name: `${label(op, caller)} valid`, op, caller, req, expect: 'lenient' });
      }
      const variants = who.map((c) =>
        hostileVariants(op, spec(c?.fx ?? A, op).sample, isIdempotent(op), methodsOf(op)),
      );
      variants[0]!.forEach((v, i) => {
        if (v.kind !== 'maybe') return;
        for (const k of FULL ? who.keys() : [i % who.length]) {
          const caller = who[k];
          const req = variants[k]![i]!.req;
          cases.push({ name: `${label(op, caller)} ${v.name}`, op, caller, req, expect: 'lenient' });
        }
      });
    }
    await run(cases);
    expect(takeFailures()).toEqual([]);
  }, 900_000);

  it('refuses every bad input, forbidden role and other tenant’s id, and nothing refused is written', async () => {
    const db = api.cloud().db;
    // The executor moves active rollouts on its own: end them, then wait until PostgreSQL is still.
    await endRollouts(A.tenant);
    await endRollouts(B.tenant);
    // scheduler_leases: the scheduler renews its lease (a new expiry) every few seconds, whatever the requests.
    const fingerprint = async (): Promise<Record<string, string>> => {
      const tables = await sql<{ name: string }>`
        select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition
          and c.relname not in ('audit_log', 'idempotency_keys', 'scheduler_leases') order by 1`.execute(db);
      const out: Record<string, string> = {};
      for (const { name } of tables.rows)
        out[name] = (
          await sql<{ h: string }>`select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) as h
            from ${sql.table(name)} t`.execute(db)
        ).rows[0]!.h;
      return out;
    };
    let before = await fingerprint();
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const again = await fingerprint();
      if (JSON.stringify(again) === JSON.stringify(before)) break;
      before = again;
    }
    const auditSeq =
      (await sql<{ m: string | null }>`select max(seq)::text as m from audit_log`.execute(db)).rows[0]!.m ??
      '0';
    const idemAt = new Date();

    const cases: Case[] = [];
    for (const op of sampled()) {
      if (op.mount !== '/v1') continue; // the operational endpoints take no input
      for (const caller of authCallers(op)) {
        const fx = caller?.fx ?? A;
        const s = spec(fx, op);
        const mayAct = caller === undefined || allowed(op, caller.role);
        if (!mayAct)
          cases.push({
            name: `${label(op, caller)} forbidden role, valid request`,
            op,
            caller,
            req: validRequest(op, s.sample, isIdempotent(op) ? randomUUID() : undefined),
            expect: 'refused',
          });
        const other = spec(fx === A ? B : A, op);
        if (op.params !== undefined && s.crossTenantExempt === undefined && caller !== undefined)
          cases.push({
            name: `${label(op, caller)} the other tenant’s ids`,
            op,
            caller,
            req: validRequest(op, other.sample, isIdempotent(op) ? randomUUID() : undefined),
            expect: 'refused',
          });
      }
      if (op.authorization !== null)
        cases.push({
          name: `${label(op, undefined)} no bearer token, valid request`,
          op,
          caller: undefined,
          req: validRequest(op, spec(A, op).sample, isIdempotent(op) ? randomUUID() : undefined),
          expect: 'refused',
        });
      // Hostile values: by callers the route allows (a 400 naming the field) and by callers it does not.
      const who = authCallers(op);
      const variants = who.map((c) =>
        hostileVariants(op, spec(c?.fx ?? A, op).sample, isIdempotent(op), methodsOf(op)),
      );
      // A caller of a tenant other than the route's only tenant is refused before its input is read.
      const only = spec(A, op).onlyTenant;
      const may = [...who.keys()].filter(
        (k) =>
          who[k] === undefined ||
          (allowed(op, who[k].role) && (only === undefined || who[k].fx.tenant === only)),
      );
      const mayNot = [...who.keys()].filter((k) => !may.includes(k));
      variants[0]!.forEach((v, i) => {
        if (v.kind !== 'must') return;
        const pick = (ks: number[]): number[] => (FULL || ks.length === 0 ? ks : [ks[i % ks.length]!]);
        for (const k of [...pick(may), ...pick(mayNot)]) {
          const caller = who[k];
          const mayAct = may.includes(k);
          cases.push({
            name: `${label(op, caller)} ${v.name}`,
            op,
            caller,
            req: variants[k]![i]!.req,
            expect: mayAct && caller?.scoped !== true && v.field !== undefined ? 'named' : 'refused',
            field: v.field,
          });
        }
      });
    }
    const started = Date.now();
    await run(cases);
    console.log(`[api-probe] ${cases.length} refusal cases in ${Date.now() - started} ms`);

    const after = await fingerprint();
    for (const t of Object.keys(before))
      if (before[t] !== after[t]) failures.push(`table ${t} changed while only refused requests were sent`);
    const audit = await db
      .selectFrom('audit_log')
      .select(['action', 'outcome', 'actor'])
      .where('seq', '>', auditSeq as never)
      .where('outcome', '=', 'allowed')
      .execute();
    for (const a of audit)
      failures.push(`audit_log: ${a.action} allowed for ${a.actor} while only refused requests were sent`);
    const stored = await sql<{ n: number }>`select count(*)::int as n from idempotency_keys
      where created_at >= ${idemAt} and response_status < 300`.execute(db);
    if (stored.rows[0]!.n > 0) failures.push(`idempotency_keys: ${stored.rows[0]!.n} stored 2xx responses`);
    const found = takeFailures();
    if (process.env.API_PROBE_DUMP) writeFileSync(process.env.API_PROBE_DUMP, found.join('\n'));
    expect(found.length, found.slice(0, 60).join('\n')).toBe(0);
    expect(tally.refused).toBe(tally.tried);
  }, 900_000);
});
