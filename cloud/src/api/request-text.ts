import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import { HostileTextError, type FieldIssue } from './errors.js';

/*
 * Text the API refuses wherever it appears in a request, before any handler or schema sees it: in path
 * parameters, query parameters, and every string and member name of a JSON body (how deep does not matter).
 *
 *   NUL (U+0000)          PostgreSQL stores neither it in text nor \u0000 in jsonb: it would fail the query (a
 *                         500), and elsewhere it truncates strings in C libraries, logs and terminals.
 *   an unpaired surrogate not Unicode: the driver silently rewrites it to U+FFFD in text (a stored value
 *                         differing from the one accepted) and jsonb refuses it (a 500).
 *   a non-finite number   JSON like 1e400 parses to Infinity, which JSON cannot write back (idempotency
 *                         fingerprints, audit details, jsonb).
 *   bytes that are not    a body that is not UTF-8 (requireUtf8Body, the JSON parser's verify hook) or a query
 *   UTF-8                 component whose percent-encoding is not (%FF, %ED%A0%80): the decoders would replace
 *                         them with U+FFFD, so what is stored or searched would not be what was sent.
 *
 * The router puts this check in front of every route of the registry (api/router.ts), so a new route, and a
 * new string field of an existing one, get it without anyone remembering: zod schemas only add their own rules.
 */

/** Unpaired UTF-16 surrogates: a high one not followed by a low one, or a low one without a high one before. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export const NUL_MESSAGE = 'must not contain NUL (U+0000)';
export const SURROGATE_MESSAGE = 'must be valid Unicode (it holds an unpaired surrogate, e.g. \\uD800)';
export const NON_FINITE_MESSAGE = 'is a number too large to represent';
export const ENCODING_MESSAGE = 'is not valid percent-encoded UTF-8';

/** Most issues one request reports (a body may hold thousands of bad strings). */
const MAX_ISSUES = 20;

/** Why `s` is refused, or null. */
export function textProblem(s: string): string | null {
  if (s.includes('\u0000')) return NUL_MESSAGE;
  if (LONE_SURROGATE.test(s)) return SURROGATE_MESSAGE;
  return null;
}

/**
 * Every refused string, member name and number in `value` (iterative: no recursion on hostile input), named by
 * dotted path under `root` (`(body)` for the body itself). A bad member name is reported on its object, never
 * echoed.
 */
export function hostileTextIssues(value: unknown, root: string[] = []): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const name = (path: string[]): string => (path.length === 0 ? '(body)' : path.join('.'));
  const stack: Array<{ v: unknown; path: string[] }> = [{ v: value, path: root }];
  while (stack.length > 0 && issues.length < MAX_ISSUES) {
    const { v, path } = stack.pop()!;
    if (typeof v === 'string') {
      const problem = textProblem(v);
      if (problem) issues.push({ path: name(path), message: problem });
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) issues.push({ path: name(path), message: NON_FINITE_MESSAGE });
    } else if (Array.isArray(v)) {
      v.forEach((child, i) => stack.push({ v: child, path: [...path, String(i)] }));
    } else if (v !== null && typeof v === 'object') {
      for (const [k, child] of Object.entries(v)) {
        const problem = textProblem(k);
        if (problem) issues.push({ path: name(path), message: `has a member name that ${problem}` });
        else stack.push({ v: child, path: [...path, k] });
      }
    }
  }
  return issues;
}

/** The JSON body parser's `verify` hook: a body that is not UTF-8 is a 400 naming `(body)` (api/problem.ts). */
export function requireUtf8Body(_req: IncomingMessage, _res: unknown, body: Buffer): void {
  if (!isUtf8(body))
    throw Object.assign(new Error('The request body is not valid UTF-8.'), {
      status: 400,
      type: 'encoding.invalid',
    });
}

/** Query components (names and values) of `url` whose percent-encoding is not UTF-8 (the parser hides them). */
export function undecodableQuery(url: string): FieldIssue[] {
  const q = url.indexOf('?');
  if (q === -1) return [];
  const decode = (s: string): string | null => {
    try {
      return decodeURIComponent(s.replaceAll('+', ' '));
    } catch {
      return null;
    }
  };
  const issues: FieldIssue[] = [];
  for (const part of url.slice(q + 1).split('&')) {
    const eq = part.indexOf('=');
    const name = decode(eq === -1 ? part : part.slice(0, eq));
    if (name === null)
      issues.push({ path: '(query parameters)', message: `has a parameter name that ${ENCODING_MESSAGE}` });
    else if (eq !== -1 && decode(part.slice(eq + 1)) === null)
      issues.push({ path: name, message: ENCODING_MESSAGE });
  }
  return issues;
}

/** 400 for a request with refused text in its path parameters, query or body (see above). */
export const rejectHostileText: RequestHandler = (req, _res, next) => {
  const issues: FieldIssue[] = undecodableQuery(req.originalUrl);
  // Path and query values are strings (or arrays of them); their names come from the route and the client.
  for (const [where, values] of [
    ['path parameters', req.params as Record<string, unknown>],
    ['query parameters', req.query as Record<string, unknown>],
  ] as const)
    for (const [k, v] of Object.entries(values ?? {})) {
      const keyProblem = textProblem(k);
      if (keyProblem) {
        issues.push({ path: `(${where})`, message: `has a parameter name that ${keyProblem}` });
        continue;
      }
      for (const s of Array.isArray(v) ? v : [v])
        if (typeof s === 'string') {
          const problem = textProblem(s);
          if (problem) issues.push({ path: k, message: problem });
        }
    }
  if (req.body !== undefined) issues.push(...hostileTextIssues(req.body));
  next(issues.length === 0 ? undefined : new HostileTextError(issues.slice(0, MAX_ISSUES)));
};
