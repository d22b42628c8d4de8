import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/*
 * Webhook request signing: RFC 9421 HTTP Message Signatures, HMAC-SHA256 keyed with the webhook's secret.
 *
 *   Content-Digest: sha-256=:<base64 SHA-256 of the body>:                       (RFC 9530)
 *   Signature-Input: sig1=("@method" "@target-uri" "content-digest" "content-type");created=<unix s>;
 *                    nonce="<random>";keyid="<webhook id>";alg="hmac-sha256"
 *   Signature: sig1=:<base64 HMAC-SHA256 of the signature base>:
 *
 * Covering content-digest binds the body; @method and @target-uri bind where it was sent (a request captured
 * for one receiver is useless at another); created and nonce let the receiver refuse stale and replayed
 * requests (verifyWebhookSignature: a window, and a nonce seen once). keyid is the webhook id, so a receiver of
 * several webhooks knows which secret to use.
 */

export const SIGNATURE_LABEL = 'sig1';
export const SIGNATURE_ALG = 'hmac-sha256';
export const COVERED_COMPONENTS = ['@method', '@target-uri', 'content-digest', 'content-type'] as const;

/** RFC 9530 Content-Digest with sha-256. */
export function contentDigest(body: string | Buffer): string {
  return `sha-256=:${createHash('sha256').update(body).digest('base64')}:`;
}

export interface SignatureParams {
  /** Unix seconds. */
  created: number;
  nonce: string;
  keyid: string;
  alg: string;
}

/** The value of Signature-Input's member (the `@signature-params` line's value), RFC 9421 §2.3. */
export function serializeSignatureParams(p: SignatureParams): string {
  const inner = COVERED_COMPONENTS.map((c) => `"${c}"`).join(' ');
  return `(${inner});created=${p.created};nonce=${sfString(p.nonce)};keyid=${sfString(p.keyid)};alg=${sfString(p.alg)}`;
}

function sfString(s: string): string {
  if (!/^[\x20-\x7e]*$/.test(s)) throw new Error('signature parameter is not printable ASCII');
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export interface CoveredValues {
  method: string;
  targetUri: string;
  contentDigest: string;
  contentType: string;
}

/**
 * The signature base, RFC 9421 §2.5: one line per covered component, `"<name>": <value>`, in the order of
 * Signature-Input, then `"@signature-params": <params>`; lines joined by LF, no trailing LF.
 */
export function signatureBase(values: CoveredValues, serializedParams: string): string {
  const byName: Record<(typeof COVERED_COMPONENTS)[number], string> = {
    '@method': values.method.toUpperCase(),
    '@target-uri': values.targetUri,
    'content-digest': values.contentDigest.trim(),
    'content-type': values.contentType.trim(),
  };
  const lines = COVERED_COMPONENTS.map((c) => `"${c}": ${byName[c]}`);
  lines.push(`"@signature-params": ${serializedParams}`);
  return lines.join('\n');
}

function hmac(secret: string, base: string): Buffer {
  return createHmac('sha256', Buffer.from(secret, 'utf8')).update(base, 'utf8').digest();
}

export interface SignInput {
  method: string;
  url: string;
  body: string | Buffer;
  contentType: string;
  secret: string;
  keyid: string;
  /** Unix seconds; default now. */
  created?: number;
  /** Default 16 random bytes, base64url. */
  nonce?: string;
}

/** The headers that sign a request: Content-Type, Content-Digest, Signature-Input, Signature. */
export function signRequest(input: SignInput): Record<string, string> {
  const digest = contentDigest(input.body);
  const params = serializeSignatureParams({
    created: input.created ?? Math.floor(Date.now() / 1000),
    nonce: input.nonce ?? randomBytes(16).toString('base64url'),
    keyid: input.keyid,
    alg: SIGNATURE_ALG,
  });
  const base = signatureBase(
    { method: input.method, targetUri: input.url, contentDigest: digest, contentType: input.contentType },
    params,
  );
  return {
    'content-type': input.contentType,
    'content-digest': digest,
    'signature-input': `${SIGNATURE_LABEL}=${params}`,
    signature: `${SIGNATURE_LABEL}=:${hmac(input.secret, base).toString('base64')}:`,
  };
}

export interface ReceivedRequest {
  method: string;
  /** The URL the sender addressed (the receiver's public URL of this request). */
  targetUri: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
  body: string | Buffer;
}

export interface VerifyOptions {
  /** `created` older than this (or more than 60 s in the future) is refused. */
  maxAgeSeconds: number;
  /** True when the nonce was seen before (a replay); it should remember the nonce for maxAgeSeconds. */
  seenNonce: (nonce: string, keyid: string) => boolean;
  /** Unix seconds; default now. */
  now?: number;
}

export type VerifyResult =
  { ok: true; keyid: string; created: number; nonce: string } | { ok: false; reason: string };

const CLOCK_SKEW_SECONDS = 60;
const INPUT_RE =
  /^([a-z*][a-z0-9_\-.*]*)=\(((?:"[^"]*"(?: "[^"]*")*)?)\)((?:;[a-z*][a-z0-9_\-.*]*=(?:"(?:[^"\\]|\\.)*"|-?\d+))*)$/;

function header(h: ReceivedRequest['headers'], name: string): string | undefined {
  const v = h[name] ?? h[name.toLowerCase()];
  return Array.isArray(v) ? v.join(', ') : v;
}

/**
 * Checks a webhook request as a receiver would (and our tests do): the Signature-Input covers what we sign,
 * alg is hmac-sha256, `created` is within the window, the nonce is new, Content-Digest matches the body, and
 * the HMAC over the rebuilt signature base matches Signature. Only the `sig1` label is accepted.
 */
export function verifyWebhookSignature(
  req: ReceivedRequest,
  secret: string,
  opts: VerifyOptions,
): VerifyResult {
  const input = header(req.headers, 'signature-input')?.trim();
  const signature = header(req.headers, 'signature')?.trim();
  const digestHeader = header(req.headers, 'content-digest');
  const contentType = header(req.headers, 'content-type');
  if (!input || !signature || !digestHeader || contentType === undefined)
    return { ok: false, reason: 'missing signature headers' };
  const m = INPUT_RE.exec(input);
  if (!m || m[1] !== SIGNATURE_LABEL) return { ok: false, reason: 'malformed Signature-Input' };
  const covered = (m[2] ?? '').split(' ').map((c) => c.replace(/^"|"$/g, ''));
  if (covered.join(' ') !== COVERED_COMPONENTS.join(' '))
    return { ok: false, reason: 'Signature-Input does not cover the required components' };
  const params = new Map<string, string>();
  for (const p of (m[3] ?? '').split(';').slice(1)) {
    const eq = p.indexOf('=');
    const raw = p.slice(eq + 1);
    params.set(p.slice(0, eq), raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw);
  }
  const created = Number(params.get('created'));
  const nonce = params.get('nonce');
  const keyid = params.get('keyid');
  if (params.get('alg') !== SIGNATURE_ALG) return { ok: false, reason: 'unsupported alg' };
  if (!Number.isInteger(created) || !nonce || !keyid)
    return { ok: false, reason: 'created, nonce and keyid are required' };
  const now = opts.now ?? Math.floor(Date.now() / 1000);
  if (created < now - opts.maxAgeSeconds || created > now + CLOCK_SKEW_SECONDS)
    return { ok: false, reason: 'created is outside the accepted window' };
  const sig = new RegExp(`^${SIGNATURE_LABEL}=:([A-Za-z0-9+/]*={0,2}):$`).exec(signature);
  if (!sig) return { ok: false, reason: 'malformed Signature' };
  if (digestHeader.trim() !== contentDigest(req.body))
    return { ok: false, reason: 'Content-Digest mismatch' };
  const base = signatureBase(
    { method: req.method, targetUri: req.targetUri, contentDigest: digestHeader, contentType },
    input.slice(SIGNATURE_LABEL.length + 1),
  );
  const expected = hmac(secret, base);
  const given = Buffer.from(sig[1]!, 'base64');
  if (given.length !== expected.length || !timingSafeEqual(given, expected))
    return { ok: false, reason: 'signature mismatch' };
  // Last, so that only authentic requests consume a nonce (a forger cannot burn a legitimate one).
  if (opts.seenNonce(nonce, keyid)) return { ok: false, reason: 'replayed nonce' };
  return { ok: true, keyid, created, nonce };
}
