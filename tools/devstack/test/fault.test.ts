import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { registry } from '@vigil/testkit';
import { runFault } from '../src/fault/fault.js';

// The short form of the exactly-once fault test (the long form: `pnpm -F @vigil/devstack fault`).
describe('exactly-once delivery under faults (short form)', () => {
  it('loses and duplicates nothing while agents, nats-server and PostgreSQL crash and the uplink is cut', async () => {
    const workDir = mkdtempSync(join(tmpdir(), 'vigil-fault-'));
    try {
      const r = await runFault({
        workDir,
        events: 3_000,
        agents: 2,
        rate: 150,
        killEveryMs: 2_500,
        natsRestartEveryMs: 6_000,
        pgRestartEveryMs: 8_000,
        cutEveryMs: 5_000,
        cutForMs: 1_500,
        timeoutMs: 150_000,
        log: (l) => console.log(l),
        registry,
      });
      console.log(`[fault] ${JSON.stringify(r)}`);
      expect(r.produced).toBe(3_000);
      expect(r.lost).toBe(0);
      expect(r.duplicates).toBe(0);
      // Events appended but killed before they were acknowledged may also arrive: at most one per kill.
      expect(r.unacknowledgedExtras).toBeLessThanOrEqual(r.kills);
      expect(r.rows).toBe(r.produced + r.unacknowledgedExtras);
      expect(r.kills).toBeGreaterThan(0);
      expect(r.natsRestarts).toBeGreaterThan(0);
      expect(r.pgRestarts).toBeGreaterThan(0);
      expect(r.uplinkCuts).toBeGreaterThan(0);
    } finally {
      rmSync(workDir, { recursive: true, force: true });
    }
  }, 180_000);
});
