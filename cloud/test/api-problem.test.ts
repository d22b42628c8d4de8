import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MethodNotAllowedError, ValidationError } from '../src/api/errors.js';
import { createHttpApp } from '../src/api/http.js';
import { toProblem } from '../src/api/problem.js';
import { AccessDeniedError } from '../src/auth/errors.js';
import { VigilError } from '../src/lib/errors.js';

// The one mapping from errors to RFC 9457 problems; pure, so most of it is checked without a server.
describe('problem details mapping', () => {
  it('maps VigilError codes to statuses, types and titles', () => {
    expect(toProblem(new ValidationError([{ path: 'limit', message: 'too big' }]), '/v1/x').problem).toEqual({
      type: 'urn:vigil:problem:invalid-request',
      title: 'Invalid request',
      status: 400,
      detail: 'The request has invalid parameters.',
      instance: '/v1/x',
      errors: [{ path: 'limit', message: 'too big' }],
    });
    expect(toProblem(new AccessDeniedError('no')).problem).toMatchObject({ status: 403, detail: 'no' });
    const m = toProblem(new MethodNotAllowedError(['GET', 'HEAD']));
    expect([m.problem.status, m.headers.Allow]).toEqual([405, 'GET, HEAD']);
    const u = toProblem(new VigilError('UNAVAILABLE', 'pool exhausted at 10.0.0.3', true));
    expect([u.problem.status, u.problem.detail, u.headers['Retry-After'], u.internal]).toEqual([
      503,
      'Please retry later.',
      '5',
      true,
    ]);
  });

  it('turns anything unknown into a 500 that reveals nothing', () => {
    for (const err of [
      new Error('password=hunter2'),
      new VigilError('WEIRD', 'password=hunter2'),
      'x',
      null,
    ]) {
      const p = toProblem(err);
      expect(p.problem).toEqual({
        type: 'urn:vigil:problem:internal',
        title: 'Internal server error',
        status: 500,
        detail: 'An unexpected error occurred.',
      });
      expect(p.internal).toBe(true);
    }
  });

  it('maps body-parser errors to 413/400/415', () => {
    const bp = (type: string, status: number) =>
      Object.assign(new Error(type), { type, status, expose: true });
    expect(toProblem(bp('entity.too.large', 413)).problem.status).toBe(413);
    expect(toProblem(bp('entity.parse.failed', 400)).problem.status).toBe(400);
    expect(toProblem(bp('encoding.unsupported', 415)).problem.status).toBe(415);
  });
});

describe('createHttpApp error handling', () => {
  let server: Server;
  const logged: unknown[] = [];
  beforeAll(async () => {
    const log = pino({ level: 'error' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    const app = createHttpApp(new Registry(), [], {
      log,
      mounts: [
        {
          path: '/boom',
          handler: () => {
            throw new Error('connect ECONNREFUSED 10.1.2.3:5432 password=hunter2');
          },
        },
      ],
    });
    server = await new Promise<Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('answers 500 problem+json without internals and logs the error', async () => {
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/boom?x=1`);
    expect(res.status).toBe(500);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const text = await res.text();
    expect(text).not.toMatch(/hunter2|ECONNREFUSED|10\.1\.2\.3|at /);
    expect(JSON.parse(text)).toMatchObject({ status: 500, instance: '/boom' });
    expect(logged).toEqual([
      expect.objectContaining({
        msg: 'request failed',
        path: '/boom',
        err: expect.objectContaining({ message: expect.stringContaining('hunter2') as unknown }) as unknown,
      }),
    ]);
  });
});
