import type { Response } from 'express';
import { requireAllowed } from '../api/authenticate.js';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { Action, Authorizer, Resource } from '../auth/authorize.js';
import type { Principal } from '../auth/principal.js';
import type { Database } from '../storage/tables.js';
import { allowedPages, PAGE_QUESTIONS, requestAuthorizer } from './access.js';
import type { HtmlValue } from './html.js';
import { layout, type ConsolePage } from './layout.js';
import { consolePrincipal, consoleSession } from './security.js';
import type { ConsoleAssets } from './static.js';

/** What every page handler needs. */
export interface PageDeps {
  db: Kysely<Database>;
  authorizer: Authorizer;
  log: Logger;
  audit: AuditLog;
  now: () => Date;
  maxPageSize: number;
  offlineAfterSeconds: number;
  assets: ConsoleAssets;
}

/**
 * Whether to *show* a control: the same question (Cedar) the handler asks again when it is used, answered
 * once per request (access.ts requestAuthorizer). Hiding is a courtesy; the handler's requireAllowed refuses.
 */
export async function can(
  res: Response,
  deps: Pick<PageDeps, 'authorizer'>,
  action: Action,
  resource: Resource,
): Promise<boolean> {
  const principal = consolePrincipal(res);
  return (await requestAuthorizer(res, deps.authorizer).authorize(principal, action, resource)).allowed;
}

/**
 * A page's guard: its question (access.ts PAGE_QUESTIONS, the one the nav asks) or a 403. Returns the
 * principal.
 */
export async function requirePage(
  res: Response,
  deps: Pick<PageDeps, 'authorizer' | 'log'>,
  page: ConsolePage,
  site?: string,
): Promise<Principal> {
  const principal = consolePrincipal(res);
  const q = PAGE_QUESTIONS[page](principal, site);
  await requireAllowed(requestAuthorizer(res, deps.authorizer), deps.log, principal, q.action, q.resource);
  return principal;
}

/** The nav of this request's principal: the pages whose question Cedar allows. */
export function navOf(res: Response, deps: Pick<PageDeps, 'authorizer'>): Promise<ReadonlySet<ConsolePage>> {
  return allowedPages(requestAuthorizer(res, deps.authorizer), consolePrincipal(res));
}

export async function sendPage(
  res: Response,
  deps: PageDeps,
  page: ConsolePage,
  title: string,
  body: HtmlValue,
  status = 200,
): Promise<void> {
  const s = consoleSession(res);
  const nav = await navOf(res, deps);
  res
    .status(status)
    .type('html')
    .send(layout({ title, page, principal: s.principal, csrf: s.csrf, nav, assets: deps.assets, body }));
}

/** A query string without its empty fields (blank form inputs), first value of each only. */
export function nonEmptyQuery(query: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    const s: unknown = Array.isArray(v) ? (v as unknown[])[0] : v;
    if (typeof s === 'string' && s.trim() !== '') out[k] = s.trim();
  }
  return out;
}

/** `YYYY-MM-DDTHH:MM` (a datetime-local input, read as UTC) to RFC 3339; anything else is left for the schema. */
export function utcInput(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(v) ? `${v}:00Z` : v;
}
