import type { Response, Router } from 'express';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Authorizer } from '../auth/authorize.js';
import { reviewView, type EventReviews } from '../events/reviews.js';
import { principalOf, requireAllowed, requireVisible } from './authenticate.js';
import { NotFoundError } from './errors.js';
import type { EventReader } from './event-store.js';
import { encodeCursor, eventIdParam, listEventsQuerySchema, parseOrThrow } from './events-query.js';
import { methodNotAllowed } from './problem.js';

export interface EventRoutesDeps {
  events: EventReader;
  authorizer: Authorizer;
  log: Logger;
  maxPageSize: number;
  /** Marking events reviewed (events/reviews.ts). */
  reviews: EventReviews;
}

export const eventPathParams = z.strictObject({ id: eventIdParam });

/** What an event's API view holds: detections, no image bytes (ingest does not classify personal data yet). */
const EVENT_DATA_CLASS = 'metadata';

/**
 * GET /events (newest first, filters, cursor) and GET /events/:id, always inside the caller's tenant. A
 * site-scoped caller lists with `?site=` (one of its sites) and sees single events of its sites only.
 */
export function mountEventRoutes(router: Router, deps: EventRoutesDeps): void {
  const listQuery = listEventsQuerySchema(deps.maxPageSize);

  router
    .route('/events')
    .get(async (req, res) => {
      const filter = parseOrThrow(listQuery, req.query, 'query parameters');
      const principal = principalOf(res);
      await requireAllowed(deps.authorizer, deps.log, principal, 'events:read', {
        type: 'events',
        tenant: principal.tenant,
        site: filter.site,
      });
      const page = await deps.events.list(principal.tenant, filter);
      res.json({ items: page.items, next_cursor: page.next === null ? null : encodeCursor(page.next) });
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  // One event the caller may read: authorized before the lookup, then asked again with what only the row tells
  // (site, camera, data class). Another tenant's event, a missing one and a deny are the same 404.
  async function readableEvent(params: unknown, res: Response) {
    const { id } = parseOrThrow(eventPathParams, params, 'path parameters');
    const principal = principalOf(res);
    await requireAllowed(deps.authorizer, deps.log, principal, 'events:read', {
      type: 'event',
      tenant: principal.tenant,
      id,
    });
    const event = await deps.events.get(principal.tenant, id);
    if (event === null) throw new NotFoundError();
    await requireVisible(deps.authorizer, deps.log, principal, 'events:read', {
      type: 'event',
      tenant: principal.tenant,
      id,
      site: event.site_id,
      camera: event.camera_id,
      dataClass: EVENT_DATA_CLASS,
    });
    return { id, principal, event };
  }

  router
    .route('/events/:id')
    .get(async (req, res) => {
      const { event } = await readableEvent(req.params, res);
      res.json(event);
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  // Mark reviewed and un-review: Cedar `events:review`, audited (events/reviews.ts, shared with the console).
  router
    .route('/events/:id/review')
    .get(async (req, res) => {
      const { id, principal } = await readableEvent(req.params, res);
      res.json(reviewView(id, (await deps.reviews.of(principal.tenant, [id])).get(id)));
    })
    .post(async (req, res) => {
      const { id } = parseOrThrow(eventPathParams, req.params, 'path parameters');
      const review = await deps.reviews.mark(principalOf(res), id);
      res.json(reviewView(id, review));
    })
    .delete(async (req, res) => {
      const { id } = parseOrThrow(eventPathParams, req.params, 'path parameters');
      await deps.reviews.unmark(principalOf(res), id);
      res.json(reviewView(id, undefined));
    })
    .all(methodNotAllowed('GET', 'HEAD', 'POST', 'DELETE'));
}
