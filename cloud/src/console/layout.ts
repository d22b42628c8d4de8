import type { Principal } from '../auth/principal.js';
import { html, type HtmlValue, type SafeHtml } from './html.js';

export type ConsolePage = 'fleet' | 'events' | 'rollouts' | 'dead-letters' | 'webhooks' | 'audit';

const NAV: ReadonlyArray<{ page: ConsolePage; href: string; label: string }> = [
  { page: 'fleet', href: '/console', label: 'Fleet' },
  { page: 'events', href: '/console/events', label: 'Events' },
  { page: 'rollouts', href: '/console/rollouts', label: 'Rollouts' },
  { page: 'dead-letters', href: '/console/dead-letters', label: 'Dead letters' },
  { page: 'webhooks', href: '/console/webhooks', label: 'Webhooks' },
  { page: 'audit', href: '/console/audit', label: 'Audit log' },
];

export interface LayoutOptions {
  title: string;
  page: ConsolePage | undefined;
  principal: Principal | undefined;
  /** The session's CSRF token: the logout form needs it. */
  csrf: string | undefined;
  /**
   * The pages the principal may open (access.ts allowedPages: each page's own Cedar question); the nav links
   * only these. Hiding is a courtesy: each handler asks again.
   */
  nav: ReadonlySet<ConsolePage>;
  /** Versioned asset URLs (static.ts). */
  assets: { script: string; style: string };
  body: HtmlValue;
}

/** A hidden field carrying the session's CSRF token; every form that changes something has one. */
export function csrfField(csrf: string): SafeHtml {
  return html`<input type="hidden" name="_csrf" value="${csrf}" />`;
}

/** The page shell: no inline script or style anywhere (the CSP would refuse them). */
export function layout(o: LayoutOptions): string {
  const nav = o.principal
    ? html`<nav aria-label="Console">
        <ul>
          ${NAV.filter((n) => o.nav.has(n.page)).map(
            (n) =>
              html`<li>
                <a href="${n.href}" ${n.page === o.page ? html`aria-current="page"` : ''}>${n.label}</a>
              </li>`,
          )}
        </ul>
        <form method="post" action="/console/logout" class="logout">
          ${o.csrf === undefined ? '' : csrfField(o.csrf)}
          <span class="who"
            >${o.principal.subject} · ${o.principal.tenant} · ${o.principal.roles.join(', ')}</span
          >
          <button type="submit">Log out</button>
        </form>
      </nav>`
    : '';
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${o.title} · Vigil console</title>
        <link rel="stylesheet" href="${o.assets.style}" />
        <script type="module" src="${o.assets.script}"></script>
      </head>
      <body>
        <header><a class="brand" href="/console">Vigil</a>${nav}</header>
        <main id="main">
          <h1>${o.title}</h1>
          ${o.body}
        </main>
      </body>
    </html>`.text;
}

/** Short UTC time for tables (ISO, seconds). */
export function time(d: Date | string | null): string {
  if (d === null) return '—';
  const iso = typeof d === 'string' ? d : d.toISOString();
  return `${iso.slice(0, 19).replace('T', ' ')}Z`;
}
