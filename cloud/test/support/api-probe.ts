import { randomUUID } from 'node:crypto';
import { request, Agent } from 'node:http';
import { z } from 'zod';
import type { ApiOperation } from '../../src/api/openapi.js';

/*
 * The generator of the API adversarial probe (cloud/test/security-api-probe.test.ts): from one route of the
 * registry (api/openapi.ts) and a valid sample request for it, the hostile variants of every input it takes
 * (path parameters, query parameters, every body field, the raw body, the Idempotency-Key header). Pure but
 * for `send`, a raw HTTP client (fetch normalises `..` and refuses bytes an attacker can send).
 *
 * Each variant says what the server must do with it:
 *   must   a bad input: refused (4xx); by a caller the route allows, a 400 naming `field`.
 *   maybe  odd but possibly valid (a negative number, an empty string): any answer but a 5xx.
 */

/** A valid request for a route: what the registry's schemas accept, naming objects of one tenant. */
export interface Sample {
  params?: Record<string, string>;
  query?: Record<string, string>;
  /** A JSON body (must parse with the route's body schema). */
  body?: unknown;
  /** A non-JSON body (e.g. a model file) and its content type. */
  raw?: { bytes: Buffer; contentType: string };
}

export interface RawRequest {
  method: string;
  /** Path and query exactly as sent (already percent-encoded where needed). */
  target: string;
  headers: Record<string, string>;
  body?: Buffer | undefined;
}

export interface RawResponse {
  status: number;
  contentType: string;
  text: string;
}

export interface Variant {
  /** Where and what, e.g. `query label=%00`. */
  name: string;
  kind: 'must' | 'maybe';
  /** The field a 400 must name (problem `errors[].path`); undefined: the status alone is checked. */
  field?: string | undefined;
  req: RawRequest;
}

const enc = encodeURIComponent;

/** `/v1/events/:id` with params -> `/v1/events/<id>`; values are inserted as given (pre-encoded). */
export function pathOf(op: ApiOperation, params: Record<string, string>): string {
  return `${op.mount}${op.path}`.replace(/:([A-Za-z0-9_]+)/g, (_m, name: string) => {
    const v = params[name];
    if (v === undefined) throw new Error(`${op.operationId}: no sample value for path parameter ${name}`);
    return v;
  });
}

function queryOf(q: Record<string, string>, raw: Record<string, string> = {}): string {
  const parts = [
    ...Object.entries(q).map(([k, v]) => `${enc(k)}=${enc(v)}`),
    ...Object.entries(raw).map(([k, v]) => `${k}=${v}`),
  ];
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}

/** The valid request of a sample (params and query encoded). */
export function validRequest(op: ApiOperation, s: Sample, idempotencyKey?: string): RawRequest {
  const params = Object.fromEntries(Object.entries(s.params ?? {}).map(([k, v]) => [k, enc(v)]));
  const headers: Record<string, string> = {};
  let body: Buffer | undefined;
  if (s.raw) {
    body = s.raw.bytes;
    headers['content-type'] = s.raw.contentType;
  } else if (s.body !== undefined) {
    body = Buffer.from(JSON.stringify(s.body));
    headers['content-type'] = 'application/json';
  }
  if (idempotencyKey !== undefined) headers['idempotency-key'] = idempotencyKey;
  return {
    method: op.method.toUpperCase(),
    target: pathOf(op, params) + queryOf(s.query ?? {}),
    headers,
    body,
  };
}

/** Names and JSON Schemas of an object schema's properties (the OpenAPI view of params and query). */
export function propertiesOf(schema: z.ZodType | undefined): Record<string, Record<string, unknown>> {
  if (!schema) return {};
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as {
    properties?: Record<string, Record<string, unknown>>;
  };
  return json.properties ?? {};
}

// --- hostile values -------------------------------------------------------------------------------------

/** Path segments an attacker tries (sent raw: `..` is not normalised away). */
const PATH_VALUES: ReadonlyArray<[string, string]> = [
  ['NUL', '%00'],
  ['NUL inside', 'gw%00x'],
  ['dot-dot', '..'],
  ['encoded dot-dot', '%2e%2e'],
  ['encoded slash', 'a%2Fb'],
  ['traversal', '..%2F..%2F..%2Fetc%2Fpasswd'],
  ['over-long', 'x'.repeat(300)],
  ['invalid UTF-8', '%FF'],
  ['UTF-8 surrogate', '%ED%A0%80'],
  ['overlong UTF-8 dots', '%C0%AE%C0%AE'],
  ['quote', "x'%20OR%20'1'='1"],
];

const FORGED_CURSORS: ReadonlyArray<[string, string]> = (() => {
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const id = '0190a6e0-0000-7000-8000-000000000000';
  return [
    ['year 0', b64({ occurred_at: '0000-01-01T00:00:00.000000Z', event_id: id })],
    ['31 February', b64({ occurred_at: '2026-02-31T00:00:00.000000Z', event_id: id })],
    ['hour 24', b64({ occurred_at: '2026-01-01T24:00:00.000000Z', event_id: id })],
    ['year 9999+', b64({ occurred_at: '99999-01-01T00:00:00.000000Z', event_id: id })],
    ['bad event id', b64({ occurred_at: '2026-01-01T00:00:00.000000Z', event_id: 'x' })],
    ['extra member', b64({ occurred_at: '2026-01-01T00:00:00.000000Z', event_id: id, tenant_id: 'x' })],
    ['device id with NUL', b64({ id: 'gw\u0000' })],
    ['device id traversal', b64({ id: '../x' })],
    ['device id number', b64({ id: 1 })],
    ['JSON null', b64(null)],
    ['JSON array', b64([])],
    ['not JSON', Buffer.from('{"occurred_at":').toString('base64url')],
    ['not base64url', '!!!'],
    ['padded base64', `${b64({ id: 'gw' })}==`],
    ['over-long', 'A'.repeat(4000)],
    ['empty', ''],
    ['bigint overflow', '9999999999999999999'],
    ['zero', '0'],
    ['negative', '-1'],
    ['exponent', '1e3'],
    ['NUL', '%00'],
  ];
})();

/** Query parameter values: [label, raw value, kind]. Kinds depend on the parameter's schema. */
function queryValues(
  name: string,
  schema: Record<string, unknown>,
): Array<[string, string, 'must' | 'maybe']> {
  const out: Array<[string, string, 'must' | 'maybe']> = [
    ['NUL', '%00', 'must'],
    ['NUL inside', 'a%00b', 'must'],
    ['over-long', 'x'.repeat(3000), 'must'],
    ['invalid UTF-8', '%FF', 'must'],
    ['UTF-8 surrogate', '%ED%A0%80', 'must'],
    ['%u escape', '%uD800', 'must'],
    ['overlong UTF-8 NUL', '%C0%80', 'must'],
    ['malformed percent-encoding', '100%', 'must'],
    ['SQL-ish', "x'%20OR%20'1'='1", 'maybe'],
    ['traversal', '..%2F..%2Fx', 'maybe'],
  ];
  const numeric: Array<[string, string]> = [
    ['empty', ''],
    ['zero', '0'],
    ['negative', '-1'],
    ['fraction', '1.5'],
    ['1e400', '1e400'],
    ['huge integer', '99999999999999999999'],
    ['hex', '0x10'],
  ];
  // A page size is 1..max and nothing else; elsewhere numbers may well be valid strings.
  const strictNumber = name === 'limit';
  for (const [l, v] of numeric) out.push([l, v, strictNumber ? 'must' : 'maybe']);
  if (name === 'cursor') for (const [l, v] of FORGED_CURSORS) out.push([`forged cursor (${l})`, v, 'must']);
  if (schema.format === 'date-time') {
    out.push(['year 0', '0000-01-01T00:00:00Z', 'maybe']);
    out.push(['far future', '9999-12-31T23:59:59.999999999%2B14:00', 'maybe']);
    out.push(['31 February', '2026-02-31T00:00:00Z', 'must']);
    out.push(['offset +99:99', '2026-01-01T00:00:00%2B99:99', 'must']);
  }
  return out;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Raw JSON number texts, inserted where a placeholder string stands. */
const RAW = (text: string): string => `\u0001raw:${text}\u0001`;
function serialize(body: unknown): Buffer {
  const text = JSON.stringify(body).replace(/"\\u0001raw:([^\\"]*)\\u0001"/g, '$1');
  return Buffer.from(text);
}

function leafValues(v: Json): Array<[string, unknown, 'must' | 'maybe']> {
  const wrongTypes: Array<[string, unknown]> = [
    ['object', {}],
    ['array', []],
    ['null', null],
  ];
  if (typeof v === 'string')
    return [
      ['NUL inside', 'a\u0000b', 'must'],
      ['NUL alone', '\u0000', 'must'],
      ['lone high surrogate', 'a\ud800b', 'must'],
      ['lone low surrogate', '\udfff', 'must'],
      ['over-long', 'x'.repeat(100_000), 'must'],
      ['number', 1, 'must'],
      ['boolean', true, 'must'],
      ...wrongTypes.map(([l, x]): [string, unknown, 'must'] => [l, x, 'must']),
      ['empty', '', 'maybe'],
      ['RTL override and BOM', '\u202e\ufeffx', 'maybe'],
    ];
  if (typeof v === 'number')
    return [
      ['1e400', RAW('1e400'), 'must'],
      ['-1e400', RAW('-1e400'), 'must'],
      ['numeric string', String(v), 'must'],
      ['boolean', true, 'must'],
      ...wrongTypes.map(([l, x]): [string, unknown, 'must'] => [l, x, 'must']),
      ['negative', -1, 'maybe'],
      ['fraction', 1.5, 'maybe'],
      ['1e308', 1e308, 'maybe'],
      ['2^53+1', RAW('9007199254740993'), 'maybe'],
      ['negative zero', RAW('-0'), 'maybe'],
    ];
  if (typeof v === 'boolean')
    return [
      ['string', 'true', 'must'],
      ['number', 1, 'must'],
      ['null', null, 'must'],
    ];
  return [];
}

/** Every node of a JSON value (arrays: their first element only, to stay bounded). */
function nodes(v: Json, path: string[] = []): Array<{ path: string[]; value: Json }> {
  const out = [{ path, value: v }];
  if (Array.isArray(v)) {
    if (v.length > 0) out.push(...nodes(v[0]!, [...path, '0']));
  } else if (v !== null && typeof v === 'object')
    for (const [k, child] of Object.entries(v)) out.push(...nodes(child, [...path, k]));
  return out;
}

function replaceAt(root: Json, path: string[], value: unknown): Json {
  if (path.length === 0) return value as Json;
  const copy = structuredClone(root) as Record<string, unknown>;
  let node = copy;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string, unknown>;
  node[path[path.length - 1]!] = value;
  return copy as Json;
}

const fieldName = (path: string[]): string => (path.length === 0 ? '(body)' : path.join('.'));

/** The hostile variants of one route, built on a valid sample. */
export function hostileVariants(
  op: ApiOperation,
  s: Sample,
  idempotent: boolean,
  /** Methods some route of this path has (HEAD aside): those are not probed as wrong methods. */
  pathMethods: readonly string[] = [op.method],
): Variant[] {
  const out: Variant[] = [];
  const key = (): string => randomUUID();
  const base = (): RawRequest => validRequest(op, s, idempotent ? key() : undefined);

  // Methods the path does not have: 405 (or 404), never a handler.
  for (const method of ['PUT', 'PATCH', 'DELETE'])
    if (!pathMethods.some((m) => m.toUpperCase() === method))
      out.push({ name: `method ${method}`, kind: 'must', req: { ...base(), method } });

  // Path parameters.
  for (const name of Object.keys(s.params ?? {}))
    for (const [label, value] of PATH_VALUES) {
      const params = Object.fromEntries(Object.entries(s.params!).map(([k, v]) => [k, enc(v)]));
      params[name] = value;
      out.push({
        name: `path ${name}: ${label}`,
        kind: 'must',
        req: { ...base(), target: pathOf(op, params) + queryOf(s.query ?? {}) },
      });
    }

  // Query parameters: each declared one in turn, repeated, and an unknown one.
  const path = pathOf(op, Object.fromEntries(Object.entries(s.params ?? {}).map(([k, v]) => [k, enc(v)])));
  for (const [name, schema] of Object.entries(propertiesOf(op.query))) {
    const rest = { ...(s.query ?? {}) };
    delete rest[name];
    for (const [label, value, kind] of queryValues(name, schema))
      out.push({
        name: `query ${name}: ${label}`,
        kind,
        field: name,
        req: { ...base(), target: path + queryOf(rest, { [enc(name)]: value }) },
      });
    const repeated = queryOf(rest, { [enc(name)]: 'a' });
    out.push({
      name: `query ${name}: repeated`,
      kind: 'must',
      field: name,
      req: { ...base(), target: `${path}${repeated}&${enc(name)}=b` },
    });
  }
  out.push({
    name: 'query: unknown parameter with NUL',
    kind: 'must',
    req: { ...base(), target: path + queryOf(s.query ?? {}, { 'zz%00': '1' }) },
  });

  // JSON body: every field with values of the wrong kind, then the raw text.
  if (s.body !== undefined) {
    const body = s.body as Json;
    const withBody = (b: Buffer, ct = 'application/json'): RawRequest => ({
      ...base(),
      headers: { ...base().headers, 'content-type': ct },
      body: b,
    });
    for (const n of nodes(body)) {
      const field = fieldName(n.path);
      for (const [label, value, kind] of leafValues(n.value))
        out.push({
          name: `body ${field}: ${label}`,
          kind,
          field,
          req: withBody(serialize(replaceAt(body, n.path, value))),
        });
      if (n.value !== null && typeof n.value === 'object' && !Array.isArray(n.value)) {
        const add = (k: string, v: unknown): Json => ({
          ...(n.value as Record<string, Json>),
          [k]: v as Json,
        });
        out.push(
          {
            name: `body ${field}: member name with NUL`,
            kind: 'must',
            field,
            req: withBody(serialize(replaceAt(body, n.path, add('a\u0000', 'x')))),
          },
          {
            name: `body ${field}: member name with a lone surrogate`,
            kind: 'must',
            field,
            req: withBody(serialize(replaceAt(body, n.path, add('a\ud800', 'x')))),
          },
          {
            name: `body ${field}: string instead of object`,
            kind: 'must',
            field,
            req: withBody(serialize(replaceAt(body, n.path, 'x'))),
          },
          {
            name: `body ${field}: array instead of object`,
            kind: 'must',
            field,
            req: withBody(serialize(replaceAt(body, n.path, []))),
          },
          {
            name: `body ${field}: unknown member`,
            kind: 'maybe',
            req: withBody(serialize(replaceAt(body, n.path, add('zz_probe', 'x')))),
          },
        );
      }
      if (Array.isArray(n.value) && n.path.length > 0)
        out.push(
          {
            name: `body ${field}: string instead of array`,
            kind: 'must',
            field,
            req: withBody(serialize(replaceAt(body, n.path, 'x'))),
          },
          {
            name: `body ${field}: null instead of array`,
            kind: 'must',
            field,
            req: withBody(serialize(replaceAt(body, n.path, null))),
          },
        );
    }
    const text = JSON.stringify(body);
    // The first string value of the body replaced by raw JSON text (an escape sequence, a control character).
    const firstString = nodes(body).find((n) => typeof n.value === 'string');
    const withFirstString = (raw: Buffer): Buffer => {
      if (firstString === undefined) return Buffer.concat([Buffer.from('{"zz":"'), raw, Buffer.from('"}')]);
      const [head, tail] = JSON.stringify(replaceAt(body, firstString.path, '\u0002')).split('"\\u0002"');
      return Buffer.concat([Buffer.from(`${head}"`), raw, Buffer.from(`"${tail}`)]);
    };
    const badEscape = (escape: string): Buffer => withFirstString(Buffer.from(escape));
    const raws: Array<[string, Buffer, 'must' | 'maybe', string?]> = [
      ['invalid \\u escape', badEscape('\\u12zz'), 'must', '(body)'],
      ['truncated \\u escape', badEscape('\\u00'), 'must', '(body)'],
      ['invalid escape \\x', badEscape('\\x41'), 'must', '(body)'],
      ['raw control character', badEscape('a\u0001b'), 'must', '(body)'],
      ['truncated JSON', Buffer.from(text.slice(0, Math.max(1, text.length - 2))), 'must', '(body)'],
      ['JSON null', Buffer.from('null'), 'must'],
      ['JSON array', Buffer.from('[]'), 'must'],
      ['JSON string', Buffer.from('"x"'), 'must'],
      ['JSON number 1e400', Buffer.from('1e400'), 'must'],
      ['invalid UTF-8 inside a string', withFirstString(Buffer.from([0x61, 0xff, 0x62])), 'must', '(body)'],
      ['UTF-8 encoded surrogate', withFirstString(Buffer.from([0xed, 0xa0, 0x80])), 'must', '(body)'],
      ['overlong UTF-8 NUL', withFirstString(Buffer.from([0xc0, 0x80])), 'must', '(body)'],
      [
        'duplicate members',
        Buffer.from(`${text.slice(0, -1)}${text.length > 2 ? ',' : ''}${text.slice(1)}`),
        'maybe',
      ],
      ['byte order mark', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]), 'maybe'],
      ['empty', Buffer.alloc(0), 'maybe'],
    ];
    for (const [label, bytes, kind, field] of raws)
      out.push({ name: `raw body: ${label}`, kind, field, req: withBody(bytes) });
    out.push(
      {
        name: 'raw body: charset latin1',
        kind: 'must',
        req: withBody(serialize(body), 'application/json; charset=latin1'),
      },
      { name: 'raw body: as text/plain (415)', kind: 'must', req: withBody(serialize(body), 'text/plain') },
    );
  }

  // A JSON body where the route takes none (the public documents and probes read nothing at all).
  if (op.body === undefined && op.authorization !== null)
    for (const [label, text, field] of [
      ['a member', '{"zz_probe":"x"}', 'zz_probe'],
      ['an array', '[1]', '(body)'],
    ] as const)
      out.push({
        name: `body where none is taken: ${label}`,
        kind: 'must',
        field,
        req: {
          ...base(),
          headers: { ...base().headers, 'content-type': 'application/json' },
          body: Buffer.from(text),
        },
      });

  // A raw (non-JSON) body: other bytes than the path names, and the wrong media type.
  if (s.raw !== undefined) {
    const raw = s.raw;
    out.push(
      {
        name: 'raw body: other bytes',
        kind: 'must',
        req: { ...base(), body: Buffer.concat([raw.bytes, Buffer.from([0])]) },
      },
      {
        name: 'raw body: as JSON',
        kind: 'must',
        req: {
          ...base(),
          headers: { ...base().headers, 'content-type': 'application/json' },
          body: Buffer.from('{}'),
        },
      },
      { name: 'raw body: empty', kind: 'must', req: { ...base(), body: Buffer.alloc(0) } },
    );
  }

  // Idempotency-Key on the routes that take one.
  if (idempotent)
    for (const [label, value, kind] of [
      ['over-long', 'k'.repeat(300), 'must'],
      ['control-free but non-ASCII', 'k\xffk', 'must'],
      ['unterminated quote', '"abc', 'must'],
      ['spaces only', '   ', 'must'],
      ['empty', '', 'maybe'],
    ] as const)
      out.push({
        name: `header Idempotency-Key: ${label}`,
        kind,
        field: 'Idempotency-Key',
        req: { ...base(), headers: { ...base().headers, 'idempotency-key': value } },
      });
  return out;
}

// --- transport ------------------------------------------------------------------------------------------

const agent = new Agent({ keepAlive: true, maxSockets: 16 });

/** One request, sent as given (raw path, latin1 header bytes). */
export function send(port: number, req: RawRequest, token?: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...req.headers };
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    if (req.body !== undefined) headers['content-length'] = String(req.body.length);
    const r = request(
      { host: '127.0.0.1', port, method: req.method, path: req.target, headers, agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: String(res.headers['content-type'] ?? ''),
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    r.on('error', reject);
    r.end(req.body);
  });
}

/** Runs `tasks` with at most `limit` at once. */
export async function pool<T>(tasks: ReadonlyArray<() => Promise<T>>, limit: number): Promise<T[]> {
  const results: T[] = new Array<T>(tasks.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}
