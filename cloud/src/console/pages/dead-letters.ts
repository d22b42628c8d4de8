import type { Response, Router } from 'express';
import { z } from 'zod';
import { requireAllowed } from '../../api/authenticate.js';
import { NotFoundError } from '../../api/errors.js';
import { parseOrThrow } from '../../api/events-query.js';
import { replayMessage } from '../../alerts/operations.js';
import type { AlertStore } from '../../alerts/store.js';
import type { Principal } from '../../auth/principal.js';
import { can, requirePage, sendPage, type PageDeps } from '../context.js';
import { html } from '../html.js';
import { csrfField, time } from '../layout.js';
import { consolePrincipal, consoleSession } from '../security.js';

/** One page of dead letters: the API's default list size. */
export const DEAD_LETTERS_PAGE_SIZE = 50;
/** A body shown on the inspect page is cut here (a CAP document is a few KiB; the page stays bounded). */
const MAX_BODY_SHOWN = 64 * 1024;
const messageId = z.string().min(1).max(300);

export interface DeadLetterDeps extends PageDeps {
  alerts: { store: AlertStore; senderDomain: string };
}

/**
 * GET /console/dead-letters (the alert messages that gave up: GET /v1/alerts/messages?state=dead), GET
 * /console/dead-letters/:id (inspect: the error, the agency's answer, the document) and POST .../replay (the
 * API's replayMessage: back to pending, a new outbox job, audited `alert_message.replay`). The same decisions as
 * the API: `alerts:read` to see, `alerts:write` to replay (a denied replay is audited as `alert.write`).
 */
export function mountDeadLetterPages(router: Router, deps: DeadLetterDeps): void {
  const mayReplay = (res: Response, p: Principal) =>
    can(res, deps, 'alerts:write', { type: 'alerts', tenant: p.tenant });

  router.get('/dead-letters', async (_req, res) => {
    const p = await requirePage(res, deps, 'dead-letters');
    const rows = await deps.alerts.store.listMessages(p.tenant, { state: 'dead' }, DEAD_LETTERS_PAGE_SIZE);
    const body = html`
      <p>
        Alert messages (CAP or EIDO) that gave up on delivery, newest first (at most
        ${DEAD_LETTERS_PAGE_SIZE}).
      </p>
      ${
        rows.length === 0
          ? html`<p class="empty">No dead letters.</p>`
          : html`<div class="table-wrap" tabindex="0" role="region" aria-label="Dead letters">
              <table id="dead-letters">
                <thead>
                  <tr>
                    <th scope="col">Message</th>
                    <th scope="col">Type</th>
                    <th scope="col">Sent (UTC)</th>
                    <th scope="col">Attempts</th>
                    <th scope="col">Error</th>
                  </tr>
                </thead>
                <tbody>
                  ${rows.map(
                    (m) =>
                      html`<tr data-message="${m.id}">
                        <td>
                          <a href="/console/dead-letters/${encodeURIComponent(m.id)}">${m.identifier}</a>
                        </td>
                        <td>${m.msg_type}</td>
                        <td>${time(m.sent)}</td>
                        <td>${m.attempts}</td>
                        <td>${m.error ?? '—'}</td>
                      </tr>`,
                  )}
                </tbody>
              </table>
            </div>`
      }
    `;
    await sendPage(res, deps, 'dead-letters', 'Dead letters', body);
  });

  router.get('/dead-letters/:id', async (req, res) => {
    const id = parseOrThrow(messageId, req.params.id, 'path parameters');
    const p = await requirePage(res, deps, 'dead-letters');
    const m = await deps.alerts.store.getMessage(p.tenant, id);
    if (!m) throw new NotFoundError();
    const row = (k: string, v: string) =>
      html`<tr>
        <th scope="row">${k}</th>
        <td>${v}</td>
      </tr>`;
    const shown = m.body === null ? null : m.body.slice(0, MAX_BODY_SHOWN);
    const body = html`
      <p><a href="/console/dead-letters">Back to the dead letters</a></p>
      <table class="detail">
        <tbody>
          ${row('Message', m.id)} ${row('Identifier', m.identifier)} ${row('State', m.state)}
          ${row('Type', m.msg_type)} ${row('Incident', m.incident_id)} ${row('Target', m.target_id)}
          ${row('Event', m.event_id)} ${row('Sent (UTC)', time(m.sent))}
          ${row('Attempts', String(m.attempts))}
          ${row('HTTP status', m.http_status === null ? '—' : String(m.http_status))}
          ${row('Error', m.error ?? '—')} ${row('Answer', m.answer ?? '—')}
          ${row('Updated (UTC)', time(m.updated_at))}
        </tbody>
      </table>
      <h2>Document</h2>
      ${
        shown === null
          ? html`<p>No document was built for it.</p>`
          : html`<pre class="document" tabindex="0" aria-label="Document">${shown}</pre>
              ${m.body!.length > shown.length ? html`<p>(cut at ${MAX_BODY_SHOWN} characters)</p>` : ''}`
      }
      ${
        m.state === 'dead' && (await mayReplay(res, p))
          ? html`<form
              method="post"
              action="/console/dead-letters/${encodeURIComponent(m.id)}/replay"
              class="replay"
              data-confirm="Send this message to its target again?"
            >
              ${csrfField(consoleSession(res).csrf)}
              <button type="submit" class="op-replay">Replay</button>
            </form>`
          : ''
      }
    `;
    await sendPage(res, deps, 'dead-letters', `Dead letter ${m.identifier}`, body);
  });

  router.post('/dead-letters/:id/replay', async (req, res) => {
    const id = parseOrThrow(messageId, req.params.id, 'path parameters');
    const p = consolePrincipal(res);
    await requireAllowed(
      deps.authorizer,
      deps.log,
      p,
      'alerts:write',
      { type: 'alerts', tenant: p.tenant },
      deps.audit,
    );
    const m = await replayMessage(
      { store: deps.alerts.store, audit: deps.audit, senderDomain: deps.alerts.senderDomain, now: deps.now },
      p,
      id,
    );
    if (!m) throw new NotFoundError();
    res.redirect(303, `/console/dead-letters/${encodeURIComponent(id)}`);
  });
}
