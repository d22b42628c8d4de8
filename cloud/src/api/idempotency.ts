import { createHash, randomUUID } from 'node:crypto';
import type { RequestHandler, Response } from 'express';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { canonicalJson } from '../audit/audit-log.js';
import type { Database } from '../storage/tables.js';
import type { Principal } from '../auth/principal.js';
import { principalOf } from './authenticate.js';
import {
  IdempotencyKeyInUseError,
  IdempotencyKeyInvalidError,
  IdempotencyKeyReusedError,
  IdempotentResultUnavailableError,
} from './errors.js';

/*
 * Idempotency-Key for POST and PATCH (draft-ietf-httpapi-idempotency-key-header).
 *
 * A client that may retry a request sends `Idempotency-Key: <key>` (1-255 printable ASCII characters; the
 * draft's quoted sf-string form "..." is accepted too and means the same key). The key is scoped to the
 * whole caller (tenant, JWT subject, roles and sites: {@link principalKey}) and the request (method + path):
 * the same key on another route is another key. The router asks the operation's first authorization question
 * before this middleware runs (api/router.ts), so a replay never skips authorization.
 *
 *   first request     claims the key (INSERT ... ON CONFLICT: exactly one of several concurrent requests wins),
 *                     runs, and stores its response (status, Content-Type/Location, body) before sending it
 *   repeat, same body the stored response, with `Idempotent-Replayed: true`; the handler does not run again
 *   repeat, other body 422 (idempotency-key-reused): the body is compared by the SHA-256 of its canonical JSON
 *   while in progress 409 (idempotency-key-in-use) with Retry-After: 1
 *   5xx               the claim is released (nothing is stored), so a retry runs again; so are 401, 403, 408,
 *                     409 and 429, which say something about the caller's state at that time (credentials,
 *                     permissions, a conflict, a rate), not about the request, and may change
 *   other 4xx         stored and replayed like a success
 *
 * Responses are kept for api.idempotency.ttlSeconds (24 h by default); then the same key runs anew. Expired
 * rows are deleted lazily: at most once a minute per process, after a claim, {@link CLEANUP_BATCH} rows at a
 * time (the oldest first). A claim still in_progress after api.idempotency.inProgressTimeoutSeconds belongs to
 * a request that died with its process: a repeat with the same body takes it over.
 *
 * Bodies are replayed only when they are small: a response body over {@link MAX_REPLAY_BODY_BYTES} is not
 * stored, and a repeat gets 409 (idempotent-result-unavailable) telling the client that the request did
 * complete. No route returns anything that large today.
 *
 * One-time secrets are never stored. A route whose success body holds a secret (POST /v1/enrollment-tokens:
 * the token is shown once, the server keeps its SHA-256 alone) declares `withholdSuccessBody`: its 2xx status
 * is recorded without the body, so a repeat does not mint a second token but gets 409
 * (idempotent-result-unavailable) saying that the token was created and its secret cannot be shown again.
 * Storing the secret, even encrypted, for 24 h would put a usable credential in the database and its backups
 * (and need a key to manage); a client that lost the response lists the tokens, and creates a new one with a
 * new key.
 */

export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';
export const IDEMPOTENT_REPLAYED_HEADER = 'Idempotent-Replayed';
/** Largest response body (UTF-8 bytes) kept for replay; the migration's check constraint says the same. */
export const MAX_REPLAY_BODY_BYTES = 64 * 1024;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;
/** Expired rows deleted per cleanup pass. */
export const CLEANUP_BATCH = 500;
const CLEANUP_INTERVAL_MS = 60_000;
/** Statuses that release the claim instead of being stored (plus every 5xx). */
const RELEASED_STATUSES = new Set([401, 403, 408, 409, 429]);
/** Response headers kept with a stored response (the rest are per response: rate limits, dates...). */
const STORED_HEADERS = ['content-type', 'location', 'content-language'] as const;

/** The key as sent: a bare token of printable ASCII, or the draft's sf-string ("..." with \" and \\ escapes). */
export function parseIdempotencyKey(raw: string): string {
  let key = raw;
  if (raw.startsWith('"')) {
    const m = /^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$/.exec(raw);
    if (!m) throw new IdempotencyKeyInvalidError('must be a quoted string without control characters');
    key = m[1]!.replace(/\\(["\\])/g, '$1');
  }
  if (key.length < 1 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH)
    throw new IdempotencyKeyInvalidError(`must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`);
  if (!/^[\x20-\x7e]+$/.test(key))
    throw new IdempotencyKeyInvalidError('must be printable ASCII characters only');
  return key;
}

/**
 * The caller as an idempotency scope: the subject and a digest of everything else the token grants (roles and
 * sites, order-free), so that a stored response is replayed only to the very same principal. A viewer token
 * that reuses an admin's `sub` is another principal (issue 12, finding 4).
 */
export function principalKey(p: Principal): string {
  const grants = canonicalJson({
    roles: [...new Set(p.roles)].sort(),
    sites: p.sites === undefined ? null : [...new Set(p.sites)].sort(),
  });
  return `${p.subject}#${createHash('sha256').update(grants).digest('base64url')}`;
}

/** SHA-256 of the request payload in canonical JSON (key order and whitespace do not matter). */
export function requestFingerprint(body: unknown): Buffer {
  return createHash('sha256')
    .update(canonicalJson(body ?? null))
    .digest();
}

export interface IdempotencyScope {
  tenant: string;
  principal: string;
  method: string;
  path: string;
  key: string;
}

export interface StoredResponse {
  status: number;
  headers: Record<string, string>;
  /** Null: withheld (see `withheld`). */
  body: string | null;
  withheld: 'secret' | 'too_large' | null;
}

export type ClaimResult =
  | { kind: 'claimed'; claimId: string }
  | { kind: 'in_progress' }
  | { kind: 'mismatch' }
  | { kind: 'done'; response: StoredResponse };

export interface IdempotencyOptions {
  ttlSeconds: number;
  inProgressTimeoutSeconds: number;
}

/** The idempotency_keys table (migration 0006). */
export class IdempotencyStore {
  private lastCleanup = 0;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly opts: IdempotencyOptions,
    private readonly log: Logger,
    private readonly now: () => Date,
  ) {}

  /**
   * Claims `scope` for a request with this fingerprint, or says what holds it. The claim is one statement:
   * an insert, or the takeover of an expired row or of an abandoned claim of the same payload.
   */
  async claim(scope: IdempotencyScope, fingerprint: Buffer): Promise<ClaimResult> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const now = this.now();
      const claimId = randomUUID();
      const claimed = await this.db
        .insertInto('idempotency_keys')
        .values({
          tenant_id: scope.tenant,
          principal: scope.principal,
          method: scope.method,
          path: scope.path,
          key: scope.key,
          request_sha256: fingerprint,
          state: 'in_progress',
          claim_id: claimId,
          created_at: now,
          locked_until: new Date(now.getTime() + this.opts.inProgressTimeoutSeconds * 1000),
          expires_at: new Date(now.getTime() + this.opts.ttlSeconds * 1000),
        })
        .onConflict((oc) =>
          oc
            .columns(['tenant_id', 'principal', 'method', 'path', 'key'])
            .doUpdateSet((eb) => ({
              request_sha256: eb.ref('excluded.request_sha256'),
              state: eb.ref('excluded.state'),
              claim_id: eb.ref('excluded.claim_id'),
              created_at: eb.ref('excluded.created_at'),
              locked_until: eb.ref('excluded.locked_until'),
              expires_at: eb.ref('excluded.expires_at'),
              response_status: null,
              response_headers: null,
              response_body: null,
              withheld: null,
            }))
            .where((eb) =>
              eb.or([
                eb('idempotency_keys.expires_at', '<=', now),
                eb.and([
                  eb('idempotency_keys.state', '=', 'in_progress'),
                  eb('idempotency_keys.locked_until', '<=', now),
                  eb('idempotency_keys.request_sha256', '=', fingerprint),
                ]),
              ]),
            ),
        )
        .returning('claim_id')
        .executeTakeFirst();
      if (claimed?.claim_id === claimId) {
        this.maybeCleanup(now);
        return { kind: 'claimed', claimId };
      }
      const row = await this.db
        .selectFrom('idempotency_keys')
        .select([
          'request_sha256',
          'state',
          'response_status',
          'response_headers',
          'response_body',
          'withheld',
        ])
        .where('tenant_id', '=', scope.tenant)
        .where('principal', '=', scope.principal)
        .where('method', '=', scope.method)
        .where('path', '=', scope.path)
        .where('key', '=', scope.key)
        .executeTakeFirst();
      if (row === undefined) continue; // released in between: claim again
      if (!row.request_sha256.equals(fingerprint)) return { kind: 'mismatch' };
      if (row.state === 'in_progress' || row.response_status === null) return { kind: 'in_progress' };
      return {
        kind: 'done',
        response: {
          status: row.response_status,
          headers: row.response_headers ?? {},
          body: row.response_body,
          withheld: row.withheld,
        },
      };
    }
    return { kind: 'in_progress' };
  }

  /** Stores the response of the claim `claimId` (a claim taken over by another request is left alone). */
  async complete(scope: IdempotencyScope, claimId: string, response: StoredResponse): Promise<void> {
    await this.db
      .updateTable('idempotency_keys')
      .set({
        state: 'done',
        response_status: response.status,
        response_headers: JSON.stringify(response.headers),
        response_body: response.body,
        withheld: response.withheld,
      })
      .where('tenant_id', '=', scope.tenant)
      .where('principal', '=', scope.principal)
      .where('method', '=', scope.method)
      .where('path', '=', scope.path)
      .where('key', '=', scope.key)
      .where('claim_id', '=', claimId)
      .execute();
  }

  /** Deletes the claim `claimId` so that a retry runs again. */
  async release(scope: IdempotencyScope, claimId: string): Promise<void> {
    await this.db
      .deleteFrom('idempotency_keys')
      .where('tenant_id', '=', scope.tenant)
      .where('principal', '=', scope.principal)
      .where('method', '=', scope.method)
      .where('path', '=', scope.path)
      .where('key', '=', scope.key)
      .where('claim_id', '=', claimId)
      .where('state', '=', 'in_progress')
      .execute();
  }

  /** Deletes up to `limit` expired rows, oldest first; returns how many. */
  async deleteExpired(now = this.now(), limit = CLEANUP_BATCH): Promise<number> {
    const result = await sql`
      delete from idempotency_keys where ctid = any(array(
        select ctid from idempotency_keys where expires_at <= ${now} order by expires_at limit ${limit}
      ))`.execute(this.db);
    return Number(result.numAffectedRows ?? 0n);
  }

  private maybeCleanup(now: Date): void {
    if (now.getTime() - this.lastCleanup < CLEANUP_INTERVAL_MS) return;
    this.lastCleanup = now.getTime();
    this.deleteExpired(now).then(
      (n) => {
        if (n > 0) this.log.debug({ deleted: n }, 'expired idempotency keys deleted');
      },
      (err: unknown) => this.log.warn({ err }, 'idempotency key cleanup failed'),
    );
  }
}

export interface IdempotentRoute {
  /** Path parameters are validated first, so that the scope stays bounded; invalid ones skip idempotency. */
  params?: { safeParse(input: unknown): { success: boolean } } | undefined;
  /** Why a 2xx body must not be stored (it holds a one-time secret); absent: 2xx bodies are replayed. */
  withholdSuccessBody?: string | undefined;
}

/** Route middleware for a POST or PATCH route: see the comment at the top of this file. */
export function idempotency(store: IdempotencyStore, route: IdempotentRoute, log: Logger): RequestHandler {
  return async (req, res, next) => {
    const raw = req.get(IDEMPOTENCY_KEY_HEADER);
    if (raw === undefined) {
      next();
      return;
    }
    try {
      const key = parseIdempotencyKey(raw);
      if (route.params && !route.params.safeParse(req.params).success) {
        next(); // the handler answers 400; nothing to remember
        return;
      }
      const principal = principalOf(res);
      const scope: IdempotencyScope = {
        tenant: principal.tenant,
        principal: principalKey(principal),
        method: req.method,
        path: `${req.baseUrl}${req.path}`,
        key,
      };
      const claim = await store.claim(scope, requestFingerprint(req.body));
      switch (claim.kind) {
        case 'mismatch':
          throw new IdempotencyKeyReusedError();
        case 'in_progress':
          throw new IdempotencyKeyInUseError();
        case 'done':
          replay(res, claim.response);
          return;
        case 'claimed':
          capture(res, store, scope, claim.claimId, route, log);
          next();
      }
    } catch (err) {
      next(err);
    }
  };
}

function replay(res: Response, stored: StoredResponse): void {
  if (stored.body === null)
    throw new IdempotentResultUnavailableError(
      stored.withheld === 'secret'
        ? `The request with this Idempotency-Key already completed (status ${stored.status}). Its response ` +
            'held a one-time secret, which is never stored, so it cannot be shown again: list the resources to ' +
            'find what it created, and send a new request with a new Idempotency-Key if you need another.'
        : `The request with this Idempotency-Key already completed (status ${stored.status}), but its ` +
            'response was too large to keep for replay.',
    );
  res.status(stored.status).set(stored.headers).set(IDEMPOTENT_REPLAYED_HEADER, 'true').send(stored.body);
}

/**
 * Wraps `res.json` (how every handler and the problem+json error handler answer) so that the response is
 * stored, or the claim released, before it is sent. A response that leaves another way releases the claim.
 */
function capture(
  res: Response,
  store: IdempotencyStore,
  scope: IdempotencyScope,
  claimId: string,
  route: IdempotentRoute,
  log: Logger,
): void {
  const send = res.json.bind(res);
  let settled = false;
  res.json = (body: unknown) => {
    if (settled) return send(body);
    settled = true;
    void settle(res.statusCode, body).then(() => send(body));
    return res;
  };
  res.once('finish', () => {
    if (settled) return;
    settled = true;
    store
      .release(scope, claimId)
      .catch((err: unknown) => log.warn({ err }, 'idempotency key release failed'));
  });

  async function settle(status: number, body: unknown): Promise<void> {
    try {
      if (status >= 500 || RELEASED_STATUSES.has(status)) {
        await store.release(scope, claimId);
        return;
      }
      const headers: Record<string, string> = {};
      for (const name of STORED_HEADERS) {
        const value = res.get(name);
        if (value !== undefined) headers[name] = value;
      }
      headers['content-type'] ??= 'application/json; charset=utf-8';
      const text = JSON.stringify(body) ?? '';
      let stored: StoredResponse = { status, headers, body: text, withheld: null };
      if (status < 300 && route.withholdSuccessBody !== undefined)
        stored = { status, headers, body: null, withheld: 'secret' };
      else if (Buffer.byteLength(text) > MAX_REPLAY_BODY_BYTES)
        stored = { status, headers, body: null, withheld: 'too_large' };
      await store.complete(scope, claimId, stored);
    } catch (err) {
      // The response goes out anyway; the claim stays until inProgressTimeoutSeconds, then a repeat may retake it.
      log.error({ err, key: scope.key, path: scope.path }, 'idempotency key could not be stored');
    }
  }
}
