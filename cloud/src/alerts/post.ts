import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { PostResult } from '../integrations/http-client.js';
import {
  hostOf,
  pinnedLookup,
  resolvePublicAddress,
  UnsafeUrlError,
  validateWebhookUrl,
  type Resolver,
  type UrlPolicy,
} from '../integrations/ssrf.js';
import { MAX_ANSWER_BYTES } from './xml.js';

export interface AgencyPostOptions extends UrlPolicy {
  timeoutMs: number;
  resolve?: Resolver | undefined;
  /** mTLS: the target's client certificate and key, and the CA its server certificate must chain to. */
  tls?: { cert: string; key: string; ca?: string | undefined } | undefined;
}

/** A PostResult, with the answer body (at most MAX_ANSWER_BYTES + 1 bytes read; truncated says it went past). */
export type AgencyResult = PostResult & { body?: Buffer; truncated?: boolean };

/**
 * POSTs a CAP message to an agency: the SSRF guard and pinned DNS of webhooks (integrations/ssrf.ts), no
 * redirects, no connection reuse, one deadline; over mTLS when the target has a client certificate (with its
 * own CA when given: the agency's server certificate is checked against it, not the system store). Reads at
 * most MAX_ANSWER_BYTES + 1 bytes of the answer (more is cut off: `truncated`). Never throws.
 */
export async function postCap(
  url: URL,
  body: string,
  headers: Record<string, string>,
  opts: AgencyPostOptions,
): Promise<AgencyResult> {
  const started = performance.now();
  const elapsed = (): number => Math.round(performance.now() - started);
  const deadline = AbortSignal.timeout(opts.timeoutMs);
  try {
    validateWebhookUrl(url.href, opts);
    const pinned = await resolvePublicAddress(hostOf(url), opts, opts.resolve);
    const out = await new Promise<{ status: number; body: Buffer; truncated: boolean }>((resolve, reject) => {
      const https = url.protocol === 'https:';
      const req = (https ? httpsRequest : httpRequest)(url, {
        method: 'POST',
        headers: {
          ...headers,
          'content-length': String(Buffer.byteLength(body)),
          'user-agent': 'vigil-alerts/1',
          accept: 'application/cap+xml, application/xml;q=0.9, */*;q=0.1',
        },
        lookup: pinnedLookup(pinned),
        agent: false,
        signal: deadline,
        ...(https && opts.tls
          ? { cert: opts.tls.cert, key: opts.tls.key, ...(opts.tls.ca ? { ca: opts.tls.ca } : {}) }
          : {}),
      });
      req.once('error', reject);
      req.once('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let read = 0;
        let truncated = false;
        const done = (): void =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), truncated });
        res.on('data', (chunk: Buffer) => {
          if (truncated) return;
          read += chunk.length;
          if (read > MAX_ANSWER_BYTES) {
            truncated = true;
            res.destroy(); // enough: an answer this big is refused anyway
            return;
          }
          chunks.push(chunk);
        });
        res.once('end', done);
        res.once('close', done);
        res.once('error', done);
      });
      req.end(body);
    });
    return {
      kind: 'response',
      status: out.status,
      durationMs: elapsed(),
      body: out.body,
      truncated: out.truncated,
    };
  } catch (err) {
    if (err instanceof UnsafeUrlError) return { kind: 'refused', error: err.message, durationMs: elapsed() };
    if (deadline.aborted)
      return { kind: 'timeout', error: `no answer within ${opts.timeoutMs} ms`, durationMs: elapsed() };
    const e = err as NodeJS.ErrnoException;
    return { kind: 'network', error: e.code ?? e.message, durationMs: elapsed() };
  }
}
