import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import {
  hostOf,
  pinnedLookup,
  resolvePublicAddress,
  UnsafeUrlError,
  validateWebhookUrl,
  type Resolver,
  type UrlPolicy,
} from './ssrf.js';

/** Response bytes read at most (then the connection is dropped); the body is never used, only the status. */
export const MAX_RESPONSE_BYTES = 64 * 1024;

export interface PostOptions extends UrlPolicy {
  /** Whole request: DNS, connect, TLS, sending, the response head and the capped body. */
  timeoutMs: number;
  resolve?: Resolver | undefined;
}

/** What a delivery attempt came to: an HTTP status, or an error before one (kind says which). */
export type PostResult =
  | { kind: 'response'; status: number; durationMs: number }
  | { kind: 'timeout' | 'network' | 'refused'; error: string; durationMs: number };

/**
 * POSTs `body` to `url`: checked and pinned address (ssrf.ts), no redirects (a 3xx is just a status), no
 * connection reuse (each request connects to the address checked for it), one deadline for everything.
 * Never throws.
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
    const status = await new Promise<number>((resolve, reject) => {
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = send(url, {
        method: 'POST',
        headers: {
          ...headers,
          'content-length': String(Buffer.byteLength(body)),
          'user-agent': 'vigil-webhooks/1',
        },
        lookup: pinnedLookup(pinned),
        agent: false,
        signal: deadline,
      });
      req.once('error', reject);
      req.once('response', (res: IncomingMessage) => {
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
    return { kind: 'response', status, durationMs: elapsed() };
  } catch (err) {
    if (err instanceof UnsafeUrlError) return { kind: 'refused', error: err.message, durationMs: elapsed() };
    if (deadline.aborted)
      return { kind: 'timeout', error: `no answer within ${opts.timeoutMs} ms`, durationMs: elapsed() };
    const e = err as NodeJS.ErrnoException;
    return { kind: 'network', error: e.code ?? e.message, durationMs: elapsed() };
  }
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
