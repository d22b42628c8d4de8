import { createHash } from 'node:crypto';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { VigilError } from '../lib/errors.js';
import type { AuditActorKind, AuditOutcome, Database } from '../storage/tables.js';

/*
 * The audit log: an append-only, hash-chained table (migration 0005_audit_log) of every admin action, device
 * identity change and media access.
 *
 * The chain. Entry `seq` (1, 2, 3, ... with no gaps) stores
 *
 *   prev_hash = hash of entry seq-1, or 32 zero bytes for entry 1 (AUDIT_GENESIS_HASH)
 *   hash      = SHA-256( prev_hash (32 raw bytes) || UTF-8 bytes of canonical(entry) )
 *
 * canonical(entry) is the JSON text of this 11-element array, serialized per RFC 8785 (JCS) — which for these
 * values is exactly: no whitespace, strings escaped as ECMAScript JSON.stringify escapes them, object keys sorted
 * by UTF-16 code units, numbers as ECMAScript Number#toString prints them:
 *
 *   ["vigil.audit.v1", seq, at, tenant_id, actor, actor_kind, action, resource, outcome, detail, request_id]
 *
 *   "vigil.audit.v1"  the format version (a later format changes this tag, never the meaning of v1)
 *   seq               a string: the decimal digits of the bigint, e.g. "42"
 *   at                a string: the timestamptz as PostgreSQL stores it (microsecond precision) in UTC,
 *                     `YYYY-MM-DDTHH:MM:SS.ffffffZ`, six fractional digits always. The appender takes the time
 *                     from a JS Date (milliseconds), so the last three digits it writes are always 000: what it
 *                     hashes is exactly what reads back. The verifier reads the stored value as text with
 *                     to_char (not through a JS Date), so a microsecond changed in the database is detected.
 *   tenant_id, resource, request_id   a string or null
 *   actor, actor_kind, action, outcome  strings
 *   detail            the JSON object itself (not a string), in JCS form: keys sorted at every depth. jsonb
 *                     reorders keys and drops insignificant whitespace, so the verifier re-serializes what it
 *                     reads rather than hashing jsonb's text. The appender stores the canonical text, after a
 *                     JSON round trip (undefined members dropped, toJSON applied, as JSON.stringify does).
 *
 * Every string (and every string inside detail) must be well-formed UTF-16 without U+0000: PostgreSQL would refuse
 * NUL, and would store a lone surrogate as U+FFFD, which would no longer hash the same. Such entries are refused.
 *
 * Appending keeps one linear chain across any number of cloud processes: inside the transaction, take the
 * transaction-scoped advisory lock AUDIT_CHAIN_LOCK, read the last (seq, hash), insert seq+1. The lock is held
 * until the transaction ends, so append late in a transaction. The caller's transaction must run at READ
 * COMMITTED (PostgreSQL's default): under REPEATABLE READ a snapshot older than the lock would miss the latest
 * entry, and the primary key refuses the duplicate seq (the append fails; the chain never forks).
 *
 * What the chain proves: any change to, deletion of or insertion into the entries up to the head is reported by
 * verify() at the first entry affected. It cannot show that entries were cut off at the end, or that someone able
 * to disable the trigger recomputed the whole chain from some point on: keep the head hash that verification
 * prints somewhere else (a ticket, another system) and compare it later.
 */

/** The first entry's prev_hash. */
export const AUDIT_GENESIS_HASH: Buffer = Buffer.alloc(32);
/** Largest `detail`, in bytes of its canonical JSON. */
export const AUDIT_DETAIL_MAX_BYTES = 8 * 1024;
/** The format tag that starts every canonical entry. */
export const AUDIT_FORMAT = 'vigil.audit.v1';
/** pg_advisory_xact_lock key that serializes appends: the bytes of ASCII "vigilaud" as a signed int64. */
export const AUDIT_CHAIN_LOCK = BigInt('8532464671517668708');

const ACTION_RE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
const ACTOR_KINDS: readonly AuditActorKind[] = ['user', 'device', 'service', 'system'];
const OUTCOMES: readonly AuditOutcome[] = ['allowed', 'denied', 'failed'];
// In unicode mode \p{Cs} matches only unpaired surrogates.
const LONE_SURROGATE = /\p{Cs}/u;
const badText = (s: string): boolean => s.includes('\u0000') || LONE_SURROGATE.test(s);
const ENTRIES_METRIC = 'vigil_cloud_audit_entries_total';
const FAILURES_METRIC = 'vigil_cloud_audit_append_failures_total';

export interface AuditEntry {
  /** null for system-wide actions. */
  tenantId: string | null;
  /** The JWT subject, `device:<tenant>/<id>` ({@link deviceRef}), a service name, or `system`. */
  actor: string;
  actorKind: AuditActorKind;
  /** `<noun>.<verb>`, lower case: device.revoke, enrollment_token.create, device.enroll, media.read, ... */
  action: string;
  /** What was acted on, e.g. `device:acme/gw-1`. */
  resource?: string | null | undefined;
  outcome: AuditOutcome;
  /** Why and how (never secrets); at most {@link AUDIT_DETAIL_MAX_BYTES} of canonical JSON. */
  detail?: Record<string, unknown> | undefined;
  requestId?: string | null | undefined;
}

export interface AppendedEntry {
  seq: bigint;
  hash: Buffer;
}

export interface VerifyOptions {
  /**
   * Start here (default 1). The entry before it, when present, anchors the first link; when it is gone (an
   * archived range), the first entry's prev_hash is trusted.
   */
  fromSeq?: number | bigint;
  /** Entries read per query (default 1000): memory stays bounded however long the chain is. */
  batchSize?: number;
  /** Called after every batch. */
  onProgress?: (progress: { checked: number; seq: bigint }) => void;
}

export interface VerifyResult {
  /** Entries whose link and hash were checked and found good. */
  checked: number;
  /** The last good entry (seq 0 and AUDIT_GENESIS_HASH for an empty log); absent when unknown. */
  head?: { seq: bigint; hash: Buffer };
  /** The first entry that does not verify, and why. Nothing after it is checked. */
  firstBroken?: { seq: bigint; reason: string };
}

/** An entry the audit log refuses to store (a programming error in the caller, never a user input). */
export class AuditEntryInvalidError extends VigilError {
  constructor(code: 'AUDIT_ENTRY_INVALID' | 'AUDIT_DETAIL_TOO_LARGE', message: string) {
    super(code, message, false);
  }
}

/** The actor or resource name of a device: `device:<tenant>/<id>`. */
export function deviceRef(tenantId: string, deviceId: string): string {
  return `device:${tenantId}/${deviceId}`;
}

/** A JSON value in RFC 8785 (JCS) form: no whitespace, object keys sorted by UTF-16 code units. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('not a finite number');
    const text = JSON.stringify(value) as string | undefined;
    if (text === undefined) throw new TypeError(`${typeof value} is not a JSON value`);
    return text;
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const members = Object.keys(obj)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`);
  return `{${members.join(',')}}`;
}

/** A timestamp as the chain hashes it: UTC, six fractional digits (`2026-01-02T03:04:05.678000Z`). */
export function canonicalTimestamp(at: Date): string {
  const iso = at.toISOString(); // throws on an invalid date
  if (iso.length !== 24) throw new RangeError(`timestamp ${iso} is outside years 0000-9999`);
  return `${iso.slice(0, 23)}000Z`;
}

/** The fields of one entry exactly as hashed (see the comment at the top of this file). */
export interface CanonicalFields {
  seq: bigint;
  /** {@link canonicalTimestamp} */
  at: string;
  tenantId: string | null;
  actor: string;
  actorKind: string;
  action: string;
  resource: string | null;
  outcome: string;
  /** {@link canonicalJson} of the detail object. */
  detail: string;
  requestId: string | null;
}

export function canonicalEntry(f: CanonicalFields): string {
  const s = (v: string | null): string => JSON.stringify(v);
  return `[${s(AUDIT_FORMAT)},${s(f.seq.toString())},${s(f.at)},${s(f.tenantId)},${s(f.actor)},${s(f.actorKind)},${s(f.action)},${s(f.resource)},${s(f.outcome)},${f.detail},${s(f.requestId)}]`;
}

export function chainHash(prevHash: Buffer, canonical: string): Buffer {
  return createHash('sha256').update(prevHash).update(canonical, 'utf8').digest();
}

/**
 * The append-only, hash-chained audit log. append() writes one entry (in the caller's transaction when given,
 * so that an action and its record commit or roll back together); verify() walks the chain and names the first
 * entry that does not check out.
 */
export class AuditLog {
  private readonly entries: Counter<'action' | 'outcome'>;
  private readonly failures: Counter;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly log: Logger,
    metrics: Registry,
    private readonly now: () => Date = () => new Date(),
  ) {
    // Several AuditLogs (app, API router) may share one registry: register each counter once.
    this.entries =
      (metrics.getSingleMetric(ENTRIES_METRIC) as Counter<'action' | 'outcome'> | undefined) ??
      new Counter({
        name: ENTRIES_METRIC,
        help: 'Audit entries appended, by action and outcome (an entry appended inside a caller transaction that then rolled back is counted too)',
        labelNames: ['action', 'outcome'],
        registers: [metrics],
      });
    this.failures =
      (metrics.getSingleMetric(FAILURES_METRIC) as Counter | undefined) ??
      new Counter({
        name: FAILURES_METRIC,
        help: 'Audit appends that failed (refused entry or database error); the audited action fails with them when they share a transaction',
        registers: [metrics],
      });
  }

  /**
   * Appends one entry. With `tx`, the entry is part of that transaction (and holds the chain lock until it ends);
   * without, it commits on its own. Throws {@link AuditEntryInvalidError} for an entry it refuses.
   */
  async append(entry: AuditEntry, tx?: Transaction<Database>): Promise<AppendedEntry> {
    try {
      const fields = prepare(entry);
      if (tx !== undefined && !tx.isTransaction)
        throw new AuditEntryInvalidError(
          'AUDIT_ENTRY_INVALID',
          'append(entry, tx): tx must be a transaction',
        );
      const out = tx
        ? await this.appendIn(tx, fields)
        : await this.db.transaction().execute((t) => this.appendIn(t, fields));
      this.entries.inc({ action: fields.action, outcome: fields.outcome });
      this.log.debug(
        { seq: out.seq.toString(), action: fields.action, outcome: fields.outcome, actor: fields.actor },
        'audit entry appended',
      );
      return out;
    } catch (err) {
      this.failures.inc();
      this.log.error(
        { err, action: entry.action, outcome: entry.outcome, tenant: entry.tenantId },
        'audit entry not appended',
      );
      throw err;
    }
  }

  private async appendIn(
    tx: Transaction<Database>,
    fields: Omit<CanonicalFields, 'seq' | 'at'>,
  ): Promise<AppendedEntry> {
    // Lock and head in one round trip (migration 0038): the lock is held until COMMIT, so every round trip
    // under it is one every other append waits for.
    const { rows } = await sql<{
      seq: string;
      hash: Buffer;
    }>`select seq, hash from vigil_audit_chain_head(${sql.lit(AUDIT_CHAIN_LOCK)})`.execute(tx);
    const last = rows[0];
    const seq = last ? BigInt(last.seq) + 1n : 1n;
    const prevHash = last?.hash ?? AUDIT_GENESIS_HASH;
    // Read under the lock, so that `at` follows seq as long as the processes' clocks agree. A JS Date has
    // millisecond precision: stored as is, it reads back exactly as hashed.
    const at = new Date(this.now().getTime());
    const canonical = { ...fields, seq, at: canonicalTimestamp(at) };
    const hash = chainHash(prevHash, canonicalEntry(canonical));
    await tx
      .insertInto('audit_log')
      .values({
        seq: seq.toString(),
        at,
        tenant_id: fields.tenantId,
        actor: fields.actor,
        actor_kind: fields.actorKind as AuditActorKind,
        action: fields.action,
        resource: fields.resource,
        outcome: fields.outcome as AuditOutcome,
        detail: fields.detail,
        request_id: fields.requestId,
        prev_hash: prevHash,
        hash,
      })
      .execute();
    return { seq, hash };
  }

  /**
   * Walks the chain in seq order, `batchSize` entries per query, recomputing every hash and checking every
   * link and that seq has no gap. Stops at the first broken entry. Reads only: safe while others append.
   */
  async verify(opts: VerifyOptions = {}): Promise<VerifyResult> {
    const batchSize = opts.batchSize ?? 1000;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 100_000)
      throw new RangeError('batchSize must be an integer from 1 to 100000');
    const fromSeq = BigInt(opts.fromSeq ?? 1);
    if (fromSeq < 1n) throw new RangeError('fromSeq must be at least 1');

    let prev: Buffer | undefined = AUDIT_GENESIS_HASH;
    if (fromSeq > 1n) {
      const anchor = await this.db
        .selectFrom('audit_log')
        .select('hash')
        .where('seq', '=', (fromSeq - 1n).toString())
        .executeTakeFirst();
      prev = anchor?.hash;
    }
    let expected = fromSeq;
    let checked = 0;
    const done = (firstBroken?: { seq: bigint; reason: string }): VerifyResult => ({
      checked,
      ...(prev ? { head: { seq: expected - 1n, hash: prev } } : {}),
      ...(firstBroken ? { firstBroken } : {}),
    });

    for (;;) {
      const rows = await this.db
        .selectFrom('audit_log')
        .select([
          'seq',
          sql<string>`to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('at_text'),
          'tenant_id',
          'actor',
          'actor_kind',
          'action',
          'resource',
          'outcome',
          'detail',
          'request_id',
          'prev_hash',
          'hash',
        ])
        .where('seq', '>=', expected.toString())
        .orderBy('seq')
        .limit(batchSize)
        .execute();
      for (const row of rows) {
        const seq = BigInt(row.seq);
        if (seq !== expected)
          return done({
            seq: expected,
            reason: `gap in seq: entry ${expected} is missing (the next entry is ${seq})`,
          });
        if (prev && !row.prev_hash.equals(prev))
          return done({
            seq,
            reason:
              seq === 1n
                ? `broken link: prev_hash ${hex(row.prev_hash)} is not the genesis hash (32 zero bytes)`
                : `broken link: prev_hash ${hex(row.prev_hash)} is not the hash of entry ${seq - 1n} (${hex(prev)})`,
          });
        let computed: Buffer;
        try {
          computed = chainHash(
            row.prev_hash,
            canonicalEntry({
              seq,
              at: row.at_text,
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
        } catch (err) {
          return done({ seq, reason: `unreadable entry: ${(err as Error).message}` });
        }
        if (!computed.equals(row.hash))
          return done({
            seq,
            reason: `hash mismatch: stored ${hex(row.hash)}, the entry's content hashes to ${hex(computed)}`,
          });
        prev = row.hash;
        expected = seq + 1n;
        checked++;
      }
      opts.onProgress?.({ checked, seq: expected - 1n });
      if (rows.length < batchSize) return done();
    }
  }
}

const hex = (b: Buffer): string => b.toString('hex');

function invalid(message: string): never {
  throw new AuditEntryInvalidError('AUDIT_ENTRY_INVALID', `audit entry refused: ${message}`);
}

function text(name: string, value: unknown, max: number, nullable: boolean): string | null {
  if (value === null || value === undefined) {
    if (nullable) return null;
    invalid(`${name} is required`);
  }
  if (typeof value !== 'string') invalid(`${name} must be a string`);
  if (value.length === 0 || value.length > max) invalid(`${name} must be 1-${max} characters`);
  if (badText(value)) invalid(`${name} contains U+0000 or an unpaired surrogate`);
  return value;
}

/** Validates an entry and puts it in canonical form (everything but seq and at). */
function prepare(e: AuditEntry): Omit<CanonicalFields, 'seq' | 'at'> {
  const action = text('action', e.action, 64, false)!;
  if (!ACTION_RE.test(action)) invalid(`action "${action}" must look like noun.verb (a-z, 0-9, _ and dots)`);
  if (!ACTOR_KINDS.includes(e.actorKind)) invalid(`actorKind must be one of ${ACTOR_KINDS.join(', ')}`);
  if (!OUTCOMES.includes(e.outcome)) invalid(`outcome must be one of ${OUTCOMES.join(', ')}`);
  return {
    tenantId: text('tenantId', e.tenantId, 256, true),
    actor: text('actor', e.actor, 512, false)!,
    actorKind: e.actorKind,
    action,
    resource: text('resource', e.resource, 1024, true),
    outcome: e.outcome,
    detail: canonicalDetail(e.detail ?? {}),
    requestId: text('requestId', e.requestId, 256, true),
  };
}

function canonicalDetail(detail: Record<string, unknown>): string {
  let plain: unknown;
  try {
    // The JSON data model, as JSON.stringify sees it (toJSON, undefined members dropped).
    plain = JSON.parse(JSON.stringify(detail)) as unknown;
  } catch (err) {
    invalid(`detail is not JSON-serializable: ${(err as Error).message}`);
  }
  if (plain === null || typeof plain !== 'object' || Array.isArray(plain))
    invalid('detail must be an object');
  checkStrings(plain);
  const canonical = canonicalJson(plain);
  const bytes = Buffer.byteLength(canonical, 'utf8');
  if (bytes > AUDIT_DETAIL_MAX_BYTES)
    throw new AuditEntryInvalidError(
      'AUDIT_DETAIL_TOO_LARGE',
      `audit entry refused: detail is ${bytes} bytes of canonical JSON, more than the ${AUDIT_DETAIL_MAX_BYTES} allowed`,
    );
  return canonical;
}

function checkStrings(v: unknown): void {
  if (typeof v === 'string') {
    if (badText(v)) invalid('detail contains U+0000 or an unpaired surrogate');
  } else if (Array.isArray(v)) {
    for (const x of v) checkStrings(x);
  } else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      checkStrings(k);
      checkStrings(x);
    }
  }
}
