import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { canConnect, PostgresCluster, ProcessRegistry, reapRunDir } from '@vigil/devservices';

import './provided.js';

/**
 * Runs once per `vitest run`, in the main process: finds or starts PostgreSQL and owns the pid directory
 * that every worker's ProcessRegistry writes to, so that processes left by a crashed or timed-out worker
 * are reaped here at the end.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const runDir = mkdtempSync(join(tmpdir(), 'vigil-test-run-'));
  process.env.VIGIL_PROC_DIR = join(runDir, 'pids');
  const registry = new ProcessRegistry(process.env.VIGIL_PROC_DIR);

  let cluster: PostgresCluster | undefined;
  const candidates = [
    process.env.VIGIL_TEST_DATABASE_URL,
    process.env.DATABASE_URL,
    'postgres://postgres@127.0.0.1:5432/postgres',
  ].filter((u): u is string => Boolean(u));
  let adminUrl: string | undefined;
  for (const url of candidates) {
    if (await canConnect(url)) {
      adminUrl = url;
      break;
    }
  }
  if (!adminUrl) {
    cluster = await new PostgresCluster({ dir: join(runDir, 'pg'), registry }).start();
    adminUrl = cluster.url;
    console.log(`[testkit] no PostgreSQL reachable; started a private cluster at ${adminUrl}`);
  }
  project.provide('pgAdminUrl', adminUrl);

  return async () => {
    await cluster?.stop('immediate');
    const reaped = reapRunDir(process.env.VIGIL_PROC_DIR ?? join(runDir, 'pids'));
    if (reaped.length > 0)
      console.warn(`[testkit] reaped ${reaped.length} leftover process(es):\n  ${reaped.join('\n  ')}`);
    rmSync(runDir, { recursive: true, force: true });
  };
}
