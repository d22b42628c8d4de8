import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { registry } from '@vigil/testkit';
import { runFault } from '../src/fault/fault.js';
import { FAULT_KINDS, judge, summary, type FaultResult } from '../src/fault/verdict.js';

// The short form of the exactly-once fault test (the long form, >= 1,000,000 events: see the README).
// Intervals are short and staggered; the tool keeps injecting until every kind happened at least once, so a
// slow (loaded) machine makes the run longer, never a fault kind missing.
describe('exactly-once delivery under faults (short form)', () => {
  it('loses, duplicates and strands nothing while agents, the cloud, nats-server and PostgreSQL fail', async () => {
    const workDir = mkdtempSync(join(tmpdir(), 'vigil-fault-'));
    let r: FaultResult | undefined;
    let why: string[] = ['the run did not finish'];
    try {
      r = await runFault({
        workDir,
        events: 2_000,
        agents: 2,
        rate: 50,
        // A cloud restart costs ~10 s on a loaded machine (tsx compiles it anew): the heavy faults come rarely.
        every: {
          agentKill: 3_000,
          ingestKill: 15_000,
          natsKill: 12_000,
          pgCrash: 18_000,
          pgFreeze: 6_000,
          uplinkCut: 8_000,
        },
        cutForMs: 1_500,
        freezeForMs: 2_000,
        downForMs: 500,
        strandedRepairIntervalSeconds: 1,
        webhook: true,
        timeoutMs: 170_000,
        log: (l) => console.log(l),
        registry,
      });
      why = judge(r);
      console.log(`[fault]\n${summary(r, why)}`);
      expect(why).toEqual([]);
      expect(r.events.acked).toBe(2_000);
      expect(r.events.lost).toBe(0);
      expect(r.events.duplicates).toBe(0);
      expect(r.events.unexplained).toBe(0);
      expect(r.events.rows).toBe(r.events.acked + r.events.inDoubtStored);
      expect(r.stream.eventsLeft).toBe(0);
      expect(r.webhook).toMatchObject({
        expected: r.events.distinct,
        missing: 0,
        droppedOutboxFull: 0,
        recordedTwice: 0,
        dead: 0,
      });
      for (const k of FAULT_KINDS) expect(r.faults[k], k).toBeGreaterThan(0);
    } finally {
      // Evidence stays on failure: the path is printed for whoever reads the log.
      if (why.length === 0) rmSync(workDir, { recursive: true, force: true });
      else console.log(`[fault] FAIL (${why.join('; ')}): evidence kept in ${workDir}`);
    }
  }, 180_000);
});
