import type { Router } from 'express';
import { ValidationError } from '../../api/errors.js';
import { createRollout, listRollouts, operateRollout, type rolloutViewSchema } from '../../api/rollouts.js';
import type { z } from 'zod';
import type { Principal } from '../../auth/principal.js';
import { can, sendPage, type PageDeps } from '../context.js';
import { html } from '../html.js';
import { csrfField, time } from '../layout.js';
import { consolePrincipal, consoleSession } from '../security.js';

type RolloutView = z.output<typeof rolloutViewSchema>;
const OPS = ['pause', 'resume', 'abort'] as const;
const ALLOWED_OPS: Readonly<Record<string, readonly (typeof OPS)[number][]>> = {
  pending: ['pause', 'abort'],
  running: ['pause', 'abort'],
  paused: ['resume', 'abort'],
};

/** The live part of the page: console.js re-fetches it every 2 s (data-refresh) while a rollout is active. */
function progress(items: readonly RolloutView[], write: boolean, csrf: string) {
  if (items.length === 0) return html`<p>No rollout yet.</p>`;
  return html`${items.map(
    (r) =>
      html`<article class="rollout" data-rollout="${r.id}" aria-labelledby="r-${r.id}">
        <h2 id="r-${r.id}">
          Rollout to ${r.target.scope} ${r.target.id}:
          <span class="state" data-state="${r.state}">${r.state}</span>
        </h2>
        <p>
          ${r.devices} devices · created ${time(r.created_at)} by ${r.created_by} · wave ${r.current_wave}
          ${r.abort_reason ? html` · ${r.abort_reason}` : ''}
        </p>
        <div class="table-wrap" tabindex="0" role="region" aria-label="Waves of rollout ${r.id}">
          <table>
            <thead>
              <tr>
                <th scope="col">Wave</th>
                <th scope="col">Devices</th>
                <th scope="col">Applied</th>
                <th scope="col">Pending</th>
                <th scope="col">Failed</th>
                <th scope="col">Rolled back</th>
              </tr>
            </thead>
            <tbody>
              ${r.waves.map(
                (w) =>
                  html`<tr>
                    <th scope="row">${w.label}</th>
                    <td>${w.devices}</td>
                    <td>${w.applied}</td>
                    <td>${w.pending}</td>
                    <td>${w.failed}</td>
                    <td>${w.rolled_back}</td>
                  </tr>`,
              )}
            </tbody>
          </table>
        </div>
        ${
          write
            ? html`<div class="actions">
                ${(ALLOWED_OPS[r.state] ?? []).map(
                  (op) =>
                    html`<form
                      method="post"
                      action="/console/rollouts/${r.id}/${op}"
                      ${op === 'abort' ? html`data-confirm="Abort this rollout? Devices keep what they applied; nothing further is issued."` : ''}
                    >
                      ${csrfField(csrf)}<button type="submit" class="op-${op}">
                        ${op[0]!.toUpperCase() + op.slice(1)}
                      </button>
                    </form>`,
                )}
              </div>`
            : ''
        }
      </article>`,
  )}`;
}

function createForm(csrf: string, error: string | undefined, document: string, principal: Principal) {
  return html`<section aria-labelledby="new-rollout">
    <h2 id="new-rollout">New rollout</h2>
    ${error ? html`<p role="alert" class="error">${error}</p>` : ''}
    <form method="post" action="/console/rollouts" class="create">
      ${csrfField(csrf)}
      <label
        >Target
        <select name="scope">
          <option value="tenant">whole tenant (${principal.tenant})</option>
          <option value="site">one site</option>
        </select>
      </label>
      <label>Site id (for a site target) <input name="site" maxlength="63" /></label>
      <label
        >Config document (JSON)
        <textarea name="document" rows="8" cols="60" required>${document}</textarea>
      </label>
      <label>Canary devices <input name="canary" type="number" min="1" value="1" /></label>
      <label>Waves (% cumulative) <input name="waves" value="10,50,100" /></label>
      <button type="submit">Start rollout</button>
    </form>
  </section>`;
}

/**
 * GET /console/rollouts (list, live progress, create form), POST /console/rollouts, POST
 * /console/rollouts/:id/{pause,resume,abort}: the API's own functions (api/rollouts.ts), so the same
 * `rollouts:read`/`rollouts:write` decisions, checks and audit entries.
 */
export function mountRolloutPages(router: Router, deps: PageDeps): void {
  const render = async (
    res: Parameters<Parameters<Router['get']>[1]>[1],
    error?: string,
    document = '{}',
    status = 200,
  ) => {
    const principal = consolePrincipal(res);
    const items = await listRollouts(deps, principal, 20);
    const write = await can(deps, principal, 'rollouts:write', {
      type: 'rollouts',
      tenant: principal.tenant,
    });
    const csrf = consoleSession(res).csrf;
    const body = html`
      <div data-refresh="/console/rollouts/progress" aria-live="polite">${progress(items, write, csrf)}</div>
      ${write ? createForm(csrf, error, document, principal) : ''}
    `;
    sendPage(res, deps, 'rollouts', 'Rollouts', body, status);
  };

  router.get('/rollouts', async (_req, res) => render(res));

  router.get('/rollouts/progress', async (_req, res) => {
    const principal = consolePrincipal(res);
    const items = await listRollouts(deps, principal, 20);
    const write = await can(deps, principal, 'rollouts:write', {
      type: 'rollouts',
      tenant: principal.tenant,
    });
    res.type('html').send(progress(items, write, consoleSession(res).csrf).text);
  });

  router.post('/rollouts', async (req, res) => {
    const f = req.body as Record<string, unknown>;
    const text = typeof f.document === 'string' ? f.document : '';
    let document: unknown;
    try {
      document = JSON.parse(text);
    } catch {
      await render(res, 'The config document is not valid JSON.', text, 400);
      return;
    }
    const waves = typeof f.waves === 'string' ? f.waves.split(',').map((w) => Number(w.trim())) : undefined;
    const body = {
      target: f.scope === 'site' ? { scope: 'site', id: f.site } : { scope: 'tenant' },
      body: document,
      spec: {
        ...(typeof f.canary === 'string' && f.canary !== '' ? { canary: Number(f.canary) } : {}),
        ...(waves ? { waves } : {}),
      },
    };
    try {
      await createRollout(deps, consolePrincipal(res), body);
    } catch (err) {
      if (!(err instanceof ValidationError) && (err as { code?: string }).code !== 'ROLLOUT_STATE_CONFLICT')
        throw err;
      const issues =
        err instanceof ValidationError ? err.issues.map((i) => `${i.path}: ${i.message}`).join('; ') : '';
      await render(
        res,
        `${(err as Error).message} ${issues}`.trim(),
        text,
        err instanceof ValidationError ? 400 : 409,
      );
      return;
    }
    res.redirect(303, '/console/rollouts');
  });

  for (const op of OPS)
    router.post(`/rollouts/:id/${op}`, async (req, res) => {
      await operateRollout(deps, consolePrincipal(res), { id: req.params.id }, op, {});
      res.redirect(303, '/console/rollouts');
    });
}
