import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { registry } from '@vigil/testkit';
import { runClusterFault } from '../src/fault/cluster.js';
import { CLUSTER_FAULT_KINDS, judge, summary, type FaultResult } from '../src/fault/verdict.js';

// The short form of the cluster fault run (issue #17; the long form, >= 1,000,000 events from 8 agents: see the
// README): a 3-node NATS cluster, two ingest processes, and in turn the EVENTS leader's node, one ingest process
// and PostgreSQL killed. The rate is low so that production outlasts one round of the three faults on a loaded
// machine; each must recover (commit rate back to half its rate before) and nothing may be lost, duplicated or
// stranded.
describe('exactly-once delivery on a NATS cluster with two ingest processes (short form)', () => {
  it('loses, duplicates and strands nothing while the EVENTS leader node, an ingest process and PostgreSQL die', async () => {
    const workDir = mkdtempSync(join(tmpdir(), 'vigil-fault-cluster-'));
    let r: FaultResult | undefined;
    let why: string[] = ['the run did not finish'];
    try {
      r = await runClusterFault({
        workDir,
        events: 2_000,
        agents: 2,
        // 20/s per agent (the producer sends whole events per 50 ms tick): ~50 s of production.
        rate: 20,
        natsNodes: 3,
        ingest: 2,
        gapMs: 5_000,
        downForMs: 1_000,
        recoverTimeoutMs: 30_000,
        strandedRepairIntervalSeconds: 1,
        timeoutMs: 220_000,
        log: (l) => console.log(l),
        registry,
      });
      why = judge(r);
      console.log(`[fault-cluster]\n${summary(r, why)}`);
      expect(why).toEqual([]);
      expect(r.events.acked).toBe(2_000);
      expect(r.events.lost).toBe(0);
      expect(r.events.duplicates).toBe(0);
      expect(r.events.unexplained).toBe(0);
      expect(r.events.rows).toBe(r.events.acked + r.events.inDoubtStored);
      expect(r.stream.eventsLeft).toBe(0);
      for (const k of CLUSTER_FAULT_KINDS) expect(r.faults[k], k).toBeGreaterThan(0);
      expect(r.recoveries?.map((f) => f.kind)).toEqual(expect.arrayContaining([...CLUSTER_FAULT_KINDS]));
      for (const f of r.recoveries ?? []) expect(f.recoverMs, `${f.kind} ${f.target}`).toBeDefined();
    } finally {
      if (why.length === 0) rmSync(workDir, { recursive: true, force: true });
      else console.log(`[fault-cluster] FAIL (${why.join('; ')}): evidence kept in ${workDir}`);
    }
  }, 240_000);
});
