import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { canConnect, createDatabase, PostgresCluster, registry } from '../src/index.js';

describe('PostgreSQL for tests', () => {
  it('gives each caller a fresh database and drops it', async () => {
    const db = await createDatabase(inject('pgAdminUrl'));
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query<{ current_database: string }>('select current_database()');
    await client.end();
    expect(rows[0]?.current_database).toBe(db.name);
    await db.drop();
    expect(await canConnect(db.url)).toBe(false);
  });

  // The path a fresh machine takes when no server is reachable: a private cluster from the system binaries.
  it('starts, restarts and stops a private cluster', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-pgc-'));
    const cluster = new PostgresCluster({ dir, registry });
    try {
      await cluster.start();
      expect(await canConnect(cluster.url)).toBe(true);
      await cluster.kill();
      expect(await canConnect(cluster.url, 500)).toBe(false);
      await cluster.start();
      expect(await canConnect(cluster.url)).toBe(true);
    } finally {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(await canConnect(cluster.url, 500)).toBe(false);
  }, 60_000);
});
