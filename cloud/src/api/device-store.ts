import type { Kysely, Selectable } from 'kysely';
import { statusCutoff, statusSql, type DeviceStatus } from '../fleet/status.js';
import type { ReadHeavy } from '../storage/replica.js';
import type { Database, DevicesTable } from '../storage/tables.js';

export interface DeviceFilter {
  site?: string | undefined;
  status?: DeviceStatus | undefined;
  /** Keyset cursor: the id of the last device of the previous page. */
  after?: string | undefined;
  /** Only ids starting with this (the console's search). */
  idPrefix?: string | undefined;
  limit: number;
}

/** The JSON shape of a device in the API. */
export interface DeviceView {
  id: string;
  tenant_id: string;
  site_id: string | null;
  /** Derived at read time (fleet/status.ts). */
  status: DeviceStatus;
  last_seen_at: string | null;
  agent_version: string | null;
  /** A uint64, as a decimal string (JSON numbers lose precision above 2^53). */
  config_version: string | null;
  heartbeats: number;
  created_at: string;
  enrolled_at: string | null;
  hardware_id: string | null;
  revoked_at: string | null;
  revoked_by: string | null;
  revoke_reason: string | null;
  /** The updater's last status from heartbeats (migration 0022); null: none reported. */
  update: {
    state: string;
    current: string | null;
    previous: string | null;
    target: string | null;
    reason: string | null;
    updated_at: string | null;
  } | null;
}

export interface DevicePage {
  items: DeviceView[];
  /** The id the next page starts after, or null when this page is the last. */
  next: string | null;
}

type DeviceRow = Selectable<DevicesTable> & { status: DeviceStatus };

function toDeviceView(r: DeviceRow): DeviceView {
  return {
    id: r.id,
    tenant_id: r.tenant_id,
    site_id: r.site_id,
    status: r.status,
    last_seen_at: r.last_seen_at === null ? null : r.last_seen_at.toISOString(),
    agent_version: r.agent_version,
    config_version: r.config_version === null ? null : String(r.config_version),
    heartbeats: Number(r.heartbeats),
    created_at: r.created_at.toISOString(),
    enrolled_at: r.enrolled_at?.toISOString() ?? null,
    hardware_id: r.hardware_id,
    revoked_at: r.revoked_at?.toISOString() ?? null,
    revoked_by: r.revoked_by,
    revoke_reason: r.revoke_reason,
    update:
      r.update_state === null
        ? null
        : {
            state: r.update_state,
            current: r.update_current,
            previous: r.update_previous,
            target: r.update_target,
            reason: r.update_reason,
            updated_at: r.update_at?.toISOString() ?? null,
          },
  };
}

/**
 * Read side of the devices table for the API. Every query is scoped to one tenant; lists are keyset
 * paginated on the primary key (tenant_id, id), never OFFSET. `now` is the cloud clock (injected).
 */
export class DeviceReader {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly offlineAfterSeconds: number,
    private readonly now: () => Date,
    /** Where lists run (a fresh replica: storage/replica.ts); default: `db`. */
    private readonly readHeavy: ReadHeavy = (query) => query(db),
  ) {}

  /** Devices of `tenant` with their status as of now (the cutoff: fleet/status.ts). */
  private query(tenant: string, cutoff: Date, db = this.db) {
    return db
      .selectFrom('devices')
      .selectAll()
      .select(statusSql(cutoff).as('status'))
      .where('tenant_id', '=', tenant);
  }

  async list(tenant: string, f: DeviceFilter): Promise<DevicePage> {
    const cutoff = statusCutoff(this.now(), this.offlineAfterSeconds);
    const rows = await this.readHeavy((db) => this.listQuery(db, tenant, cutoff, f).execute());
    const page = rows.slice(0, f.limit);
    const last = page.at(-1);
    return { items: page.map(toDeviceView), next: rows.length > f.limit && last ? last.id : null };
  }

  private listQuery(db: Kysely<Database>, tenant: string, cutoff: Date, f: DeviceFilter) {
    let q = this.query(tenant, cutoff, db);
    if (f.site !== undefined) q = q.where('site_id', '=', f.site);
    if (f.status === 'revoked') q = q.where('revoked_at', 'is not', null);
    else if (f.status !== undefined) q = q.where('revoked_at', 'is', null);
    if (f.status === 'never') q = q.where('last_seen_at', 'is', null);
    if (f.status === 'online') q = q.where('last_seen_at', '>', cutoff);
    if (f.status === 'offline') q = q.where('last_seen_at', '<=', cutoff);
    if (f.after !== undefined) q = q.where('id', '>', f.after);
    // LIKE's own wildcards escaped (`_` is allowed in ids): a prefix match only.
    if (f.idPrefix !== undefined) q = q.where('id', 'like', `${f.idPrefix.replace(/[\\%_]/g, '\\$&')}%`);
    // One extra row says whether another page exists, so the last page has next_cursor null.
    return q.orderBy('id').limit(f.limit + 1);
  }

  /** One device of `tenant`, or null. */
  async get(tenant: string, id: string): Promise<DeviceView | null> {
    const cutoff = statusCutoff(this.now(), this.offlineAfterSeconds);
    const row = await this.query(tenant, cutoff).where('id', '=', id).executeTakeFirst();
    return row ? toDeviceView(row) : null;
  }
}
