// Pure parts of the webhook integration: the SSRF guard (resolver injected, no network), RFC 9421 signing
// and verification at a fixed key and time, the circuit breaker and the retry policy.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postJson } from '../src/integrations/http-client.js';
import { CircuitBreakers, PROBE_WAIT_MS } from '../src/integrations/breaker.js';
import {
  contentDigest,
  serializeSignatureParams,
  signatureBase,
  signRequest,
  verifyWebhookSignature,
} from '../src/integrations/signing.js';
import {
  forbiddenAddressReason,
  resolvePublicAddress,
  UnsafeUrlError,
  validateWebhookUrl,
  type Resolver,
} from '../src/integrations/ssrf.js';
import { classify, retryDelayMs } from '../src/integrations/worker.js';

const strict = { allowInsecureHttp: false, allowPrivateNetworks: false };

describe('SSRF guard', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.1.2.3', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.5.4', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['100.64.0.1', 'CGNAT'],
    ['0.0.0.0', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['fd12:3456::1', 'unique-local'],
    ['fc00::1', 'unique-local'],
    ['ff02::1', 'multicast'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:10.1.2.3', 'private'],
    ['::ffff:a9fe:a9fe', 'link-local'],
    ['64:ff9b::a9fe:a9fe', 'link-local'],
    ['2002:7f00:1::1', 'loopback'],
  ])('refuses %s (%s)', (ip, reason) => {
    expect(forbiddenAddressReason(ip)).toBe(reason);
  });

  it.each(['93.184.215.14', '8.8.8.8', '172.32.0.1', '100.128.0.1', '2606:4700::1111', '::ffff:8.8.8.8'])(
    'accepts the public address %s',
    (ip) => {
      expect(forbiddenAddressReason(ip)).toBeNull();
    },
  );

  it('validates URLs: https only, no credentials, no private literal', () => {
    expect(validateWebhookUrl('https://hooks.example.com/x?y=1', strict).hostname).toBe('hooks.example.com');
    const refused = (u: string, p = strict): string => {
      try {
        validateWebhookUrl(u, p);
        return 'accepted';
      } catch (err) {
        expect(err).toBeInstanceOf(UnsafeUrlError);
        return (err as Error).message;
      }
    };
    expect(refused('http://hooks.example.com/')).toBe('must be an https URL');
    expect(refused('http://hooks.example.com/', { ...strict, allowInsecureHttp: true })).toBe('accepted');
    expect(refused('ftp://hooks.example.com/', { ...strict, allowInsecureHttp: true })).toBe(
      'must be an http(s) URL',
    );
    expect(refused('https://user:pw@hooks.example.com/')).toBe('must not contain credentials');
    expect(refused('https://hooks.example.com/#x')).toBe('must not contain a fragment');
    expect(refused('https://127.0.0.1/')).toBe('must not point at a loopback address');
    expect(refused('https://[::ffff:127.0.0.1]/')).toBe('must not point at a loopback address');
    expect(refused('https://169.254.169.254/latest/meta-data')).toBe(
      'must not point at a link-local address',
    );
    expect(refused('https://127.0.0.1/', { ...strict, allowPrivateNetworks: true })).toBe('accepted');
    expect(refused('not a url')).toBe('must be an absolute URL');
  });

  it('checks every address a name resolves to, at delivery time', async () => {
    const dns =
      (...addresses: string[]): Resolver =>
      () =>
        Promise.resolve(addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })));
    expect(await resolvePublicAddress('hooks.example.com', strict, dns('93.184.215.14'))).toEqual({
      address: '93.184.215.14',
      family: 4,
    });
    // A rebinding name: one public answer and one private one is refused as a whole.
    await expect(
      resolvePublicAddress('evil.example.com', strict, dns('93.184.215.14', '169.254.169.254')),
    ).rejects.toThrow(/link-local address \(169\.254\.169\.254\)/);
    await expect(resolvePublicAddress('evil.example.com', strict, dns('::1'))).rejects.toThrow(/loopback/);
    await expect(resolvePublicAddress('nothing.example.com', strict, dns())).rejects.toThrow(/no address/);
    // IP literals are not resolved.
    await expect(resolvePublicAddress('10.0.0.1', strict, dns('8.8.8.8'))).rejects.toThrow(/private/);
    expect(
      await resolvePublicAddress('db.internal', { allowPrivateNetworks: true }, dns('10.0.0.7')),
    ).toMatchObject({ address: '10.0.0.7' });
  });
});

describe('RFC 9421 signing', () => {
  const secret = 'test-secret-key';
  const body = '{"type":"vigil.event.committed","event":{"event_id":"x"}}';
  const url = 'https://hooks.example.com/vigil?x=1';
  const fixed = { created: 1_700_000_000, nonce: 'bm9uY2U', keyid: 'wh-1' };
  const headers = signRequest({
    method: 'POST',
    url,
    body,
    contentType: 'application/json',
    secret,
    ...fixed,
  });

  it('builds the signature base exactly as RFC 9421 §2.5 describes', () => {
    const params = serializeSignatureParams({ ...fixed, alg: 'hmac-sha256' });
    expect(params).toBe(
      '("@method" "@target-uri" "content-digest" "content-type");created=1700000000;nonce="bm9uY2U";keyid="wh-1";alg="hmac-sha256"',
    );
    const digest = contentDigest(body);
    expect(digest).toMatch(/^sha-256=:[A-Za-z0-9+/]{43}=:$/);
    expect(
      signatureBase(
        { method: 'post', targetUri: url, contentDigest: digest, contentType: 'application/json' },
        params,
      ),
    ).toBe(
      [
        '"@method": POST',
        '"@target-uri": https://hooks.example.com/vigil?x=1',
        `"content-digest": ${digest}`,
        '"content-type": application/json',
        `"@signature-params": ${params}`,
      ].join('\n'),
    );
    expect(headers['signature-input']).toBe(`sig1=${params}`);
    expect(headers.signature).toMatch(/^sig1=:[A-Za-z0-9+/]{43}=:$/);
    // Deterministic at a fixed key, time and nonce.
    expect(
      signRequest({ method: 'POST', url, body, contentType: 'application/json', secret, ...fixed }).signature,
    ).toBe(headers.signature);
  });

  const seen = new Set<string>();
  const opts = (now = fixed.created + 10) => ({
    maxAgeSeconds: 300,
    now,
    seenNonce: (n: string) => {
      const had = seen.has(n);
      seen.add(n);
      return had;
    },
  });
  const req = (
    over: Partial<{ method: string; targetUri: string; body: string; headers: Record<string, string> }> = {},
  ) => ({
    method: 'POST',
    targetUri: url,
    body,
    headers,
    ...over,
  });

  it('verifies an untouched request once, and refuses tampering, stale, early and replayed ones', () => {
    expect(verifyWebhookSignature(req(), secret, opts())).toMatchObject({ ok: true, keyid: 'wh-1' });
    expect(verifyWebhookSignature(req(), secret, opts())).toEqual({ ok: false, reason: 'replayed nonce' });
    seen.clear();
    const no = (r: ReturnType<typeof req>, o = opts()) => verifyWebhookSignature(r, secret, o);
    expect(no(req({ body: body.replace('"x"', '"y"') }))).toEqual({
      ok: false,
      reason: 'Content-Digest mismatch',
    });
    expect(
      no(
        req({
          body: body.replace('"x"', '"y"'),
          headers: { ...headers, 'content-digest': contentDigest(body.replace('"x"', '"y"')) },
        }),
      ),
    ).toEqual({ ok: false, reason: 'signature mismatch' });
    expect(no(req({ targetUri: 'https://other.example.com/vigil?x=1' }))).toEqual({
      ok: false,
      reason: 'signature mismatch',
    });
    expect(no(req({ method: 'PUT' }))).toEqual({ ok: false, reason: 'signature mismatch' });
    expect(
      no(
        req({
          headers: {
            ...headers,
            'signature-input': headers['signature-input']!.replace(
              'created=1700000000',
              'created=1700000005',
            ),
          },
        }),
      ),
    ).toEqual({ ok: false, reason: 'signature mismatch' });
    expect(no(req(), opts(fixed.created + 301))).toEqual({
      ok: false,
      reason: 'created is outside the accepted window',
    });
    expect(no(req(), opts(fixed.created - 61))).toEqual({
      ok: false,
      reason: 'created is outside the accepted window',
    });
    expect(verifyWebhookSignature(req(), 'another-secret', opts())).toEqual({
      ok: false,
      reason: 'signature mismatch',
    });
    const { signature: _s, ...unsigned } = headers;
    expect(no(req({ headers: unsigned }))).toEqual({ ok: false, reason: 'missing signature headers' });
    // None of the refusals consumed the nonce: the genuine request still verifies once.
    expect(no(req())).toMatchObject({ ok: true, keyid: 'wh-1', created: fixed.created, nonce: fixed.nonce });
  });
});

describe('circuit breaker and retry policy', () => {
  it('opens after K failures, short-circuits with the remaining time, probes once half-open', () => {
    let t = 0;
    const b = new CircuitBreakers({ failures: 3, openMs: 10_000, now: () => t });
    expect(b.failure('w')).toBe(false);
    expect(b.failure('w')).toBe(false);
    expect(b.check('w')).toEqual({ allowed: true, probe: false });
    expect(b.failure('w')).toBe(true);
    expect(b.openCount()).toBe(1);
    t = 4000;
    expect(b.check('w')).toEqual({ allowed: false, retryInMs: 6000 });
    expect(b.check('other')).toEqual({ allowed: true, probe: false });
    t = 10_000;
    expect(b.check('w')).toEqual({ allowed: true, probe: true });
    expect(b.check('w')).toEqual({ allowed: false, retryInMs: PROBE_WAIT_MS });
    expect(b.failure('w')).toBe(true); // the probe failed: open again
    expect(b.check('w')).toEqual({ allowed: false, retryInMs: 10_000 });
    t = 20_000;
    expect(b.check('w')).toMatchObject({ allowed: true, probe: true });
    b.success('w');
    expect(b.openCount()).toBe(0);
    expect(b.check('w')).toEqual({ allowed: true, probe: false });
  });

  it('classifies results and backs off exponentially with jitter, capped', () => {
    const r = (status: number) => ({ kind: 'response' as const, status, durationMs: 1 });
    expect([200, 204, 408, 429, 500, 503, 400, 404, 410, 301].map((s) => classify(r(s)))).toEqual([
      'delivered',
      'delivered',
      'retry',
      'retry',
      'retry',
      'retry',
      'dead',
      'dead',
      'dead',
      'dead',
    ]);
    expect(classify({ kind: 'timeout', error: 't', durationMs: 1 })).toBe('retry');
    expect(classify({ kind: 'network', error: 'ECONNREFUSED', durationMs: 1 })).toBe('retry');
    expect(classify({ kind: 'refused', error: 'loopback', durationMs: 1 })).toBe('dead');
    const b = { initialMs: 1000, maxMs: 60_000 };
    expect([1, 2, 3, 10].map((a) => retryDelayMs(a, b, () => 0))).toEqual([500, 1000, 2000, 30_000]);
    expect([1, 2, 3, 10].map((a) => retryDelayMs(a, b, () => 1))).toEqual([1000, 2000, 4000, 60_000]);
  });
});

describe('webhook HTTP client (a local server; no outside network)', () => {
  let server: Server;
  let port = 0;
  const hits: string[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      hits.push(req.url ?? '');
      if (req.url === '/hang') return; // never answers
      if (req.url === '/big') {
        res.writeHead(200);
        res.end(Buffer.alloc(1024 * 1024, 'x')); // far beyond MAX_RESPONSE_BYTES
        return;
      }
      if (req.url === '/redirect') {
        res.writeHead(302, { location: '/ok' });
        res.end();
        return;
      }
      res.writeHead(204);
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  // A local call answers in ms when idle, but can take over 300 ms on a loaded machine (a 1 MB body, a slow
  // accept): 5 s keeps every call but /hang from timing out. /hang uses a short timeout of its own.
  const local = { allowInsecureHttp: true, allowPrivateNetworks: true, timeoutMs: 5_000 };
  const HANG_TIMEOUT_MS = 300;
  // A name that exists nowhere: only the injected resolver knows it.
  const fakeDns: Resolver = () => Promise.resolve([{ address: '127.0.0.1', family: 4 }]);
  const post = (path: string, opts: Parameters<typeof postJson>[3] = local, host = '127.0.0.1') =>
    postJson(new URL(`http://${host}:${port}${path}`), '{}', { 'content-type': 'application/json' }, opts);

  it('connects to the address it checked (the pinned lookup), not to a second DNS answer', async () => {
    const r = await post('/ok', { ...local, resolve: fakeDns }, 'hooks.vigil.invalid');
    expect(r).toMatchObject({ kind: 'response', status: 204 });
  });

  it('refuses a private address without calling it, unless allowPrivateNetworks', async () => {
    const before = hits.length;
    const strictLocal = { ...local, allowPrivateNetworks: false };
    expect(await post('/ok', { ...strictLocal, resolve: fakeDns }, 'hooks.vigil.invalid')).toMatchObject({
      kind: 'refused',
      error: expect.stringMatching(/loopback address \(127\.0\.0\.1\)/) as unknown,
    });
    expect(await post('/ok', strictLocal)).toMatchObject({ kind: 'refused' });
    expect(await post('/ok', { ...local, allowInsecureHttp: false })).toMatchObject({
      kind: 'refused',
      error: 'must be an https URL',
    });
    expect(hits.length).toBe(before);
  });

  it('times out, caps the response body, follows no redirect, reports connection errors', async () => {
    // /hang never answers: only the timeout ends the call, and not before it is due. The upper bound only
    // catches a timeout that does not apply (the call would otherwise hang until the test fails).
    const started = performance.now();
    expect(await post('/hang', { ...local, timeoutMs: HANG_TIMEOUT_MS })).toMatchObject({ kind: 'timeout' });
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(HANG_TIMEOUT_MS - 1);
    expect(waited).toBeLessThan(HANG_TIMEOUT_MS + 5_000);
    expect(await post('/big')).toMatchObject({ kind: 'response', status: 200 });
    expect(await post('/redirect')).toMatchObject({ kind: 'response', status: 302 });
    expect(hits.filter((h) => h === '/ok').length).toBe(1); // only the pinned-lookup test's call
    const closed = await postJson(new URL('http://127.0.0.1:1/'), '{}', {}, local);
    expect(closed).toMatchObject({ kind: 'network', error: 'ECONNREFUSED' });
  });
});
