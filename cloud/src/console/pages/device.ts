import type { Router } from 'express';
import { requireAllowed, requireVisible } from '../../api/authenticate.js';
import { DeviceReader } from '../../api/device-store.js';
import { devicePathParams } from '../../api/devices-query.js';
import { revokeDevice } from '../../api/devices.js';
import { NotFoundError } from '../../api/errors.js';
import { EventReader } from '../../api/event-store.js';
import { parseOrThrow } from '../../api/events-query.js';
import type { DeviceRevoker } from '../../fleet/revocation.js';
import { requestAuthorizer } from '../access.js';
import { can, sendPage, type PageDeps } from '../context.js';
import { html } from '../html.js';
import { csrfField, time } from '../layout.js';
import { consolePrincipal, consoleSession } from '../security.js';
import { cameras } from './fleet.js';
import { eventRow, viewableMedia } from './events.js';

/**
 * GET /console/devices/:id (cameras of the last heartbeat, recent events, certificates) and POST
 * /console/devices/:id/revoke (with a reason and a confirmation): read like GET /v1/devices/{id} (both
 * `devices:read` questions), revoked by the API's own revokeDevice (both `devices:revoke` questions, audited).
 */
export function mountDevicePage(router: Router, deps: PageDeps & { revoker: DeviceRevoker }): void {
  const devices = new DeviceReader(deps.db, deps.offlineAfterSeconds, deps.now);
  const events = new EventReader(deps.db, { now: deps.now });

  router.get('/devices/:id', async (req, res) => {
    const principal = consolePrincipal(res);
    const { id } = parseOrThrow(devicePathParams, req.params, 'path parameters');
    await requireAllowed(requestAuthorizer(res, deps.authorizer), deps.log, principal, 'devices:read', {
      type: 'device',
      tenant: principal.tenant,
      id,
    });
    const d = await devices.get(principal.tenant, id);
    if (d === null) throw new NotFoundError();
    const site = d.site_id;
    await requireVisible(requestAuthorizer(res, deps.authorizer), deps.log, principal, 'devices:read', {
      type: 'device',
      tenant: principal.tenant,
      id,
      site,
    });
    const extra = await deps.db
      .selectFrom('devices')
      .select(['last_health', 'last_cameras'])
      .where('tenant_id', '=', principal.tenant)
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    const certs = await deps.db
      .selectFrom('device_certificates')
      .select(['serial', 'not_before', 'not_after', 'issued_by', 'revoked_at'])
      .where('tenant_id', '=', principal.tenant)
      .where('device_id', '=', id)
      .orderBy('issued_at', 'desc')
      .limit(10)
      .execute();
    const eventsScope = { type: 'events' as const, tenant: principal.tenant, site: site ?? undefined };
    const recent = (await can(res, deps, 'events:read', eventsScope))
      ? (await events.list(principal.tenant, { site: site ?? undefined, device: id, limit: 10 })).items
      : undefined;
    const media = await viewableMedia(res, deps, recent ?? []);
    const revoke =
      d.revoked_at === null &&
      (await can(res, deps, 'devices:revoke', { type: 'device', tenant: principal.tenant, id, site }));
    const body = html`
      <p><a href="/console">Back to the fleet</a></p>
      <table class="detail">
        <tbody>
          <tr>
            <th scope="row">Site</th>
            <td>${site ?? '—'}</td>
          </tr>
          <tr>
            <th scope="row">Status</th>
            <td><span class="status status-${d.status}">${d.status}</span></td>
          </tr>
          <tr>
            <th scope="row">Last heartbeat</th>
            <td>${time(d.last_seen_at)}</td>
          </tr>
          <tr>
            <th scope="row">Health</th>
            <td>${extra.last_health ?? '—'}</td>
          </tr>
          <tr>
            <th scope="row">Agent, config</th>
            <td>${d.agent_version ?? '—'}, ${d.config_version ?? '—'}</td>
          </tr>
          <tr>
            <th scope="row">Enrolled</th>
            <td>${time(d.enrolled_at)}</td>
          </tr>
          ${
            d.revoked_at
              ? html`<tr>
                  <th scope="row">Revoked</th>
                  <td>${time(d.revoked_at)} by ${d.revoked_by ?? '?'}: ${d.revoke_reason ?? ''}</td>
                </tr>`
              : ''
          }
        </tbody>
      </table>
      <h2>Cameras</h2>
      ${cameras(extra.last_cameras)}
      <h2>Recent events</h2>
      ${
        recent === undefined
          ? html`<p>You may not read this device's events.</p>`
          : recent.length === 0
            ? html`<p>No events.</p>`
            : html`<div class="table-wrap" tabindex="0" role="region" aria-label="Recent events">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Snapshot</th>
                      <th scope="col">Time (UTC)</th>
                      <th scope="col">Site</th>
                      <th scope="col">Device</th>
                      <th scope="col">Camera</th>
                      <th scope="col">Label</th>
                      <th scope="col">Score</th>
                      <th scope="col">Zones</th>
                    </tr>
                  </thead>
                  <tbody>
                    ${recent.map((e) => eventRow(e, media))}
                  </tbody>
                </table>
              </div>`
      }
      <h2>Certificates</h2>
      ${
        certs.length === 0
          ? html`<p>None issued.</p>`
          : html`<ul>
              ${certs.map((c) => html`<li>${c.serial}: ${time(c.not_before)} to ${time(c.not_after)} (${c.issued_by})${c.revoked_at ? html` <strong>revoked ${time(c.revoked_at)}</strong>` : ''}</li>`)}
            </ul>`
      }
      ${
        revoke
          ? html`<h2>Revoke</h2>
              <form
                method="post"
                action="/console/devices/${id}/revoke"
                class="create"
                data-confirm="Revoke ${id}? It loses NATS access and its certificates now; re-enrolling needs a new token."
              >
                ${csrfField(consoleSession(res).csrf)}
                <label>Reason <input name="reason" required maxlength="500" /></label>
                <button type="submit" class="op-abort">Revoke device</button>
              </form>`
          : ''
      }
    `;
    await sendPage(res, deps, 'fleet', `Device ${id}`, body);
  });

  router.post('/devices/:id/revoke', async (req, res) => {
    const reason = (req.body as Record<string, unknown>).reason;
    await revokeDevice(
      { devices, revoker: deps.revoker, audit: deps.audit, authorizer: deps.authorizer, log: deps.log },
      consolePrincipal(res),
      { id: req.params.id },
      { reason },
    );
    res.redirect(303, `/console/devices/${encodeURIComponent(String(req.params.id))}`);
  });
}
