import {
  Agent as HttpAgent,
  request as httpRequest,
  type ClientRequest,
  type IncomingMessage,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import {
  hostOf,
  pinnedLookup,
  resolvePublicAddress,
  UnsafeUrlError,
  validateWebhookUrl,
  type ResolvedAddress,
  type Resolver,
  type UrlPolicy,
} from './ssrf.js';

/** Response bytes read at most (then the connection is dropped); the body is never used, only the status. */
export const MAX_RESPONSE_BYTES = 64 * 1024;

export interface PostOptions extends UrlPolicy {
  /** Whole request: DNS, connect, TLS, sending, the response head and the capped body. */
  timeoutMs: number;
  resolve?: Resolver | undefined;
  /** Keep-alive connections (see ConnectionPool); without it every request opens and closes its own. */
  pool?: ConnectionPool | undefined;
}

/** What a delivery attempt came to: an HTTP status, or an error before one (kind says which). */
export type PostResult =
  | { kind: 'response'; status: number; durationMs: number }
  | { kind: 'timeout' | 'network' | 'refused'; error: string; durationMs: number };

/** An idle keep-alive connection is closed after this: under the 5 s of Node's and many servers' keep-alive. */
export const POOL_IDLE_SOCKET_MS = 4000;
/** Endpoints (origin and address) whose agents are kept; idle ones beyond it are closed, oldest use first. */
export const POOL_MAX_ENDPOINTS = 1000;

/**
 * Keep-alive connections per endpoint: one http(s).Agent per (origin, checked address), at most
 * `maxSocketsPerEndpoint` connections each. A connection only ever goes to the address its agent is pinned to,
 * and a request takes the agent of the address checked for it (ssrf.ts) at this delivery, so reuse never sends
 * a request to an address that this request's check did not allow: a DNS change gives a new agent. Opening a
 * connection per request (and its TLS handshake) cost more than the request itself at high rates.
 */
export class ConnectionPool {
  private readonly agents = new Map<string, { agent: HttpAgent; busy: number }>();

  constructor(
    private readonly opts: {
      maxSocketsPerEndpoint: number;
      maxEndpoints?: number;
      idleSocketMs?: number;
    },
  ) {}

  /** The agent for this request; call `done` when the request is over. */
  lease(url: URL, pinned: ResolvedAddress): { agent: HttpAgent; done: () => void } {
    const key = `${url.protocol}//${url.host} ${pinned.address}`;
    let entry = this.agents.get(key);
    if (entry)
      this.agents.delete(key); // re-inserted below: Map order is least recently used first
    else {
      const options = {
        keepAlive: true,
        maxSockets: this.opts.maxSocketsPerEndpoint,
        maxFreeSockets: this.opts.maxSocketsPerEndpoint,
        timeout: this.opts.idleSocketMs ?? POOL_IDLE_SOCKET_MS,
        scheduling: 'lifo' as const, // the most recently used connection: the least likely to be closed by the peer
        lookup: pinnedLookup(pinned),
      };
      entry = {
        agent: url.protocol === 'https:' ? new HttpsAgent(options) : new HttpAgent(options),
        busy: 0,
      };
    }
    this.agents.set(key, entry);
    this.trim();
    const e = entry;
    e.busy++;
    let released = false;
    return {
      agent: e.agent,
      done: () => {
        if (released) return;
        released = true;
        e.busy--;
      },
    };
  }

  /** Endpoints with an agent (a bound: POOL_MAX_ENDPOINTS idle ones at most). */
  get size(): number {
    return this.agents.size;
  }

  /** Closes every connection. */
  destroy(): void {
    for (const { agent } of this.agents.values()) agent.destroy();
    this.agents.clear();
  }

  private trim(): void {
    const max = this.opts.maxEndpoints ?? POOL_MAX_ENDPOINTS;
    if (this.agents.size <= max) return;
    for (const [key, e] of this.agents) {
      if (this.agents.size <= max) return;
      if (e.busy > 0) continue; // in use: it goes once idle and old
      e.agent.destroy();
      this.agents.delete(key);
    }
  }
}

/** Errors of a reused keep-alive connection that the peer had closed before our request reached it. */
const STALE_CONNECTION = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/**
 * POSTs `body` to `url`: checked and pinned address (ssrf.ts), no redirects (a 3xx is just a status), one
 * deadline for everything. With `pool`, keep-alive connections to the checked address (ConnectionPool); a
 * request that fails on a reused connection before any answer (the peer closed it meanwhile) is sent once more
 * on a fresh one. Never throws.
 */
export async function postJson(
  url: URL,
  body: string,
  headers: Record<string, string>,
  opts: PostOptions,
): Promise<PostResult> {
  const started = performance.now();
  const elapsed = (): number => Math.round(performance.now() - started);
  const deadline = AbortSignal.timeout(opts.timeoutMs);
  try {
    // Again at every delivery: the URL was checked at creation, under the policy of that time.
    validateWebhookUrl(url.href, opts);
    const pinned = await withDeadline(resolvePublicAddress(hostOf(url), opts, opts.resolve), deadline);
    const lease = opts.pool?.lease(url, pinned);
    try {
      let status: number;
      try {
        status = await sendOnce(url, body, headers, pinned, deadline, lease?.agent);
      } catch (err) {
        if (!(err instanceof StaleConnectionError) || deadline.aborted) throw err;
        status = await sendOnce(url, body, headers, pinned, deadline, lease?.agent);
      }
      return { kind: 'response', status, durationMs: elapsed() };
    } finally {
      lease?.done();
    }
  } catch (err) {
    if (err instanceof UnsafeUrlError) return { kind: 'refused', error: err.message, durationMs: elapsed() };
    if (deadline.aborted)
      return { kind: 'timeout', error: `no answer within ${opts.timeoutMs} ms`, durationMs: elapsed() };
    const e = (err instanceof StaleConnectionError ? err.cause : err) as NodeJS.ErrnoException;
    return { kind: 'network', error: e.code ?? e.message, durationMs: elapsed() };
  }
}

/**
 * A request failed on a reused connection before any answer: the peer closed the idle connection as the request
 * left, so it almost surely never read it (and delivery is at least once anyway); sent again, same signature.
 */
class StaleConnectionError extends Error {
  override readonly name = 'StaleConnectionError';
}

function sendOnce(
  url: URL,
  body: string,
  headers: Record<string, string>,
  pinned: ResolvedAddress,
  deadline: AbortSignal,
  agent: HttpAgent | undefined,
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req: ClientRequest = send(url, {
      method: 'POST',
      headers: {
        ...headers,
        'content-length': String(Buffer.byteLength(body)),
        'user-agent': 'vigil-webhooks/1',
      },
      lookup: pinnedLookup(pinned),
      agent: agent ?? false,
      signal: deadline,
    });
    let answered = false;
    req.once('error', (err: NodeJS.ErrnoException) => {
      if (!answered && req.reusedSocket && STALE_CONNECTION.has(err.code ?? ''))
        reject(new StaleConnectionError(err.message, { cause: err }));
      else reject(err);
    });
    req.once('response', (res: IncomingMessage) => {
      answered = true;
      let read = 0;
      res.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read > MAX_RESPONSE_BYTES) res.destroy(); // enough: the status is what counts
      });
      res.once('end', () => resolve(res.statusCode ?? 0));
      res.once('close', () => resolve(res.statusCode ?? 0));
      res.once('error', () => resolve(res.statusCode ?? 0));
    });
    req.end(body);
  });
}

function withDeadline<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: Error) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
