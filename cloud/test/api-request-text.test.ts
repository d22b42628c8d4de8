import { describe, expect, it } from 'vitest';
import { decodeDeviceCursor, listDevicesQuerySchema } from '../src/api/devices-query.js';
import type { ValidationError } from '../src/api/errors.js';
import { InvalidCursorError } from '../src/api/errors.js';
import { decodeCursor, encodeCursor, listEventsQuerySchema, parseOrThrow } from '../src/api/events-query.js';
import { toProblem } from '../src/api/problem.js';
import {
  ENCODING_MESSAGE,
  hostileTextIssues,
  NON_FINITE_MESSAGE,
  NUL_MESSAGE,
  requireUtf8Body,
  SURROGATE_MESSAGE,
  undecodableQuery,
} from '../src/api/request-text.js';
import { decodeSeqCursor, listAuditQuerySchema } from '../src/audit/routes.js';
import { createBody } from '../src/api/enrollment-tokens.js';

// Finding 6 of issue 12: hostile strings reached PostgreSQL and came back as 500s. The request layer refuses
// them (api/request-text.ts) and cursors are checked as the database will read them; the API probe
// (security-api-probe.test.ts) proves it on every route, these pin the pure pieces.
const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
const EVENT_ID = '0190a6e0-0000-7000-8000-000000000000';

describe('hostile text in requests', () => {
  it('names every NUL, unpaired surrogate and non-finite number, however deep', () => {
    const body = {
      note: 'a\u0000b',
      cameras: [{ zones: [{ name: 'x\ud800' }] }],
      attributes: { ok: '😀 é', lone: '\udc00' },
      spec: { canary: Infinity },
    };
    const issues = hostileTextIssues(body);
    expect(new Map(issues.map((i) => [i.path, i.message]))).toEqual(
      new Map([
        ['note', NUL_MESSAGE],
        ['cameras.0.zones.0.name', SURROGATE_MESSAGE],
        ['attributes.lone', SURROGATE_MESSAGE],
        ['spec.canary', NON_FINITE_MESSAGE],
      ]),
    );
  });

  it('reports a bad member name on its object without echoing it', () => {
    expect(hostileTextIssues({ attributes: { 'a\u0000': 'x' } })).toEqual([
      { path: 'attributes', message: `has a member name that ${NUL_MESSAGE}` },
    ]);
    expect(hostileTextIssues({ '\ud800': 1 })).toEqual([
      { path: '(body)', message: `has a member name that ${SURROGATE_MESSAGE}` },
    ]);
  });

  it('accepts well-formed text, paired surrogates included, and bounds what it reports', () => {
    expect(hostileTextIssues({ a: ['😀', 'ok', 1, null, true], b: { c: 'd' } })).toEqual([]);
    expect(hostileTextIssues(Array.from({ length: 1000 }, () => '\u0000'))).toHaveLength(20);
  });
});

describe('bytes that are not UTF-8', () => {
  it('names query components whose percent-encoding is not UTF-8 (the parser would make them U+FFFD)', () => {
    expect(undecodableQuery('/v1/events?label=person&camera=caf%C3%A9+1')).toEqual([]);
    expect(undecodableQuery('/v1/events?label=a%FFb&device=%ED%A0%80&camera=100%')).toEqual([
      { path: 'label', message: ENCODING_MESSAGE },
      { path: 'device', message: ENCODING_MESSAGE },
      { path: 'camera', message: ENCODING_MESSAGE },
    ]);
    expect(undecodableQuery('/v1/events?%C0%80=1')).toEqual([
      { path: '(query parameters)', message: `has a parameter name that ${ENCODING_MESSAGE}` },
    ]);
  });

  it('refuses a body that is not UTF-8 as a 400 naming (body)', () => {
    const req = {} as never;
    expect(() => requireUtf8Body(req, {}, Buffer.from('{"note":"café 😀"}'))).not.toThrow();
    let err: unknown;
    try {
      requireUtf8Body(req, {}, Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc0, 0x80, 0x22, 0x7d]));
    } catch (e) {
      err = e;
    }
    // What body-parser makes of a verify error (http-errors keeps the status and type).
    expect(toProblem(err).problem).toMatchObject({ status: 400, errors: [{ path: '(body)' }] });
  });
});

describe('forged cursors', () => {
  it('refuses event cursors whose time PostgreSQL would refuse or move', () => {
    const at = (occurred_at: string): string => b64({ occurred_at, event_id: EVENT_ID });
    expect(decodeCursor(at('2026-03-01T12:00:00.123456Z'))).toEqual({
      occurredAt: '2026-03-01T12:00:00.123456Z',
      eventId: EVENT_ID,
    });
    for (const bad of [
      '0000-01-01T00:00:00.000000Z', // no year 0 in PostgreSQL
      '2026-02-31T00:00:00.000000Z', // JavaScript reads it as 3 March
      '2026-01-01T24:00:00.000000Z', // PostgreSQL reads it as the next day
      '2026-13-01T00:00:00.000000Z',
      '2026-01-01T00:00:60.000000Z',
    ])
      expect(decodeCursor(at(bad)), bad).toBeNull();
    expect(
      decodeCursor(encodeCursor({ occurredAt: '2026-01-01T00:00:00.000000Z', eventId: 'x' })),
    ).toBeNull();
  });

  it('refuses audit cursors beyond bigint and device cursors with bad ids', () => {
    expect(decodeSeqCursor('9223372036854775807')).toBe('9223372036854775807');
    expect(decodeSeqCursor('9223372036854775808')).toBeNull();
    expect(decodeSeqCursor('9999999999999999999')).toBeNull();
    expect(decodeDeviceCursor(b64({ id: 'gw\u0000' }))).toBeNull();
    expect(decodeDeviceCursor(b64({ id: '../x' }))).toBeNull();
  });

  it('answers a forged cursor with a 400 invalid-cursor naming it, on every list', () => {
    const lists = [listEventsQuerySchema(50), listDevicesQuerySchema(50), listAuditQuerySchema(50)];
    for (const schema of lists) {
      let err: unknown;
      try {
        parseOrThrow(schema, { cursor: '9999999999999999999' }, 'query parameters');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InvalidCursorError);
      const p = toProblem(err).problem;
      expect(p).toMatchObject({ status: 400, type: 'urn:vigil:problem:invalid-cursor' });
      expect(p.errors?.map((e) => e.path)).toEqual(['cursor']);
    }
  });
});

describe('problems name the field the same way everywhere', () => {
  it('names the body when it is not JSON, and the path when it cannot be decoded', () => {
    const parse = Object.assign(new SyntaxError('Bad escaped character'), {
      type: 'entity.parse.failed',
      status: 400,
      expose: true,
    });
    expect(toProblem(parse).problem).toMatchObject({ status: 400, errors: [{ path: '(body)' }] });
    const decode = Object.assign(new URIError("Failed to decode param '%FF'"), { status: 400 });
    expect(toProblem(decode).problem).toMatchObject({ status: 400, errors: [{ path: '(path)' }] });
  });

  it('names an unknown body member with its object’s path, and the body itself as (body)', () => {
    const err = (input: unknown): ValidationError => {
      try {
        parseOrThrow(createBody, input, 'body');
      } catch (e) {
        return e as ValidationError;
      }
      throw new Error('parsed');
    };
    expect(err([]).issues.map((i) => i.path)).toEqual(['(body)']);
    expect(err({ site_id: 'hq', x: 1 }).issues.map((i) => i.path)).toEqual(['x']);
    expect(err({ site_id: 'hq', note: 1 }).issues[0]).toMatchObject({ path: 'note' });
  });
});
