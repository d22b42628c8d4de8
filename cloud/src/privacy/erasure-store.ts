import { randomUUID } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit-log.js';
import type { Database, ErasureRequestsTable } from '../storage/tables.js';
import { scopeDetail, scopeSchema, type Scope } from './scope.js';

export type ErasureRow = Selectable<ErasureRequestsTable>;

export const erasureViewSchema = z
  .object({
    id: z.uuid(),
    state: z.enum(['pending', 'running', 'done']),
    phase: z.enum(['media', 'events', 'done']),
    scope: scopeSchema,
    reason: z.string(),
    requested_by: z.string(),
    requested_at: z.iso.datetime({ offset: true }),
    started_at: z.iso.datetime({ offset: true }).nullable(),
    finished_at: z.iso.datetime({ offset: true }).nullable(),
    counts: z.object({
      erased: z.number().int(),
      held: z.number().int(),
      failed: z.number().int(),
      media: z.object({ erased: z.number().int(), held: z.number().int(), failed: z.number().int() }),
      events: z.object({ erased: z.number().int(), held: z.number().int() }),
    }),
    batches: z.number().int(),
  })
  .meta({ id: 'Erasure' });
export type ErasureView = z.infer<typeof erasureViewSchema>;

export function toErasureView(r: ErasureRow): ErasureView {
  return {
    id: r.id,
    state: r.state,
    phase: r.phase,
    scope: r.scope as Scope,
    reason: r.reason,
    requested_by: r.requested_by,
    requested_at: r.requested_at.toISOString(),
    started_at: r.started_at?.toISOString() ?? null,
    finished_at: r.finished_at?.toISOString() ?? null,
    counts: {
      erased: r.media_erased + r.events_erased,
      held: r.media_held + r.events_held,
      failed: r.media_failed,
      media: { erased: r.media_erased, held: r.media_held, failed: r.media_failed },
      events: { erased: r.events_erased, held: r.events_held },
    },
    batches: r.batches,
  };
}

/** Erasure requests in PostgreSQL: created with their audit entry in one transaction, read by tenant. */
export class ErasureStore {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly audit: AuditLog,
    private readonly now: () => Date,
  ) {}

  /**
   * Records a request (state pending) and its `erasure.request` audit entry together. The entry holds the
   * scope's ids and the request id, never the reason (free text may name a person; it stays on the request).
   */
  async create(
    tenant: string,
    scope: Scope,
    reason: string,
    by: string,
    requestId?: string,
  ): Promise<ErasureRow> {
    const at = this.now();
    const id = randomUUID();
    return this.db.transaction().execute(async (tx) => {
      const row = await tx
        .insertInto('erasure_requests')
        .values({
          id,
          tenant_id: tenant,
          scope: JSON.stringify(scope),
          reason,
          requested_by: by,
          requested_at: at,
          state: 'pending',
          phase: 'media',
          cursor_at: null,
          cursor_id: null,
          started_at: null,
          finished_at: null,
          updated_at: at,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.audit.append(
        {
          tenantId: tenant,
          actor: by,
          actorKind: 'user',
          action: 'erasure.request',
          resource: `erasure:${tenant}/${id}`,
          outcome: 'allowed',
          detail: { erasure_id: id, scope: scopeDetail(scope) },
          requestId: requestId ?? null,
        },
        tx,
      );
      return row;
    });
  }

  async get(tenant: string, id: string): Promise<ErasureRow | null> {
    const row = await this.db
      .selectFrom('erasure_requests')
      .selectAll()
      .where('tenant_id', '=', tenant)
      .where('id', '=', id)
      .executeTakeFirst();
    return row ?? null;
  }

  /** The tenant's newest requests first, at most `limit`. */
  async list(tenant: string, limit: number): Promise<ErasureRow[]> {
    return this.db
      .selectFrom('erasure_requests')
      .selectAll()
      .where('tenant_id', '=', tenant)
      .orderBy('requested_at', 'desc')
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
  }
}
