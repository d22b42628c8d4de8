import type { Response } from 'express';
import type { Action, Authorizer, Decision, Resource } from '../auth/authorize.js';
import type { Principal } from '../auth/principal.js';
import type { ConsolePage } from './layout.js';

/** One authorization question: what the handler is about to do, to what. */
export interface Question {
  readonly action: Action;
  readonly resource: Resource;
}

/**
 * The question each page's handler asks before it shows anything; the nav asks the very same one to decide
 * whether to link the page. Which roles pass is Cedar's answer alone (no role list here). `site`: the page's
 * site filter; a site-scoped user defaults to its first site, as the list handlers choose.
 */
export const PAGE_QUESTIONS: Readonly<Record<ConsolePage, (p: Principal, site?: string) => Question>> = {
  fleet: (p, site = p.sites?.[0]) => ({
    action: 'devices:read',
    resource: { type: 'devices', tenant: p.tenant, site },
  }),
  events: (p, site = p.sites?.[0]) => ({
    action: 'events:read',
    resource: { type: 'events', tenant: p.tenant, site },
  }),
  // api/rollouts.ts listRollouts asks this (tenant-wide).
  rollouts: (p) => ({ action: 'rollouts:read', resource: { type: 'rollouts', tenant: p.tenant } }),
  'dead-letters': (p) => ({ action: 'alerts:read', resource: { type: 'alerts', tenant: p.tenant } }),
  webhooks: (p) => ({ action: 'webhooks:read', resource: { type: 'webhooks', tenant: p.tenant } }),
  audit: (p) => ({ action: 'audit:read', resource: { type: 'audit-log', tenant: p.tenant } }),
};

/**
 * The authorizer of one console request: each distinct question goes to the real one (Cedar) once and its
 * answer is reused, so the page's guard, its controls and the nav never ask twice nor disagree within a
 * request. Kept on res.locals: it lives and dies with the request.
 */
export function requestAuthorizer(res: Response, base: Authorizer): Authorizer {
  const locals = res.locals as { consoleDecisions?: Authorizer };
  if (locals.consoleDecisions === undefined) {
    const asked = new Map<string, Promise<Decision>>();
    locals.consoleDecisions = {
      authorize(principal, action, resource) {
        // An absent attribute and an undefined one mean the same ("not loaded"): JSON drops both alike.
        const key = JSON.stringify([principal, action, resource]);
        let d = asked.get(key);
        if (d === undefined) {
          d = base.authorize(principal, action, resource);
          asked.set(key, d);
        }
        return d;
      },
    };
  }
  return locals.consoleDecisions;
}

/** The pages this principal may open, by the pages' own questions (the nav shows these only). */
export async function allowedPages(
  authorizer: Authorizer,
  principal: Principal,
): Promise<ReadonlySet<ConsolePage>> {
  const pages = Object.keys(PAGE_QUESTIONS) as ConsolePage[];
  const answers = await Promise.all(
    pages.map(async (page) => {
      const q = PAGE_QUESTIONS[page](principal);
      return (await authorizer.authorize(principal, q.action, q.resource)).allowed;
    }),
  );
  return new Set(pages.filter((_, i) => answers[i]));
}
