import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactSign, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleAuthorizer, ensureDevSigningKey, parseCloudConfig } from '../src/index.js';
import { createServer } from 'node:net';
import { checkTokenRules, createTokenVerifier, loadJwksFile } from '../src/auth/jwt.js';
import { KeySourceUnavailableError } from '../src/auth/errors.js';
import { toProblem } from '../src/api/problem.js';
import { AUDIENCE, ISSUER, PROBLEM_JSON, useApiCloud } from './api-fixtures.js';

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

describe('API authentication (bearer JWT)', () => {
  const api = useApiCloud();
  let good: string;
  let invalidBody: unknown;

  beforeAll(async () => {
    good = await api.token('acme', ['viewer']);
  });

  const claims = () => ({ tenant: 'acme', roles: ['admin'] });
  const now = (): number => Math.floor(Date.now() / 1000);
  /** Signs with the dev key unless told otherwise; `mutate` edits the builder. */
  const sign = (
    mutate: (j: SignJWT) => SignJWT,
    payload: Record<string, unknown> = claims(),
  ): Promise<string> =>
    mutate(
      new SignJWT(payload)
        .setProtectedHeader({ alg: 'ES256', kid: api.key().kid })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setSubject('someone')
        .setIssuedAt()
        .setExpirationTime(now() + 300),
    ).sign(api.key().privateJwk);

  it('accepts a valid token', async () => {
    const res = await api.get('/v1/events', good);
    expect(res.status).toBe(200);
  });

  it('answers 401 without a token, with a Bearer challenge and no error code', async () => {
    const res = await api.get('/v1/events');
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="vigil"');
    expect(await res.json()).toEqual({
      type: 'urn:vigil:problem:unauthenticated',
      title: 'Authentication required',
      status: 401,
      detail: 'A valid bearer token is required.',
      instance: '/v1/events',
    });
  });

  const cases: Array<[string, () => Promise<string>]> = [
    ['a non-bearer scheme', () => Promise.resolve('Basic YWRtaW46YWRtaW4=')],
    ['garbage', () => Promise.resolve('Bearer not.a.jwt')],
    ['an expired token', () => sign((j) => j.setIssuedAt(now() - 3600).setExpirationTime(now() - 120))],
    [
      'a token without exp',
      () =>
        new SignJWT(claims())
          .setProtectedHeader({ alg: 'ES256', kid: api.key().kid })
          .setIssuer(ISSUER)
          .setAudience(AUDIENCE)
          .setSubject('x')
          .sign(api.key().privateJwk),
    ],
    [
      'a token without sub',
      () =>
        new SignJWT(claims())
          .setProtectedHeader({ alg: 'ES256', kid: api.key().kid })
          .setIssuer(ISSUER)
          .setAudience(AUDIENCE)
          .setExpirationTime(now() + 300)
          .sign(api.key().privateJwk),
    ],
    ['the wrong issuer', () => sign((j) => j.setIssuer('someone-else'))],
    ['the wrong audience', () => sign((j) => j.setAudience('another-api'))],
    ['no tenant claim', () => sign((j) => j, { roles: ['admin'] })],
    ['a tenant that is not an id', () => sign((j) => j, { tenant: 'a.b', roles: ['admin'] })],
    ['roles that are not strings', () => sign((j) => j, { tenant: 'acme', roles: 'admin' })],
    [
      'alg none',
      () =>
        Promise.resolve(
          `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims(), iss: ISSUER, aud: AUDIENCE, sub: 'x', exp: now() + 300 })}.`,
        ),
    ],
    [
      'HS256 signed with the public key bytes',
      async () => {
        const pem = createPublicKey({ key: api.key().publicJwk as JWK & { kty: 'EC' }, format: 'jwk' })
          .export({ type: 'spki', format: 'pem' })
          .toString();
        const jwk = readFileSync(api.key().jwksFile);
        const [a, b] = await Promise.all(
          [Buffer.from(pem), jwk].map((secret) =>
            new SignJWT(claims())
              .setProtectedHeader({ alg: 'HS256', kid: api.key().kid })
              .setIssuer(ISSUER)
              .setAudience(AUDIENCE)
              .setSubject('x')
              .setExpirationTime(now() + 300)
              .sign(secret),
          ),
        );
        const second = await api.get('/v1/events', b);
        expect(second.status).toBe(401);
        return a!;
      },
    ],
    [
      'a token signed by another key with the same kid',
      () => {
        const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
        return new SignJWT(claims())
          .setProtectedHeader({ alg: 'ES256', kid: api.key().kid })
          .setIssuer(ISSUER)
          .setAudience(AUDIENCE)
          .setSubject('x')
          .setExpirationTime(now() + 300)
          .sign(privateKey);
      },
    ],
    [
      'a tampered payload',
      () => sign((j) => j).then((t) => swapPayload(t, { ...claims(), tenant: 'globex' })),
    ],
  ];

  // Issue 12, finding 7: lifetime, iat and audience rules (auth.maxTokenLifetimeSeconds: 86400 by default).
  /** Signs the payload text as is (JSON that SignJWT cannot produce, such as `1e400`). */
  const signRaw = (json: string): Promise<string> =>
    new CompactSign(new TextEncoder().encode(json))
      .setProtectedHeader({ alg: 'ES256', kid: api.key().kid })
      .sign(api.key().privateJwk);
  const rawClaims = `"iss":"${ISSUER}","aud":"${AUDIENCE}","sub":"x","tenant":"acme","roles":["admin"]`;
  cases.push(
    ['exp 1e400 (Infinity: never expires)', () => signRaw(`{${rawClaims},"iat":${now()},"exp":1e400}`)],
    ['iat 1e400', () => signRaw(`{${rawClaims},"iat":1e400,"exp":${now() + 300}}`)],
    ['iat -1e400', () => signRaw(`{${rawClaims},"iat":-1e400,"exp":${now() + 300}}`)],
    [
      'a token without iat',
      () =>
        new SignJWT(claims())
          .setProtectedHeader({ alg: 'ES256', kid: api.key().kid })
          .setIssuer(ISSUER)
          .setAudience(AUDIENCE)
          .setSubject('x')
          .setExpirationTime(now() + 300)
          .sign(api.key().privateJwk),
    ],
    ['iat in the future (beyond the clock tolerance)', () => sign((j) => j.setIssuedAt(now() + 120))],
    [
      'a lifetime over the maximum (25 h)',
      () => sign((j) => j.setIssuedAt(now()).setExpirationTime(now() + 25 * 3600)),
    ],
    [
      'an old iat with a far exp (exp - iat over the maximum)',
      () => sign((j) => j.setIssuedAt(now() - 10 * 86_400).setExpirationTime(now() + 600)),
    ],
    ['an audience array with ours and another', () => sign((j) => j.setAudience([AUDIENCE, 'other-api']))],
    ['an audience array with ours twice', () => sign((j) => j.setAudience([AUDIENCE, AUDIENCE]))],
  );

  it('accepts the longest allowed lifetime and an audience array of ours alone', async () => {
    const longest = await sign((j) => j.setIssuedAt(now()).setExpirationTime(now() + 86_400));
    expect((await api.get('/v1/events', longest)).status).toBe(200);
    const single = await sign((j) => j.setAudience([AUDIENCE]));
    expect((await api.get('/v1/events', single)).status).toBe(200);
  });

  it.each(cases)('answers 401 invalid_token for %s, with the same generic body', async (_name, make) => {
    const token = await make();
    const res = await api.get('/v1/events', undefined, {
      headers: {
        authorization: token.startsWith('Basic ') || token.startsWith('Bearer ') ? token : `Bearer ${token}`,
      },
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
    expect(res.headers.get('www-authenticate')).toBe(
      'Bearer realm="vigil", error="invalid_token", error_description="The access token is invalid"',
    );
    const body = await res.json();
    invalidBody ??= body;
    expect(body).toEqual(invalidBody);
  });

  it('tolerates a bounded clock skew (30 s by default)', async () => {
    const justExpired = await sign((j) => j.setIssuedAt(now() - 600).setExpirationTime(now() - 10));
    expect((await api.get('/v1/events', justExpired)).status).toBe(200);
    const longExpired = await sign((j) => j.setIssuedAt(now() - 600).setExpirationTime(now() - 45));
    expect((await api.get('/v1/events', longExpired)).status).toBe(401);
  });

  it('answers 503 (retryable), not 401, when a remote JWKS cannot be fetched', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const verifier = createTokenVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      algorithms: ['ES256'],
      jwksUrl: `http://127.0.0.1:${port}/jwks.json`,
      clockToleranceSeconds: 30,
    });
    const err: unknown = await verifier.verify(good).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeySourceUnavailableError);
    const { problem, headers } = toProblem(err, '/v1/events');
    expect(problem.status).toBe(503);
    expect(headers['Retry-After']).toBe('5');
  });

  it('counts refusals by reason (never by token)', async () => {
    const text = await (await fetch(`${api.base()}/metrics`)).text();
    for (const reason of ['missing', 'malformed', 'expired', 'claims', 'lifetime', 'algorithm', 'signature'])
      expect(text).toMatch(new RegExp(`vigil_cloud_api_auth_failures_total\\{reason="${reason}"\\} [1-9]`));
  });
});

function swapPayload(token: string, payload: Record<string, unknown>): string {
  const [h, p, s] = token.split('.');
  const original = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
  return `${h}.${b64({ ...original, ...payload })}.${s}`;
}

describe('default authorizer', () => {
  const authz = createRoleAuthorizer();
  const p = (roles: string[]) => ({ subject: 's', tenant: 'acme', roles });

  it.each(['admin', 'operator', 'viewer', 'auditor'])('lets %s read its tenant’s events', async (role) => {
    expect(
      (await authz.authorize(p([role]), 'events:read', { type: 'events', tenant: 'acme' })).allowed,
    ).toBe(true);
  });

  it('denies by default: other roles, no roles, other tenants', async () => {
    expect(
      (await authz.authorize(p(['installer']), 'events:read', { type: 'events', tenant: 'acme' })).allowed,
    ).toBe(false);
    expect((await authz.authorize(p([]), 'events:read', { type: 'events', tenant: 'acme' })).allowed).toBe(
      false,
    );
    const other = await authz.authorize(p(['admin']), 'events:read', {
      type: 'event',
      tenant: 'globex',
      id: 'x',
    });
    expect(other.allowed).toBe(false);
  });
});

describe('dev signing key and auth config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-devkey-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const base = {
    database: { url: 'postgres://x/y' },
    nats: { servers: ['tls://localhost:1'], tls: { caFile: 'a', certFile: 'b', keyFile: 'c' } },
  };

  it('creates the key pair once: private 0600, public JWKS with kid and without d', () => {
    const first = ensureDevSigningKey(dir);
    expect(statSync(first.privateKeyFile).mode & 0o777).toBe(0o600);
    const jwks = JSON.parse(readFileSync(first.jwksFile, 'utf8')) as { keys: Array<Record<string, unknown>> };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: first.kid });
    expect(jwks.keys[0]).not.toHaveProperty('d');
    const before = readFileSync(first.privateKeyFile, 'utf8');
    const second = ensureDevSigningKey(dir);
    expect(second.kid).toBe(first.kid);
    expect(readFileSync(second.privateKeyFile, 'utf8')).toBe(before);
    expect(loadJwksFile(first.jwksFile).keys).toHaveLength(1);
    expect(() => loadJwksFile(first.privateKeyFile)).toThrow(/not a JWKS/);
  });

  it('refuses a JWKS file that holds a private key', () => {
    const key = ensureDevSigningKey(dir);
    const leaked = join(dir, 'leaked.json');
    writeFileSync(leaked, JSON.stringify({ keys: [key.privateJwk] }));
    expect(() => loadJwksFile(leaked)).toThrow(/private or symmetric/);
  });

  it('requires a key source when the API is enabled, and only one', () => {
    expect(() => parseCloudConfig(base)).toThrow(
      /auth: jwksFile or jwksUrl is required when api.enabled is true/,
    );
    expect(parseCloudConfig({ ...base, api: { enabled: false } }).auth).toMatchObject({
      issuer: 'vigil-dev',
      audience: 'vigil-api',
      algorithms: ['ES256'],
      clockToleranceSeconds: 30,
    });
    expect(() =>
      parseCloudConfig({ ...base, auth: { jwksFile: 'a.json', jwksUrl: 'https://idp.example/jwks' } }),
    ).toThrow(/not both/);
    expect(() => parseCloudConfig({ ...base, auth: { jwksUrl: 'http://idp.example/jwks' } })).toThrow(
      /https/,
    );
    expect(() => parseCloudConfig({ ...base, auth: { jwksFile: 'a', algorithms: ['HS256'] } })).toThrow(
      /algorithms/,
    );
    expect(() => parseCloudConfig({ ...base, auth: { jwksFile: 'a', algorithms: ['none'] } })).toThrow(
      /algorithms/,
    );
    expect(parseCloudConfig({ ...base, auth: { jwksUrl: 'http://127.0.0.1:9999/jwks' } }).api).toEqual({
      enabled: true,
      maxPageSize: 500,
      idempotency: { ttlSeconds: 86_400, inProgressTimeoutSeconds: 60 },
    });
  });
});

describe('token lifetime and audience rules (auth.maxTokenLifetimeSeconds)', () => {
  const opts = { audience: 'api', clockToleranceSeconds: 30, maxTokenLifetimeSeconds: 600 };
  const t = 1_800_000_000;
  it('takes iat as required, bounds exp - iat and exp - now, and wants aud to be ours alone', () => {
    expect(checkTokenRules({ iat: t, exp: t + 600, aud: 'api' }, t, opts)).toBeNull();
    expect(checkTokenRules({ iat: t, exp: t + 600, aud: ['api'] }, t, opts)).toBeNull();
    expect(checkTokenRules({ iat: t + 30, exp: t + 600, aud: 'api' }, t, opts)).toBeNull();
    const refused: Array<[Record<string, unknown>, string]> = [
      [{ iat: t, exp: t + 601 }, 'lifetime'],
      [{ iat: t, exp: Infinity }, 'claims'],
      [{ iat: Infinity, exp: t + 60 }, 'claims'],
      [{ iat: Number.NaN, exp: t + 60 }, 'claims'],
      [{ exp: t + 60 }, 'claims'],
      [{ iat: '1800000000', exp: t + 60 }, 'claims'],
      [{ iat: t + 31, exp: t + 60 }, 'claims'],
      [{ iat: t, exp: t + 60, aud: ['api', 'other'] }, 'claims'],
      [{ iat: t, exp: t + 60, aud: [] }, 'claims'],
    ];
    for (const [payload, reason] of refused)
      expect(checkTokenRules(payload, t, opts)?.reason, JSON.stringify(payload)).toBe(reason);
  });

  it('is configured through auth.maxTokenLifetimeSeconds (default 24 h)', () => {
    const base = {
      database: { url: 'postgres://x' },
      nats: { servers: ['tls://localhost:1'], tls: { caFile: 'a', certFile: 'b', keyFile: 'c' } },
      api: { enabled: false },
    };
    expect(parseCloudConfig(base).auth.maxTokenLifetimeSeconds).toBe(86_400);
    expect(
      parseCloudConfig({ ...base, auth: { maxTokenLifetimeSeconds: 3600 } }).auth.maxTokenLifetimeSeconds,
    ).toBe(3600);
    expect(() => parseCloudConfig({ ...base, auth: { maxTokenLifetimeSeconds: 10 } })).toThrow(
      /maxTokenLifetimeSeconds/,
    );
  });
});
