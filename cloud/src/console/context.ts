import type { Response } from 'express';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { Action, Authorizer, Resource } from '../auth/authorize.js';
import type { Principal } from '../auth/principal.js';
import type { Database } from '../storage/tables.js';
import type { HtmlValue } from './html.js';
import { layout, type ConsolePage } from './layout.js';
import { consoleSession } from './security.js';
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
 * Whether to *show* a control: the same authorizer (Cedar) the handler will ask again when it is used. Hiding
 * is a courtesy; the handler's requireAllowed is what refuses.
 */
export async function can(
  deps: PageDeps,
  principal: Principal,
  action: Action,
  resource: Resource,
): Promise<boolean> {
  return (await deps.authorizer.authorize(principal, action, resource)).allowed;
}

export function sendPage(
  res: Response,
  deps: PageDeps,
  page: ConsolePage,
  title: string,
  body: HtmlValue,
  status = 200,
): void {
  const s = consoleSession(res);
  res
    .status(status)
    .type('html')
    .send(layout({ title, page, principal: s.principal, csrf: s.csrf, assets: deps.assets, body }));
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
