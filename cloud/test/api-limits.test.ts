import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { API_BODY_LIMIT } from '../src/api/router.js';
import {
  API_MAX_JSON_DEPTH,
  API_MAX_URL_LENGTH,
  nestedDeeperThan,
  REJECTION_REASONS,
} from '../src/api/limits.js';
import { PROBLEM_JSON, useApiCloud } from './api-fixtures.js';

interface Problem {
  type: string;
  status: number;
  detail?: string;
  errors?: Array<{ path: string; message: string }>;
}

function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? [v] : { a: v };
  return v;
}

describe('JSON depth check', () => {
  it('counts the top-level value as level 1', () => {
    expect(nestedDeeperThan({ a: 1 }, 1)).toBe(false);
    expect(nestedDeeperThan({ a: [] }, 1)).toBe(true);
    expect(nestedDeeperThan(nested(32), 32)).toBe(false);
    expect(nestedDeeperThan(nested(33), 32)).toBe(true);
    expect(nestedDeeperThan('text', 0)).toBe(false);
    expect(nestedDeeperThan(null, 0)).toBe(false);
  });

  it('walks hostile nesting without recursion', () => {
    expect(nestedDeeperThan(JSON.parse(`${'['.repeat(100_000)}${']'.repeat(100_000)}`), 32)).toBe(true);
  });
});

describe('API request limits', () => {
  const api = useApiCloud({ api: { maxPageSize: 100 } });
  let admin: string;

  beforeAll(async () => {
    admin = await api.token('acme', ['admin']);
  });

  const post = (path: string, body: string, headers: Record<string, string> = {}): Promise<Response> =>
    api.get(path, admin, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body,
    });

  const expectProblem = async (res: Response, status: number, type: string): Promise<Problem> => {
    expect(res.status, await res.clone().text()).toBe(status);
    expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
    const p = (await res.json()) as Problem;
    expect(p).toMatchObject({ status, type: `urn:vigil:problem:${type}` });
    return p;
  };

  const rejections = async (): Promise<Record<string, number>> => {
    const text = await (await api.get('/metrics')).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^vigil_cloud_api_rejected_total\{reason="([a-z_]+)"\} (\d+)$/gm))
      out[m[1]!] = Number(m[2]);
    return out;
  };

  const tokenCount = async (): Promise<number> => {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from enrollment_tokens`.execute(
      api.cloud().db,
    );
    return rows[0]!.n;
  };

  it('exports every rejection reason from the start', async () => {
    const counts = await rejections();
    expect(Object.keys(counts).sort()).toEqual([...REJECTION_REASONS].sort());
  });

  it('answers 413 problem+json to a body over the limit', async () => {
    expect(API_BODY_LIMIT).toBe('256kb');
    const before = await rejections();
    const res = await post(
      '/v1/enrollment-tokens',
      JSON.stringify({ site_id: 'hq', note: 'x'.repeat(300_000) }),
    );
    const p = await expectProblem(res, 413, 'payload-too-large');
    expect(p.detail).toMatch(/larger than/);
    expect((await rejections()).body_too_large).toBe(before.body_too_large! + 1);
  });

  it('refuses JSON nested deeper than the limit with 400 before any handler runs', async () => {
    const tokens = await tokenCount();
    const before = await rejections();
    const deep = JSON.stringify({ site_id: 'hq', note: nested(API_MAX_JSON_DEPTH) });
    const p = await expectProblem(await post('/v1/enrollment-tokens', deep), 400, 'invalid-request');
    expect(p.errors).toEqual([
      { path: '(body)', message: `is nested deeper than ${API_MAX_JSON_DEPTH} levels` },
    ]);
    // Hostile nesting that still fits the body limit is refused the same way.
    const hostile = `${'['.repeat(120_000)}${']'.repeat(120_000)}`;
    await expectProblem(await post('/v1/devices/gw-1/revoke', hostile), 400, 'invalid-request');
    // At the limit the depth check passes: the handler's own validation answers.
    const atLimit = JSON.stringify({ site_id: 'hq', note: nested(API_MAX_JSON_DEPTH - 1) });
    const q = await expectProblem(await post('/v1/enrollment-tokens', atLimit), 400, 'invalid-request');
    expect(q.errors?.[0]?.path).toBe('note');
    expect(await tokenCount()).toBe(tokens);
    const after = await rejections();
    expect(after.body_too_deep).toBe(before.body_too_deep! + 2);
    expect(after.invalid_parameter).toBe(before.invalid_parameter! + 1);
  });

  it('answers 400 to malformed JSON and 415 to a charset it does not read', async () => {
    const before = await rejections();
    await expectProblem(await post('/v1/enrollment-tokens', '{"site_id":'), 400, 'invalid-request');
    await expectProblem(
      await post('/v1/enrollment-tokens', '{}', { 'content-type': 'application/json; charset=latin1' }),
      415,
      'unsupported-media-type',
    );
    const after = await rejections();
    expect(after.body_malformed).toBe(before.body_malformed! + 1);
    expect(after.unsupported_media_type).toBe(before.unsupported_media_type! + 1);
  });

  it('answers 414 to a URL over the limit, before authentication', async () => {
    const before = await rejections();
    const long = `/v1/events?label=${'a'.repeat(API_MAX_URL_LENGTH)}`;
    await expectProblem(await api.get(long), 414, 'uri-too-long');
    await expectProblem(await api.get(long, admin), 414, 'uri-too-long');
    // Just under the limit it is read (and this label is simply too long for the schema).
    const under = `/v1/events?label=${'a'.repeat(API_MAX_URL_LENGTH - '/v1/events?label='.length)}`;
    expect(under.length).toBe(API_MAX_URL_LENGTH);
    await expectProblem(await api.get(under, admin), 400, 'invalid-request');
    expect((await rejections()).uri_too_long).toBe(before.uri_too_long! + 2);
  });

  it('refuses a page size over api.maxPageSize instead of clamping it', async () => {
    const before = await rejections();
    expect((await api.get('/v1/events?limit=100', admin)).status).toBe(200);
    for (const limit of ['101', '100000', '9999999', '0', '-1', '1.5'])
      for (const path of ['/v1/events', '/v1/devices']) {
        const p = await expectProblem(await api.get(`${path}?limit=${limit}`, admin), 400, 'invalid-request');
        expect(p.errors?.[0]?.path).toBe('limit');
      }
    expect((await rejections()).page_size).toBe(before.page_size! + 12);
  });

  it('refuses unknown query parameters on every route, and unknown body fields', async () => {
    const before = await rejections();
    const cases: Array<[string, string]> = [
      ['GET', '/v1/events?sight=hq'],
      ['GET', `/v1/events/${'0'.repeat(8)}-0000-7000-8000-${'0'.repeat(12)}?verbose=1`],
      ['GET', '/v1/devices?x=1'],
      ['GET', '/v1/devices/gw-1?x=1'],
      ['GET', '/v1/enrollment-tokens?all=true'],
      ['POST', '/v1/enrollment-tokens?dry_run=1'],
      ['POST', '/v1/devices/gw-1/revoke?force=1'],
    ];
    for (const [method, path] of cases) {
      const res = await api.get(path, admin, {
        method,
        ...(method === 'POST'
          ? { headers: { 'content-type': 'application/json' }, body: '{"site_id":"hq","reason":"r"}' }
          : {}),
      });
      const p = await expectProblem(res, 400, 'invalid-request');
      expect(p.errors?.[0]?.message, path).toBe('is not a known parameter');
    }
    const body = await post('/v1/enrollment-tokens', JSON.stringify({ site_id: 'hq', site: 'hq' }));
    expect((await expectProblem(body, 400, 'invalid-request')).errors).toEqual([
      { path: 'site', message: 'is not a known parameter' },
    ]);
    expect((await rejections()).unknown_parameter).toBe(before.unknown_parameter! + cases.length + 1);
  });
});
