import type { Response, Router } from 'express';
import { requireAllowed } from '../../api/authenticate.js';
import {
  createRollout,
  listRollouts,
  operateRollout,
  RolloutStateConflict,
  type rolloutViewSchema,
} from '../../api/rollouts.js';
import type { z } from 'zod';
import type { Principal } from '../../auth/principal.js';
import { requestAuthorizer } from '../access.js';
import { can, sendPage, type PageDeps } from '../context.js';
import { html } from '../html.js';
import { fieldMarks, fixableProblem, refusalBox, refusalOf, type Refusal } from '../refusal.js';
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

/** The create form's fields as typed (kept when the API refuses them). */
export interface CreateInput {
  scope: string;
  site: string;
  document: string;
  canary: string;
  waves: string;
}

const EMPTY_INPUT: CreateInput = {
  scope: 'tenant',
  site: '',
  document: '{}',
  canary: '1',
  waves: '10,50,100',
};

/** The create form field an API body path (problem `errors[].path`) names, if any. */
export function formFieldOf(path: string): keyof CreateInput | undefined {
  if (path === 'target.id') return 'site';
  if (path === 'target' || path.startsWith('target.')) return 'scope';
  if (path === 'body' || path.startsWith('body.') || path === '(body)') return 'document';
  if (path === 'spec.canary') return 'canary';
  if (path === 'spec.waves' || path.startsWith('spec.waves.')) return 'waves';
  return undefined;
}

type Field = keyof CreateInput;

/** A refused create or operation; `active`: the tenant's active rollout, when that is the reason. */
interface RolloutRefusal extends Refusal<Field> {
  active?: { id: string; state: string } | undefined;
}

const FIELD_LABELS: Readonly<Record<Field, string>> = {
  scope: 'Target',
  site: 'Site id',
  document: 'Config document',
  canary: 'Canary devices',
  waves: 'Waves',
};

function rolloutRefusalBox(r: RolloutRefusal, id: string) {
  return refusalBox(
    r,
    id,
    FIELD_LABELS,
    r.active
      ? html`<p>
          Active now:
          <a href="/console/rollouts#r-${r.active.id}" data-active-rollout="${r.active.id}"
            >rollout ${r.active.id} (${r.active.state})</a
          >
        </p>`
      : '',
  );
}

function createForm(
  csrf: string,
  refusal: RolloutRefusal | undefined,
  input: CreateInput,
  principal: Principal,
) {
  const [scope, site, document, canary, waves] = (
    ['scope', 'site', 'document', 'canary', 'waves'] as const
  ).map((f) => fieldMarks(refusal, f));
  return html`<section aria-labelledby="new-rollout">
    <h2 id="new-rollout">New rollout</h2>
    ${refusal ? rolloutRefusalBox(refusal, 'create-refused') : ''}
    <form method="post" action="/console/rollouts" class="create">
      ${csrfField(csrf)}
      <label
        >Target
        <select name="scope" ${scope!.attrs}>
          <option value="tenant" ${input.scope === 'site' ? '' : html`selected`}>
            whole tenant (${principal.tenant})
          </option>
          <option value="site" ${input.scope === 'site' ? html`selected` : ''}>one site</option>
        </select>
        ${scope!.note}
      </label>
      <label
        >Site id (for a site target)
        <input name="site" maxlength="63" value="${input.site}" ${site!.attrs} />
        ${site!.note}
      </label>
      <label
        >Config document (JSON)
        <textarea name="document" rows="8" cols="60" required ${document!.attrs}>${input.document}</textarea>
        ${document!.note}
      </label>
      <label
        >Canary devices
        <input name="canary" type="number" min="1" value="${input.canary}" ${canary!.attrs} />
        ${canary!.note}
      </label>
      <label
        >Waves (% cumulative)
        <input name="waves" value="${input.waves}" ${waves!.attrs} />
        ${waves!.note}
      </label>
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
  // The API's functions ask Cedar through this request's decisions (the nav and the controls share them).
  const apiDeps = (res: Response) => ({ ...deps, authorizer: requestAuthorizer(res, deps.authorizer) });
  const mayWrite = (res: Response) =>
    can(res, deps, 'rollouts:write', { type: 'rollouts', tenant: consolePrincipal(res).tenant });

  const render = async (
    res: Response,
    o: { create?: RolloutRefusal; operation?: RolloutRefusal; input?: CreateInput; status?: number } = {},
  ) => {
    const principal = consolePrincipal(res);
    const items = await listRollouts(apiDeps(res), principal, 20);
    const write = await mayWrite(res);
    const csrf = consoleSession(res).csrf;
    const body = html`
      ${o.operation ? rolloutRefusalBox(o.operation, 'operation-refused') : ''}
      <div data-refresh="/console/rollouts/progress" aria-live="polite">${progress(items, write, csrf)}</div>
      ${write ? createForm(csrf, o.create, o.input ?? EMPTY_INPUT, principal) : ''}
    `;
    await sendPage(res, deps, 'rollouts', 'Rollouts', body, o.status);
  };

  /** The API's answer to a refused request, when it is the user's to fix (else undefined: the error page). */
  const refused = (err: unknown, path: string): { refusal: RolloutRefusal; status: number } | undefined => {
    const problem = fixableProblem(err, path);
    if (problem === undefined) return undefined;
    const active = err instanceof RolloutStateConflict ? err.active : undefined;
    return { refusal: { ...refusalOf(problem, formFieldOf), active }, status: problem.status };
  };

  router.get('/rollouts', async (_req, res) => render(res));

  router.get('/rollouts/progress', async (_req, res) => {
    const items = await listRollouts(apiDeps(res), consolePrincipal(res), 20);
    res.type('html').send(progress(items, await mayWrite(res), consoleSession(res).csrf).text);
  });

  router.post('/rollouts', async (req, res) => {
    // createRollout asks this first too (answered from this request's decisions); asked here so that a caller
    // who may not create learns nothing about its input (a 403, audited, before the JSON is read).
    const principal = consolePrincipal(res);
    await requireAllowed(
      apiDeps(res).authorizer,
      deps.log,
      principal,
      'rollouts:write',
      { type: 'rollouts', tenant: principal.tenant },
      deps.audit,
    );
    const f = req.body as Record<string, unknown>;
    const str = (v: unknown) => (typeof v === 'string' ? v : '');
    const input: CreateInput = {
      scope: f.scope === 'site' ? 'site' : 'tenant',
      site: str(f.site),
      document: str(f.document),
      canary: str(f.canary),
      waves: str(f.waves),
    };
    let document: unknown;
    try {
      document = JSON.parse(input.document);
    } catch {
      const detail = 'The config document is not valid JSON.';
      await render(res, {
        create: { detail, fields: { document: 'is not valid JSON' }, other: [] },
        input,
        status: 400,
      });
      return;
    }
    const waves = input.waves.trim() === '' ? undefined : input.waves.split(',').map((w) => Number(w.trim()));
    const body = {
      target: input.scope === 'site' ? { scope: 'site', id: input.site } : { scope: 'tenant' },
      body: document,
      spec: {
        ...(input.canary.trim() !== '' ? { canary: Number(input.canary) } : {}),
        ...(waves ? { waves } : {}),
      },
    };
    try {
      await createRollout(apiDeps(res), principal, body);
    } catch (err) {
      const r = refused(err, req.path);
      if (r === undefined) throw err;
      await render(res, { create: r.refusal, input, status: r.status });
      return;
    }
    res.redirect(303, '/console/rollouts');
  });

  for (const op of OPS)
    router.post(`/rollouts/:id/${op}`, async (req, res) => {
      try {
        await operateRollout(apiDeps(res), consolePrincipal(res), { id: req.params.id }, op, {});
      } catch (err) {
        // E.g. the page was stale: the rollout ended meanwhile (409). Shown above the list.
        const r = refused(err, req.path);
        if (r === undefined) throw err;
        await render(res, { operation: r.refusal, status: r.status });
        return;
      }
      res.redirect(303, '/console/rollouts');
    });
}
