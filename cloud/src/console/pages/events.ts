import type { Response, Router } from 'express';
import { z } from 'zod';
import { requireAllowed, requireVisible } from '../../api/authenticate.js';
import { NotFoundError } from '../../api/errors.js';
import { EventReader, type EventView } from '../../api/event-store.js';
import { EventReviews, type EventReview } from '../../events/reviews.js';
import { encodeCursor, eventIdParam, listEventsQuerySchema, parseOrThrow } from '../../api/events-query.js';
import { requestAuthorizer } from '../access.js';
import { can, nonEmptyQuery, requirePage, sendPage, utcInput, type PageDeps } from '../context.js';
import { html } from '../html.js';
import { csrfField, time } from '../layout.js';
import { consolePrincipal, consoleSession } from '../security.js';

/** The console's page size: a screenful of thumbnails. */
export const EVENTS_PAGE_SIZE = 50;
const zoneParam = z.string().regex(/^[A-Za-z0-9_.-]{1,63}$/, 'must be 1-63 letters, digits, ., - or _');
/** The review filter: reviewed (yes), not reviewed (no), or absent (all). */
const reviewedParam = z.enum(['yes', 'no'], 'must be yes or no');

/**
 * The snapshots of these events the principal may open: per media, the question the media route asks first
 * (GET /console/media/:id). A thumbnail it would refuse is not shown (no broken image, no refused request).
 */
export async function viewableMedia(
  res: Response,
  deps: PageDeps,
  events: readonly EventView[],
): Promise<ReadonlySet<string>> {
  const tenant = consolePrincipal(res).tenant;
  const ids = events.flatMap((e) => (e.snapshot ? [e.snapshot.media_id] : []));
  const ok = await Promise.all(ids.map((id) => can(res, deps, 'media:read', { type: 'media', tenant, id })));
  return new Set(ids.filter((_, i) => ok[i]));
}

/**
 * One row of the events table; console.js builds the same from a stream message (with textContent). `media`:
 * the snapshots shown (viewableMedia). With `marks` (the events page), a last column says who reviewed it.
 */
export function eventRow(
  e: EventView,
  media: ReadonlySet<string>,
  marks?: Map<string, EventReview>,
): ReturnType<typeof html> {
  const review = marks?.get(e.event_id);
  return html`<tr data-event="${e.event_id}">
    <td>
      ${
        e.snapshot && !media.has(e.snapshot.media_id)
          ? html`<span class="muted">not shown</span>`
          : e.snapshot
            ? html`<img
                class="thumb"
                src="/console/media/${e.snapshot.media_id}"
                alt="Snapshot: ${e.label} on ${e.camera_id}"
                loading="lazy"
                width="96"
                height="54"
              />`
            : html`<span class="muted">none</span>`
      }
    </td>
    <td><a href="/console/events/${e.event_id}">${time(e.occurred_at)}</a></td>
    <td>${e.site_id}</td>
    <td>${e.device_id}</td>
    <td>${e.camera_id}</td>
    <td>${e.label}</td>
    <td>${e.score.toFixed(2)}</td>
    <td>${e.zones.join(', ')}</td>
    ${
      marks === undefined
        ? ''
        : html`<td class="review">
            ${review ? html`<span title="${time(review.reviewed_at)}">by ${review.reviewed_by}</span>` : 'no'}
          </td>`
    }
  </tr>`;
}

/**
 * GET /console/events (filters, keyset pages, live rows from /v1/stream) and GET /console/events/:id. Reads as
 * GET /v1/events does: the same reader and the same `events:read` decisions (the single event asked twice, the
 * second time with its site and camera; a deny is a 404).
 */
export function mountEventPages(router: Router, deps: PageDeps): void {
  const events = new EventReader(deps.db, { now: deps.now });
  // The API's own review code (events/reviews.ts): the same Cedar questions, the same audit entries.
  const reviews = new EventReviews({ ...deps, events });
  const listQuery = listEventsQuerySchema(Math.max(deps.maxPageSize, EVENTS_PAGE_SIZE));

  router.get('/events', async (req, res) => {
    const principal = consolePrincipal(res);
    const raw = nonEmptyQuery(req.query);
    const zone = raw.zone === undefined ? undefined : parseOrThrow(zoneParam, raw.zone, 'query parameters');
    const reviewed =
      raw.reviewed === undefined ? undefined : parseOrThrow(reviewedParam, raw.reviewed, 'query parameters');
    const { zone: _zone, reviewed: _reviewed, ...rest } = raw;
    const since = utcInput(rest.since);
    const until = utcInput(rest.until);
    const filter = parseOrThrow(
      listQuery,
      {
        ...rest,
        ...(since === undefined ? {} : { since }),
        ...(until === undefined ? {} : { until }),
        limit: String(EVENTS_PAGE_SIZE),
      },
      'query parameters',
    );
    filter.site ??= principal.sites?.[0];
    await requirePage(res, deps, 'events', filter.site);
    const page = await events.list(principal.tenant, {
      ...filter,
      zone,
      reviewed: reviewed === undefined ? undefined : reviewed === 'yes',
    });
    const marks = await reviews.of(
      principal.tenant,
      page.items.map((e) => e.event_id),
    );
    const media = await viewableMedia(res, deps, page.items);
    // Live rows only on the first page of an open-ended query (older pages and closed ranges do not grow), and
    // not when only reviewed events are asked for (a new event is not reviewed).
    const live = filter.after === undefined && filter.until === undefined && reviewed !== 'yes';
    const stream = new URLSearchParams();
    for (const k of ['site', 'device', 'camera', 'label'] as const) {
      const v = filter[k];
      if (v !== undefined) stream.set(k, v);
    }
    const next = new URLSearchParams(raw);
    if (page.next) next.set('cursor', encodeCursor(page.next));
    const field = (name: string, label: string, value: string | undefined, type = 'text') =>
      html`<label
        >${label} <input name="${name}" type="${type}" value="${value ?? ''}" maxlength="128"
      /></label>`;
    const body = html`
      <form method="get" action="/console/events" class="filters" role="search" aria-label="Filter events">
        ${field('site', 'Site', filter.site)} ${field('device', 'Device', filter.device)}
        ${field('camera', 'Camera', filter.camera)} ${field('label', 'Label', filter.label)}
        ${field('zone', 'Zone', zone)} ${field('since', 'From (UTC)', raw.since, 'datetime-local')}
        ${field('until', 'Until (UTC)', raw.until, 'datetime-local')}
        <label
          >Review
          <select name="reviewed">
            <option value="" ${reviewed === undefined ? html`selected` : ''}>all</option>
            <option value="no" ${reviewed === 'no' ? html`selected` : ''}>not reviewed</option>
            <option value="yes" ${reviewed === 'yes' ? html`selected` : ''}>reviewed</option>
          </select></label
        >
        <button type="submit">Filter</button>
      </form>
      <p
        class="live"
        ${live ? html`data-stream="/v1/stream?${stream.toString()}" data-zone="${zone ?? ''}"` : ''}
        aria-live="polite"
      >
        ${live ? 'Live: new events appear at the top.' : 'Not live (an older page or a closed range).'}
      </p>
      <div class="table-wrap" tabindex="0" role="region" aria-label="Events">
        <table id="events">
          <caption class="visually-hidden">
            Events, newest first
          </caption>
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
              <th scope="col">Reviewed</th>
            </tr>
          </thead>
          <tbody>
            ${page.items.map((e) => eventRow(e, media, marks))}
          </tbody>
        </table>
      </div>
      ${page.items.length === 0 ? html`<p class="empty">No event matches (yet).</p>` : ''}
      ${page.next ? html`<p><a href="/console/events?${next.toString()}" rel="next">Older events</a></p>` : ''}
    `;
    await sendPage(res, deps, 'events', 'Events', body);
  });

  router.get('/events/:id', async (req, res) => {
    const principal = consolePrincipal(res);
    const id = parseOrThrow(eventIdParam, req.params.id, 'path parameters');
    await requireAllowed(requestAuthorizer(res, deps.authorizer), deps.log, principal, 'events:read', {
      type: 'event',
      tenant: principal.tenant,
      id,
    });
    const e = await events.get(principal.tenant, id);
    if (e === null) throw new NotFoundError();
    await requireVisible(requestAuthorizer(res, deps.authorizer), deps.log, principal, 'events:read', {
      type: 'event',
      tenant: principal.tenant,
      id,
      site: e.site_id,
      camera: e.camera_id,
      dataClass: 'metadata',
    });
    const review = (await reviews.of(principal.tenant, [id])).get(id);
    // The button only for who may use it (the same question the POST asks; hiding is a courtesy).
    const mayReview = await can(res, deps, 'events:review', {
      type: 'event',
      tenant: principal.tenant,
      id,
      site: e.site_id,
      camera: e.camera_id,
      dataClass: 'metadata',
    });
    const csrf = consoleSession(res).csrf;
    const reviewPart = html`<section class="review" aria-label="Review">
      <p data-reviewed="${review ? 'yes' : 'no'}">
        ${review ? `Reviewed by ${review.reviewed_by} at ${time(review.reviewed_at)}.` : 'Not reviewed yet.'}
      </p>
      ${
        mayReview
          ? html`<form method="post" action="/console/events/${id}/${review ? 'unreview' : 'review'}">
              ${csrfField(csrf)}
              <button type="submit" class="${review ? 'op-unreview' : 'op-review'}">
                ${review ? 'Mark not reviewed' : 'Mark reviewed'}
              </button>
            </form>`
          : ''
      }
    </section>`;
    const row = (k: string, v: string) =>
      html`<tr>
        <th scope="row">${k}</th>
        <td>${v}</td>
      </tr>`;
    const body = html`
      <p><a href="/console/events">Back to the events</a></p>
      ${reviewPart}
      ${
        e.snapshot && (await viewableMedia(res, deps, [e])).has(e.snapshot.media_id)
          ? html`<figure>
              <img
                class="snapshot"
                src="/console/media/${e.snapshot.media_id}"
                alt="Snapshot: ${e.label} on ${e.camera_id} at ${time(e.occurred_at)}"
              />
              <figcaption>Every view of this picture is on the audit log (media.read).</figcaption>
            </figure>`
          : e.snapshot
            ? html`<p>You may not view this event's snapshot.</p>`
            : html`<p>This event has no snapshot.</p>`
      }
      <table class="detail">
        <tbody>
          ${row('Event', e.event_id)} ${row('Time (UTC)', time(e.occurred_at))} ${row('Site', e.site_id)}
          ${row('Device', e.device_id)} ${row('Camera', e.camera_id)}
          ${row('Track', `${e.track_id} (${e.phase})`)} ${row('Label', e.label)}
          ${row('Score', e.score.toFixed(3))} ${row('Zones', e.zones.join(', ') || '—')}
          ${row('Box', `x ${e.box.x.toFixed(3)} y ${e.box.y.toFixed(3)} w ${e.box.w.toFixed(3)} h ${e.box.h.toFixed(3)}`)}
          ${row('Model', e.model ? e.model.name : '—')}
        </tbody>
      </table>
    `;
    await sendPage(res, deps, 'events', `Event ${e.label} on ${e.camera_id}`, body);
  });

  // Mark reviewed / not reviewed: EventReviews asks Cedar (events:review) and audits; a viewer's forged POST is
  // refused there (403, audited as denied) whatever the page showed.
  router.post('/events/:id/review', async (req, res) => {
    const id = parseOrThrow(eventIdParam, req.params.id, 'path parameters');
    await reviews.mark(consolePrincipal(res), id);
    res.redirect(303, `/console/events/${id}`);
  });
  router.post('/events/:id/unreview', async (req, res) => {
    const id = parseOrThrow(eventIdParam, req.params.id, 'path parameters');
    await reviews.unmark(consolePrincipal(res), id);
    res.redirect(303, `/console/events/${id}`);
  });
}
