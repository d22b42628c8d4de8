import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { decodeJwt } from 'jose';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { idParam, issuesOf } from '../api/events-query.js';
import type { Authorizer } from '../auth/authorize.js';
import { AuthenticationError } from '../auth/errors.js';
import type { TokenVerifier } from '../auth/jwt.js';
import type { Principal } from '../auth/principal.js';
import { CLOSE_TOKEN_EXPIRED, type HubClient, type RealtimeHub, type StreamFilter } from './hub.js';
import { armDeadline } from '../lib/deadline.js';

/*
 * GET /v1/stream (websocket upgrade): committed events of the caller's tenant as they arrive, one JSON text
 * message each: {"type":"event","event":<the GET /v1/events/{id} view>}; first {"type":"ready",...}.
 *
 * Authentication: `Authorization: Bearer <jwt>` or, for browsers (which cannot set headers on a websocket),
 * the subprotocol `bearer.<jwt>` next to `vigil.v1` (the server answers `vigil.v1`; tokens never go into URLs,
 * which end up in logs). Authorization: `events:read` on the tenant, or on `?site=` (required for site-scoped
 * users), exactly like GET /v1/events. Filters: `site`, `device`, `camera`, `label`. Refusals happen before the
 * upgrade, as problem+json responses. The connection is closed with 4001 when the token expires (reconnect with
 * a fresh one), and with 4008 when the client does not read fast enough (its send buffer passed the limit).
 */

export const STREAM_PATH = '/v1/stream';
export const STREAM_PROTOCOL = 'vigil.v1';
const BEARER_PROTOCOL = /^bearer\.([A-Za-z0-9\-_.]+)$/;

const filterSchema = z.strictObject({
  site: idParam.optional(),
  device: idParam.optional(),
  camera: idParam.optional(),
  label: z.string().min(1).max(128).optional(),
});

export interface EventStreamOptions {
  /** A connection whose unsent bytes pass this is closed (4008). */
  maxBufferedBytes: number;
  /** Open connections per tenant in this process; more are refused (429). */
  maxConnectionsPerTenant: number;
  /** Ping period; a connection that did not answer the previous ping is terminated. */
  pingIntervalMs: number;
}

export interface EventStreamDeps {
  server: Server;
  hub: RealtimeHub;
  verifier: TokenVerifier;
  authorizer: Authorizer;
  log: Logger;
  metrics: Registry;
  now?: () => Date;
  options: EventStreamOptions;
  /**
   * A second way in for the web console's events page: its session cookie with a console Origin
   * (console/index.ts streamPrincipal). Asked only when the request has no bearer token.
   */
  sessionPrincipal?:
    ((req: IncomingMessage) => Promise<{ principal: Principal; expiresAt: number } | undefined>) | undefined;
}

class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly slug: string,
    readonly title: string,
    readonly detail: string,
  ) {
    super(detail);
  }
}

/** Serves the event stream on `server`'s upgrade requests; other upgrade paths get a 404. */
export function attachEventStream(deps: EventStreamDeps): { close(): void } {
  const now = deps.now ?? (() => new Date());
  const log = deps.log.child({ component: 'realtime' });
  const refused = new Counter({
    name: 'vigil_cloud_realtime_refused_total',
    help: 'Event-stream upgrades refused, by reason (not_found, unauthenticated, forbidden, invalid, limit)',
    labelNames: ['reason'],
    registers: [deps.metrics],
  });
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 4096, // clients send nothing but control frames
    handleProtocols: (protocols) => (protocols.has(STREAM_PROTOCOL) ? STREAM_PROTOCOL : false),
  });

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    void accept(req)
      .then((ok) => {
        wss.handleUpgrade(req, socket, head, (ws) => open(ws, ok.principal, ok.filter, ok.expiresAt));
      })
      .catch((err: unknown) => {
        const r =
          err instanceof Refusal
            ? err
            : new Refusal(500, 'internal', 'Internal server error', 'An unexpected error occurred.');
        if (!(err instanceof Refusal)) log.error({ err }, 'realtime: upgrade failed');
        refused.inc({ reason: r.slug.replaceAll('-', '_') });
        const body = JSON.stringify({
          type: `urn:vigil:problem:${r.slug}`,
          title: r.title,
          status: r.status,
          detail: r.detail,
        });
        socket.end(
          `HTTP/1.1 ${r.status} ${r.title}\r\nContent-Type: application/problem+json\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n` +
            (r.status === 401 ? `WWW-Authenticate: Bearer realm="vigil"\r\n` : '') +
            `\r\n${body}`,
        );
      });
  };

  async function accept(
    req: IncomingMessage,
  ): Promise<{ principal: Principal; filter: StreamFilter; expiresAt: number | undefined }> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== STREAM_PATH) throw new Refusal(404, 'not-found', 'Not found', 'No such resource.');
    const token = bearerOf(req);
    const session = token === undefined ? await deps.sessionPrincipal?.(req) : undefined;
    if (token === undefined && session === undefined)
      throw new Refusal(401, 'unauthenticated', 'Unauthorized', 'A valid bearer token is required.');
    let principal: Principal;
    if (session !== undefined) principal = session.principal;
    else
      try {
        principal = await deps.verifier.verify(token!);
      } catch (err) {
        if (err instanceof AuthenticationError)
          throw new Refusal(401, 'unauthenticated', 'Unauthorized', 'A valid bearer token is required.');
        throw err;
      }
    const parsed = filterSchema.safeParse(Object.fromEntries(url.searchParams));
    if (!parsed.success)
      throw new Refusal(
        400,
        'invalid-request',
        'Bad Request',
        issuesOf(parsed.error)
          .map((i) => `${i.path}: ${i.message}`)
          .join('; '),
      );
    const filter = parsed.data;
    const decision = await deps.authorizer.authorize(principal, 'events:read', {
      type: 'events',
      tenant: principal.tenant,
      site: filter.site,
    });
    if (!decision.allowed) {
      log.info({ sub: principal.subject, reason: decision.reason }, 'realtime: stream denied');
      throw new Refusal(403, 'forbidden', 'Forbidden', 'You are not allowed to perform events:read.');
    }
    if (deps.hub.count(principal.tenant) >= deps.options.maxConnectionsPerTenant)
      throw new Refusal(
        429,
        'rate-limited',
        'Too Many Requests',
        `This tenant has ${deps.options.maxConnectionsPerTenant} open streams here; close one first.`,
      );
    if (session !== undefined) return { principal, filter, expiresAt: session.expiresAt };
    const exp = decodeJwt(token!).exp;
    return { principal, filter, expiresAt: typeof exp === 'number' ? exp * 1000 : undefined };
  }

  function open(
    ws: WebSocket,
    principal: Principal,
    filter: StreamFilter,
    expiresAt: number | undefined,
  ): void {
    let alive = true;
    const client: HubClient = {
      tenant: principal.tenant,
      filter,
      send: (event) => {
        if (ws.bufferedAmount > deps.options.maxBufferedBytes) return false;
        ws.send(JSON.stringify({ type: 'event', event }));
        return true;
      },
      close: (code, reason) => ws.close(code, reason),
    };
    deps.hub.add(client);
    const ping = setInterval(() => {
      if (!alive) {
        ws.terminate();
        return;
      }
      alive = false;
      ws.ping();
    }, deps.options.pingIntervalMs);
    // Not a bare setTimeout: a token that expires 24.8 days or more ahead would overflow it and close at once.
    const expiry =
      expiresAt === undefined
        ? undefined
        : armDeadline(
            expiresAt,
            () => deps.hub.drop(client, CLOSE_TOKEN_EXPIRED, 'token expired', 'token_expired'),
            () => now().getTime(),
          );
    ws.on('pong', () => (alive = true));
    ws.on('error', (err) => log.debug({ err }, 'realtime: connection error'));
    ws.on('close', () => {
      clearInterval(ping);
      expiry?.clear();
      deps.hub.remove(client);
    });
    ws.send(JSON.stringify({ type: 'ready', tenant: principal.tenant, filter }));
    log.debug({ sub: principal.subject, filter }, 'realtime: stream opened');
  }

  deps.server.on('upgrade', onUpgrade);
  return {
    close: () => {
      deps.server.off('upgrade', onUpgrade);
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    },
  };
}

function bearerOf(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (header !== undefined) return /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header)?.[1];
  for (const p of (req.headers['sec-websocket-protocol'] ?? '').split(',')) {
    const m = BEARER_PROTOCOL.exec(p.trim());
    if (m?.[1]) return m[1];
  }
  return undefined;
}
