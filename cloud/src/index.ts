export { startCloud } from './app.js';
export type { CloudApp, CloudDeps } from './app.js';
export { loadCloudConfig, parseCloudConfig } from './config/load.js';
export type { CloudConfig } from './config/schema.js';
export { FleetRegistry } from './fleet/registry.js';
export { createDb } from './storage/db.js';
export { migrateDown, migrateToLatest } from './storage/migrate.js';
