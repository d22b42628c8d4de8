import type { Response, Router } from 'express';
import { requireAllowed } from '../../api/authenticate.js';
import { NotFoundError } from '../../api/errors.js';
import { parseOrThrow } from '../../api/events-query.js';
import { createWebhook, createWebhookBody, webhookPathParams } from '../../integrations/routes.js';
import type { UrlPolicy } from '../../integrations/ssrf.js';
import type { Webhook, WebhookStore } from '../../integrations/store.js';
import { can, nonEmptyQuery, requirePage, sendPage, type PageDeps } from '../context.js';
import { html, type SafeHtml } from '../html.js';
import { fieldMarks, fixableProblem, refusalBox, refusalOf, type Refusal } from '../refusal.js';
import { csrfField, time } from '../layout.js';
import { consolePrincipal, consoleSession } from '../security.js';

/** Deliveries shown per webhook: the API's default. */
export const DELIVERIES_SHOWN = 50;

export interface WebhookPageDeps extends PageDeps {
  webhooks: { store: WebhookStore; policy: UrlPolicy };
}

/** "a, b" form input -> a bounded list (the API body schema checks each item). */
function list(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  const items = v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  return items.length === 0 ? undefined : items;
}

/**
 * GET /console/webhooks (list, and the create form for who may), POST /console/webhooks (the API's
 * createWebhook: URL policy, bound, audit; the answer is a page showing the secret this once, never stored for
 * a reload: no redirect, no-store), GET /console/webhooks/:id (its recent deliveries). The same decisions as the
 * API: `webhooks:read` to see, `webhooks:write` to create (a denied create is audited as `webhook.write`).
 */
type Field = 'url' | 'description' | 'labels' | 'sites' | 'cameras';
const FIELD_LABELS: Readonly<Record<Field, string>> = {
  url: 'URL',
  description: 'Description',
  labels: 'Labels',
  sites: 'Sites',
  cameras: 'Cameras',
};

/** The create form field an API body path names, if any. */
export function webhookFieldOf(path: string): Field | undefined {
  const [head, sub] = path.split('.');
  if (head === 'url' || head === 'description') return head;
  if (head === 'filter' && (sub === 'labels' || sub === 'sites' || sub === 'cameras')) return sub;
  return undefined;
}

/** The create form; after a refusal, with what was typed and the refusal next to its fields. */
function createForm(
  csrf: string,
  input: Partial<Record<Field, string | undefined>>,
  refusal?: Refusal<Field>,
) {
  const m = (f: Field) => fieldMarks(refusal, f);
  const [url, description, labels, sites, cameras] = (
    ['url', 'description', 'labels', 'sites', 'cameras'] as const
  ).map(m);
  return html`<h2>New webhook</h2>
    ${refusal ? refusalBox(refusal, 'create-refused', FIELD_LABELS) : ''}
    <form method="post" action="/console/webhooks" class="create">
      ${csrfField(csrf)}
      <label
        >URL (https)
        <input name="url" type="url" required maxlength="2048" value="${input.url ?? ''}" ${url!.attrs} />
        ${url!.note}</label
      >
      <label
        >Description
        <input name="description" maxlength="500" value="${input.description ?? ''}" ${description!.attrs} />
        ${description!.note}</label
      >
      <label
        >Labels (comma-separated; empty: all)
        <input name="labels" maxlength="2000" value="${input.labels ?? ''}" ${labels!.attrs} />
        ${labels!.note}</label
      >
      <label
        >Sites
        <input name="sites" maxlength="2000" value="${input.sites ?? ''}" ${sites!.attrs} />
        ${sites!.note}</label
      >
      <label
        >Cameras
        <input name="cameras" maxlength="2000" value="${input.cameras ?? ''}" ${cameras!.attrs} />
        ${cameras!.note}</label
      >
      <button type="submit">Create</button>
    </form>`;
}

export function mountWebhookPages(router: Router, deps: WebhookPageDeps): void {
  const listPage = async (
    res: Response,
    top: SafeHtml | string,
    form: { input: Partial<Record<Field, string | undefined>>; refusal?: Refusal<Field> } = { input: {} },
  ): Promise<SafeHtml> => {
    const p = consolePrincipal(res);
    const csrf = consoleSession(res).csrf;
    const hooks = await deps.webhooks.store.list(p.tenant);
    const mayCreate = await can(res, deps, 'webhooks:write', { type: 'webhooks', tenant: p.tenant });
    const row = (w: Webhook) =>
      html`<tr data-webhook="${w.id}">
        <td><a href="/console/webhooks/${w.id}">${w.url}</a></td>
        <td>${w.description ?? ''}</td>
        <td>${w.enabled ? 'enabled' : `disabled: ${w.disabled_reason ?? ''}`}</td>
        <td>${w.created_by}</td>
        <td>${time(w.created_at)}</td>
      </tr>`;
    return html`
      ${top}
      ${
        hooks.length === 0
          ? html`<p class="empty">No webhooks.</p>`
          : html`<div class="table-wrap" tabindex="0" role="region" aria-label="Webhooks">
              <table id="webhooks">
                <thead>
                  <tr>
                    <th scope="col">URL</th>
                    <th scope="col">Description</th>
                    <th scope="col">State</th>
                    <th scope="col">Created by</th>
                    <th scope="col">Created (UTC)</th>
                  </tr>
                </thead>
                <tbody>
                  ${hooks.map(row)}
                </tbody>
              </table>
            </div>`
      }
      ${mayCreate ? createForm(csrf, form.input, form.refusal) : ''}
    `;
  };

  router.get('/webhooks', async (_req, res) => {
    await requirePage(res, deps, 'webhooks');
    await sendPage(res, deps, 'webhooks', 'Webhooks', await listPage(res, ''));
  });

  router.post('/webhooks', async (req, res) => {
    const p = consolePrincipal(res);
    // A denied create is audited (webhook.write).
    await requireAllowed(
      deps.authorizer,
      deps.log,
      p,
      'webhooks:write',
      { type: 'webhooks', tenant: p.tenant },
      deps.audit,
    );
    const raw = nonEmptyQuery(req.body);
    const filter = { labels: list(raw.labels), sites: list(raw.sites), cameras: list(raw.cameras) };
    let hook: Awaited<ReturnType<typeof createWebhook>>;
    try {
      const body = parseOrThrow(
        createWebhookBody,
        {
          url: raw.url ?? '',
          ...(raw.description === undefined ? {} : { description: raw.description }),
          ...(Object.values(filter).some((v) => v !== undefined)
            ? { filter: Object.fromEntries(Object.entries(filter).filter(([, v]) => v !== undefined)) }
            : {}),
        },
        'body',
      );
      hook = await createWebhook({ ...deps.webhooks, audit: deps.audit }, p, body);
    } catch (err) {
      // A refusal the user can fix (a URL the policy refuses, a bad filter): said at the form, input kept.
      const problem = fixableProblem(err, req.path);
      if (problem === undefined) throw err;
      const input = {
        url: raw.url,
        description: raw.description,
        labels: raw.labels,
        sites: raw.sites,
        cameras: raw.cameras,
      };
      const refusal = refusalOf(problem, webhookFieldOf);
      await sendPage(
        res,
        deps,
        'webhooks',
        'Webhooks',
        await listPage(res, '', { input, refusal }),
        problem.status,
      );
      return;
    }
    const secret = html`<section class="secret" role="status" aria-label="New webhook secret">
      <h2>Webhook created</h2>
      <p>
        Its signing secret is shown <strong>this once</strong>: copy it now into the receiver (HMAC-SHA256
        key, RFC 9421 signatures with keyid <code>${hook.id}</code>).
      </p>
      <p><code class="secret-value" data-secret>${hook.secret}</code></p>
    </section>`;
    await sendPage(res, deps, 'webhooks', 'Webhooks', await listPage(res, secret), 201);
  });

  router.get('/webhooks/:id', async (req, res) => {
    const { id } = parseOrThrow(webhookPathParams, { id: req.params.id }, 'path parameters');
    const p = await requirePage(res, deps, 'webhooks');
    const w = await deps.webhooks.store.get(p.tenant, id);
    if (!w) throw new NotFoundError();
    const deliveries = await deps.webhooks.store.listDeliveries(p.tenant, id, DELIVERIES_SHOWN);
    const body = html`
      <p><a href="/console/webhooks">Back to the webhooks</a></p>
      <p>
        ${w.url} · ${w.enabled ? 'enabled' : 'disabled'} · filter:
        ${
          [
            w.filter.labels?.length ? `labels ${w.filter.labels.join(', ')}` : '',
            w.filter.sites?.length ? `sites ${w.filter.sites.join(', ')}` : '',
            w.filter.cameras?.length ? `cameras ${w.filter.cameras.join(', ')}` : '',
          ]
            .filter((s) => s !== '')
            .join('; ') || 'all events'
        }
      </p>
      <h2>Recent deliveries</h2>
      ${
        deliveries.length === 0
          ? html`<p class="empty">No delivery yet.</p>`
          : html`<div class="table-wrap" tabindex="0" role="region" aria-label="Deliveries">
              <table id="deliveries">
                <thead>
                  <tr>
                    <th scope="col">At (UTC)</th>
                    <th scope="col">Event</th>
                    <th scope="col">Attempt</th>
                    <th scope="col">State</th>
                    <th scope="col">HTTP</th>
                    <th scope="col">ms</th>
                    <th scope="col">Error</th>
                  </tr>
                </thead>
                <tbody>
                  ${deliveries.map(
                    (d) =>
                      html`<tr data-delivery="${d.event_id}">
                        <td>${time(d.at)}</td>
                        <td><a href="/console/events/${d.event_id}">${d.event_id}</a></td>
                        <td>${d.attempt}</td>
                        <td>${d.state}</td>
                        <td>${d.http_status === null ? '—' : String(d.http_status)}</td>
                        <td>${d.duration_ms === null ? '—' : String(d.duration_ms)}</td>
                        <td>${d.error ?? ''}</td>
                      </tr>`,
                  )}
                </tbody>
              </table>
            </div>`
      }
    `;
    await sendPage(res, deps, 'webhooks', `Webhook ${w.url}`, body);
  });
}
