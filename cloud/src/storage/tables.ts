import type { ColumnType } from 'kysely';

type CreatedAt = ColumnType<Date, Date | string | undefined, never>;

export interface TenantsTable {
  id: string;
  name: string;
  created_at: CreatedAt;
}

export interface SitesTable {
  tenant_id: string;
  id: string;
  name: string;
  created_at: CreatedAt;
}

export interface DevicesTable {
  tenant_id: string;
  id: string;
  site_id: string | null;
  agent_version: string | null;
  config_version: ColumnType<string | null, string | number | bigint | null, string | number | bigint | null>;
  last_seen_at: Date | null;
  heartbeats: ColumnType<string, never, string>;
  created_at: CreatedAt;
}

/** The typed view of the schema that the migrations build. */
export interface Database {
  tenants: TenantsTable;
  sites: SitesTable;
  devices: DevicesTable;
}
