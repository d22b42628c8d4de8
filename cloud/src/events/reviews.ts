import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { z } from 'zod';
import { requireAllowed, requireVisible } from '../api/authenticate.js';
import { NotFoundError } from '../api/errors.js';
import type { EventReader, EventView } from '../api/event-store.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authorizer } from '../auth/authorize.js';
import type { Principal } from '../auth/principal.js';
import type { Database } from '../storage/tables.js';

/** Who marked an event reviewed, and when. */
export interface EventReview {
  event_id: string;
  reviewed_by: string;
  reviewed_at: Date;
}

export const eventReviewSchema = z
  .object({
    event_id: z.uuid(),
    reviewed: z.boolean(),
    reviewed_by: z.string().nullable(),
    reviewed_at: z.iso.datetime({ offset: true }).nullable(),
  })
  .meta({ id: 'EventReview', description: 'Whether an event is marked reviewed, by whom and when.' });

export function reviewView(eventId: string, r: EventReview | undefined): z.output<typeof eventReviewSchema> {
  return {
    event_id: eventId,
    reviewed: r !== undefined,
    reviewed_by: r?.reviewed_by ?? null,
    reviewed_at: r?.reviewed_at.toISOString() ?? null,
  };
}

export interface ReviewDeps {
  db: Kysely<Database>;
  events: EventReader;
  authorizer: Authorizer;
  log: Logger;
  audit: AuditLog;
  now: () => Date;
}

/**
 * Marking events reviewed (table event_reviews, 0030): one code path for the API (POST/DELETE
 * /v1/events/{id}/review) and the console's button, so both ask the same Cedar questions (`events:review` on
 * the event: first with its id, then with its site and camera; a deny there is a 404 like a missing event) and
 * write the same audit entries (`event.review`, `event.unreview`) in the transaction of the change. Marking
 * twice keeps the first mark and audits once.
 */
export class EventReviews {
  constructor(private readonly deps: ReviewDeps) {}

  /** The reviews of these events of a tenant (a page of the events list). */
  async of(tenantId: string, eventIds: readonly string[]): Promise<Map<string, EventReview>> {
    if (eventIds.length === 0) return new Map();
    const rows = await this.deps.db
      .selectFrom('event_reviews')
      .select(['event_id', 'reviewed_by', 'reviewed_at'])
      .where('tenant_id', '=', tenantId)
      .where('event_id', 'in', [...eventIds])
      .execute();
    return new Map(rows.map((r) => [r.event_id, r]));
  }

  /** Authorizes `events:review` on the event and loads it (404 when missing or not visible). */
  private async authorized(p: Principal, id: string): Promise<EventView> {
    const { authorizer, log, audit } = this.deps;
    await requireAllowed(authorizer, log, p, 'events:review', { type: 'event', tenant: p.tenant, id }, audit);
    const e = await this.deps.events.get(p.tenant, id);
    if (e === null) throw new NotFoundError();
    await requireVisible(
      authorizer,
      log,
      p,
      'events:review',
      { type: 'event', tenant: p.tenant, id, site: e.site_id, camera: e.camera_id, dataClass: 'metadata' },
      audit,
    );
    return e;
  }

  async mark(p: Principal, id: string): Promise<EventReview> {
    const e = await this.authorized(p, id);
    return this.deps.db.transaction().execute(async (tx) => {
      const made = await tx
        .insertInto('event_reviews')
        .values({ tenant_id: p.tenant, event_id: id, reviewed_by: p.subject, reviewed_at: this.deps.now() })
        .onConflict((oc) => oc.columns(['tenant_id', 'event_id']).doNothing())
        .returning(['event_id', 'reviewed_by', 'reviewed_at'])
        .executeTakeFirst();
      if (made === undefined)
        return tx
          .selectFrom('event_reviews')
          .select(['event_id', 'reviewed_by', 'reviewed_at'])
          .where('tenant_id', '=', p.tenant)
          .where('event_id', '=', id)
          .executeTakeFirstOrThrow();
      await this.deps.audit.append(
        {
          tenantId: p.tenant,
          actor: p.subject,
          actorKind: 'user',
          action: 'event.review',
          resource: `event:${p.tenant}/${id}`,
          outcome: 'allowed',
          detail: { event_id: id, site: e.site_id, camera: e.camera_id },
        },
        tx,
      );
      return made;
    });
  }

  /** Removes the mark; false when the event was not marked (nothing audited). */
  async unmark(p: Principal, id: string): Promise<boolean> {
    const e = await this.authorized(p, id);
    return this.deps.db.transaction().execute(async (tx) => {
      const gone = await tx
        .deleteFrom('event_reviews')
        .where('tenant_id', '=', p.tenant)
        .where('event_id', '=', id)
        .returning(['reviewed_by'])
        .executeTakeFirst();
      if (gone === undefined) return false;
      await this.deps.audit.append(
        {
          tenantId: p.tenant,
          actor: p.subject,
          actorKind: 'user',
          action: 'event.unreview',
          resource: `event:${p.tenant}/${id}`,
          outcome: 'allowed',
          detail: { event_id: id, site: e.site_id, camera: e.camera_id, was_reviewed_by: gone.reviewed_by },
        },
        tx,
      );
      return true;
    });
  }
}
