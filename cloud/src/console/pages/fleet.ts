import type { Router } from 'express';
import { z } from 'zod';
import { DeviceReader, type DeviceView } from '../../api/device-store.js';
import { idParam, parseOrThrow } from '../../api/events-query.js';
import { DEVICE_STATUSES } from '../../fleet/status.js';
import type { CameraSummary } from '../../storage/tables.js';
import { nonEmptyQuery, requirePage, sendPage, type PageDeps } from '../context.js';
import { html } from '../html.js';
import { time } from '../layout.js';
import { consolePrincipal } from '../security.js';

const fleetQuery = z.strictObject({
  site: idParam.optional(),
  status: z.enum(DEVICE_STATUSES).optional(),
  /** Device id prefix. */
  q: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,63}$/, 'letters, digits, - or _')
    .optional(),
});

interface Signals {
  last_health: string | null;
  mean_fps: number | null;
  mean_inference_ms: number | null;
  events_per_minute: number | null;
  last_cameras: CameraSummary[] | null;
}

const num = (v: number | null, digits: number): string => (v === null ? '—' : v.toFixed(digits));

/** Each camera of the last heartbeat: state, fps, inference p50 (and its last error, if any). */
export function cameras(list: readonly CameraSummary[] | null) {
  if (list === null || list.length === 0) return html`<span class="muted">—</span>`;
  return html`<ul class="cameras">
    ${list.map(
      (c) =>
        html`<li data-camera="${c.id}">
          <strong>${c.id}</strong> <span class="cam-${c.state}">${c.state}</span> ${c.fps.toFixed(1)} fps,
          ${c.inference_ms_p50.toFixed(1)}
          ms${c.last_error ? html` <span class="error">${c.last_error}</span>` : ''}
        </li>`,
    )}
  </ul>`;
}

/**
 * GET /console: the fleet, sites -> devices, with what the last heartbeat said. Devices are read like
 * GET /v1/devices (same reader, same `devices:read` decision; a site-scoped user sees one of its sites).
 */
export function mountFleetPage(router: Router, deps: PageDeps): void {
  const devices = new DeviceReader(deps.db, deps.offlineAfterSeconds, deps.now);
  router.get('/', async (req, res) => {
    const principal = consolePrincipal(res);
    const q = parseOrThrow(fleetQuery, nonEmptyQuery(req.query), 'query parameters');
    const site = q.site ?? principal.sites?.[0];
    await requirePage(res, deps, 'fleet', site);
    const limit = deps.maxPageSize;
    const page = await devices.list(principal.tenant, { site, status: q.status, limit, idPrefix: q.q });
    const ids = page.items.map((d) => d.id);
    const signals = new Map<string, Signals>();
    if (ids.length > 0)
      for (const r of await deps.db
        .selectFrom('devices')
        .select(['id', 'last_health', 'mean_fps', 'mean_inference_ms', 'events_per_minute', 'last_cameras'])
        .where('tenant_id', '=', principal.tenant)
        .where('id', 'in', ids)
        .execute())
        signals.set(r.id, r);
    const bySite = new Map<string, DeviceView[]>();
    for (const d of page.items) {
      const k = d.site_id ?? '(no site)';
      bySite.set(k, [...(bySite.get(k) ?? []), d]);
    }
    const online = page.items.filter((d) => d.status === 'online').length;
    const body = html`
      <form method="get" action="/console" class="filters" role="search" aria-label="Filter devices">
        <label>Search device <input name="q" value="${q.q ?? ''}" maxlength="63" /></label>
        <label
          >Site
          ${
            principal.sites === undefined
              ? html`<input name="site" value="${q.site ?? ''}" maxlength="63" />`
              : html`<select name="site">
                  ${principal.sites.map((s) => html`<option ${s === site ? html`selected` : ''}>${s}</option>`)}
                </select>`
          }
        </label>
        <label
          >Status
          <select name="status">
            <option value="">any</option>
            ${DEVICE_STATUSES.map((s) => html`<option ${s === q.status ? html`selected` : ''}>${s}</option>`)}
          </select>
        </label>
        <button type="submit">Filter</button>
      </form>
      <p class="summary">
        ${page.items.length} devices shown, ${online} online${page.next ? ' (first page)' : ''}.
      </p>
      ${[...bySite.entries()].map(
        ([siteId, list]) => html`
          <section aria-labelledby="site-${siteId}">
            <h2 id="site-${siteId}">Site ${siteId}</h2>
            <div class="table-wrap" tabindex="0" role="region" aria-label="Devices of site ${siteId}">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Device</th>
                    <th scope="col">Status</th>
                    <th scope="col">Last heartbeat</th>
                    <th scope="col">Health</th>
                    <th scope="col">Mean fps</th>
                    <th scope="col">Inference p50 (ms)</th>
                    <th scope="col">Events/min</th>
                    <th scope="col">Cameras</th>
                    <th scope="col">Config</th>
                    <th scope="col">Agent</th>
                  </tr>
                </thead>
                <tbody>
                  ${list.map((d) => {
                    const s = signals.get(d.id);
                    return html`<tr data-device="${d.id}">
                      <th scope="row"><a href="/console/devices/${d.id}">${d.id}</a></th>
                      <td><span class="status status-${d.status}">${d.status}</span></td>
                      <td>${time(d.last_seen_at)}</td>
                      <td>${s?.last_health ?? '—'}</td>
                      <td>${num(s?.mean_fps ?? null, 1)}</td>
                      <td>${num(s?.mean_inference_ms ?? null, 1)}</td>
                      <td>${num(s?.events_per_minute ?? null, 1)}</td>
                      <td>${cameras(s?.last_cameras ?? null)}</td>
                      <td>${d.config_version ?? '—'}</td>
                      <td>${d.agent_version ?? '—'}</td>
                    </tr>`;
                  })}
                </tbody>
              </table>
            </div>
          </section>
        `,
      )}
      ${page.items.length === 0 ? html`<p>No device matches.</p>` : ''}
    `;
    await sendPage(res, deps, 'fleet', 'Fleet', body);
  });
}
