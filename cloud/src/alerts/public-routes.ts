import { createHmac, timingSafeEqual } from 'node:crypto';
import express, { type Router } from 'express';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { MediaRepository } from '../media/repository.js';
import type { MediaStore } from '../media/store.js';
import { xmlEscape } from './cap.js';
import { sha256hex, type AlertStore } from './store.js';
import { INVALID_DOCUMENT } from './worker.js';

/*
 * The two alert routes an agency calls without a Vigil user token, mounted at /public/alerts:
 * - GET /media/:tenant/:id?exp=&sig=: a snapshot through a signed, expiring URL (the CAP `resource`). HMAC-SHA256
 *   over tenant, id and expiry with alerts.urlKeyFile's key; every issue and every read is on the audit log
 *   (a read that cannot be audited is not served).
 * - GET /feeds/:target: the target's messages (CAP XML, or EIDO JSON for an `eido` target) as an Atom feed (pull
 *   instead of push; a `pull` target has nothing else), with `Authorization: Bearer <feed token>` (shown once
 *   when the target was created; stored hashed). A message is in the feed once the worker has built and
 *   checked it (an invalid one never is).
 */

export class SnapshotUrls {
  constructor(
    private readonly key: Buffer,
    private readonly baseUrl: string,
    private readonly ttlSeconds: number,
  ) {}

  private sig(tenant: string, id: string, exp: number): string {
    return createHmac('sha256', this.key).update(`${tenant}\n${id}\n${exp}`).digest('base64url');
  }

  /** A URL valid until now + ttl. */
  issue(tenant: string, mediaId: string, now: Date): { url: string; expires: Date } {
    const exp = Math.floor(now.getTime() / 1000) + this.ttlSeconds;
    const base = this.baseUrl.replace(/\/+$/, '');
    const url = `${base}/public/alerts/media/${encodeURIComponent(tenant)}/${encodeURIComponent(mediaId)}?exp=${exp}&sig=${this.sig(tenant, mediaId, exp)}`;
    return { url, expires: new Date(exp * 1000) };
  }

  /** 'ok', 'expired' or 'bad' (wrong or missing signature). */
  check(tenant: string, mediaId: string, exp: unknown, sig: unknown, now: Date): 'ok' | 'expired' | 'bad' {
    if (typeof exp !== 'string' || !/^\d{1,12}$/.test(exp) || typeof sig !== 'string' || sig.length > 100)
      return 'bad';
    const want = Buffer.from(this.sig(tenant, mediaId, Number(exp)));
    const got = Buffer.from(sig);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return 'bad';
    return Number(exp) * 1000 < now.getTime() ? 'expired' : 'ok';
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TOKEN = /^[A-Za-z0-9_-]{1,63}$/;

export function publicAlertRoutes(deps: {
  /** Undefined when alerts.publicBaseUrl is unset: no snapshot links are issued, the media route is not served. */
  urls: SnapshotUrls | undefined;
  alerts: AlertStore;
  media: { repository: MediaRepository; store: MediaStore | undefined };
  audit: AuditLog;
  log: Logger;
  now: () => Date;
}): Router {
  const router = express.Router();
  const problem = (res: express.Response, status: number, title: string): void => {
    res.status(status).type('application/problem+json').json({ type: 'about:blank', title, status });
  };
  router.get('/media/:tenant/:id', async (req, res) => {
    const { tenant, id } = req.params;
    if (!deps.urls || !TOKEN.test(tenant) || !UUID.test(id)) return problem(res, 404, 'Not Found');
    const verdict = deps.urls.check(tenant, id, req.query.exp, req.query.sig, deps.now());
    if (verdict !== 'ok')
      return problem(res, 403, verdict === 'expired' ? 'This link has expired' : 'Invalid signature');
    const row = await deps.media.repository.get(tenant, id);
    if (!row || row.deleted_at !== null || row.storage_key === null || !deps.media.store)
      return problem(res, 404, 'Not Found');
    const file = await deps.media.store.open(row.storage_key);
    if (!file) return problem(res, 404, 'Not Found');
    try {
      await deps.audit.append({
        tenantId: tenant,
        actor: 'signed-url',
        actorKind: 'service',
        action: 'media.read',
        resource: `media:${tenant}/${id}`,
        outcome: 'allowed',
        detail: {
          via: 'alert signed url',
          exp: typeof req.query.exp === 'string' ? req.query.exp : null,
          sha256: row.sha256,
          ip: req.ip ?? null,
        },
      });
    } catch {
      file.stream.destroy();
      return problem(res, 503, 'The access could not be recorded on the audit log; not served.');
    }
    res.set({
      'Content-Type': row.content_type,
      'Content-Length': String(file.size),
      'Cache-Control': 'private, no-store',
      'Repr-Digest': `sha-256=:${Buffer.from(row.sha256, 'hex').toString('base64')}:`,
      'X-Content-Type-Options': 'nosniff',
    });
    file.stream.once('error', (err) => res.destroy(err));
    file.stream.pipe(res);
  });

  router.get('/feeds/:target', async (req, res) => {
    const target = req.params.target;
    const auth = req.get('authorization') ?? '';
    const m = /^Bearer ([A-Za-z0-9_-]{20,100})$/.exec(auth);
    if (!UUID.test(target) || !m) return problem(res, 401, 'Unauthorized');
    const row = await deps.alerts.db
      .selectFrom('alert_targets')
      .selectAll()
      .where('id', '=', target)
      .executeTakeFirst();
    const want = Buffer.from(row?.feed_token_sha256 ?? '0'.repeat(64), 'hex');
    const got = Buffer.from(sha256hex(m[1]!), 'hex');
    if (!row || !timingSafeEqual(want, got)) return problem(res, 401, 'Unauthorized');
    const messages = await deps.alerts.listMessages(row.tenant_id, { targetId: row.id }, 100);
    const updated = messages[0]?.sent ?? row.created_at;
    const entries = messages
      // Built and valid: a document that failed its schema is kept (body) for the dead letter, not published.
      .filter(
        (msg) =>
          msg.body !== null &&
          !Object.values(INVALID_DOCUMENT).some((p) => msg.state === 'dead' && msg.error?.startsWith(p)),
      )
      .map(
        (msg) =>
          `<entry><id>urn:vigil:alert:${xmlEscape(msg.identifier)}</id><title>${xmlEscape(
            `${msg.msg_type} ${msg.identifier}`,
          )}</title><updated>${msg.sent.toISOString()}</updated><content type="${
            row.format === 'eido' ? 'application/json' : 'application/cap+xml'
          }">${xmlEscape(msg.body!.replace(/^<\?xml[^>]*\?>\s*/, ''))}</content></entry>`,
      )
      .join('');
    res
      .type('application/atom+xml')
      .set('Cache-Control', 'private, no-store')
      .send(
        `<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom"><id>urn:vigil:alert-target:${row.id}</id>` +
          `<title>${xmlEscape(`Vigil alerts for ${row.name}`)}</title><updated>${updated.toISOString()}</updated>${entries}</feed>`,
      );
  });
  return router;
}
