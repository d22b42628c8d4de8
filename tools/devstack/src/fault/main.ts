import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { runClusterFault } from './cluster.js';
import { runFault } from './fault.js';
import { judge, summary } from './verdict.js';

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
};

const program = new Command('pnpm -F @vigil/devstack fault')
  .description(
    'Exactly-once fault test on loopback. Agent processes (the real outbox and uplink) produce events to a\n' +
      'private nats-server through a cuttable proxy; the cloud runs as its own process on a private PostgreSQL\n' +
      'cluster. Meanwhile agents, the cloud and nats-server are kill -9d, PostgreSQL is crashed (-m immediate) and\n' +
      'frozen (SIGSTOP), the uplink is cut; faults go on until every kind happened and all events are produced.\n' +
      'Then it drains and checks: every acknowledged event stored once, no row unexplained, EVENTS empty.\n' +
      'With --nats-cluster 3 --ingest 2: the same run on a NATS cluster with two ingest processes (cluster.ts).\n' +
      'Exit 0 on PASS (the work dir is removed unless --keep), 1 on FAIL (the work dir is kept as evidence).',
  )
  .option('--events <n>', 'events the agents produce and acknowledge in total', int, 100_000)
  .option('--agents <n>', 'agent processes (one device each)', int, 4)
  .option('--rate <n>', 'events per second per agent', int, 400)
  .option('--agent-kill-every <ms>', 'kill -9 a random agent process this often', int, 4_000)
  .option(
    '--ingest-kill-every <ms>',
    'kill -9 the cloud (ingest) process this often; it is restarted',
    int,
    20_000,
  )
  .option(
    '--nats-kill-every <ms>',
    'kill -9 nats-server this often; it restarts after --down-for',
    int,
    30_000,
  )
  .option(
    '--pg-crash-every <ms>',
    'crash PostgreSQL (pg_ctl -m immediate) this often; restarts after --down-for',
    int,
    45_000,
  )
  .option(
    '--pg-freeze-every <ms>',
    'freeze PostgreSQL (SIGSTOP to all its processes) this often',
    int,
    25_000,
  )
  .option('--pg-freeze-for <ms>', 'for this long, then SIGCONT', int, 3_000)
  .option(
    '--cut-every <ms>',
    "cut the agents' uplink (drop every connection at the proxy) this often",
    int,
    20_000,
  )
  .option('--cut-for <ms>', 'and refuse new connections for this long', int, 5_000)
  .option('--down-for <ms>', 'how long nats-server and PostgreSQL stay down after a crash', int, 1_000)
  .option('--repair-interval <s>', "the cloud's ingest.strandedRepairIntervalSeconds", int, 2)
  .option('--no-webhook', 'leave out the webhook receiver (by default every stored event must reach it)')
  .option(
    '--nats-cluster <n>',
    'cluster mode: a NATS JetStream cluster of n nodes (>= 3, streams R3); faults in turn: the EVENTS\n' +
      "leader's node, one ingest process, PostgreSQL, each with its time to recover (the single-node fault\n" +
      'options do not apply)',
    int,
  )
  .option('--ingest <n>', 'cluster mode: ingest processes sharing the durable consumer (>= 2)', int, 2)
  .option(
    '--gap <ms>',
    'cluster mode: quiet time before each fault (>= 5,000: the rate before it)',
    int,
    10_000,
  )
  .option(
    '--recover-timeout <ms>',
    'cluster mode: longest wait for a recovery (then FAIL: not recovered)',
    int,
    60_000,
  )
  .option('--timeout <s>', 'give up (FAIL) after this many seconds in all', int, 1_800)
  .option('--work-dir <dir>', 'where to keep stores, logs and ack files (default: a new temp dir)')
  .option('--keep', 'keep the work dir after a PASS too', false)
  .action(
    async (opts: {
      events: number;
      agents: number;
      rate: number;
      agentKillEvery: number;
      ingestKillEvery: number;
      natsKillEvery: number;
      pgCrashEvery: number;
      pgFreezeEvery: number;
      pgFreezeFor: number;
      cutEvery: number;
      cutFor: number;
      downFor: number;
      repairInterval: number;
      timeout: number;
      webhook: boolean;
      natsCluster?: number;
      ingest: number;
      gap: number;
      recoverTimeout: number;
      workDir?: string;
      keep: boolean;
    }) => {
      const workDir = opts.workDir ? resolve(opts.workDir) : mkdtempSync(join(tmpdir(), 'vigil-fault-'));
      mkdirSync(workDir, { recursive: true });
      console.error(
        `fault run${opts.natsCluster ? ` (cluster: ${opts.natsCluster} NATS nodes, ${opts.ingest} ingest processes)` : ''}: ` +
          `${opts.events} events from ${opts.agents} agents at ${opts.rate}/s each; work dir ${workDir}`,
      );
      let pass = false;
      try {
        const result = opts.natsCluster
          ? await runClusterFault({
              workDir,
              events: opts.events,
              agents: opts.agents,
              rate: opts.rate,
              natsNodes: opts.natsCluster,
              ingest: opts.ingest,
              gapMs: opts.gap,
              downForMs: opts.downFor,
              recoverTimeoutMs: opts.recoverTimeout,
              strandedRepairIntervalSeconds: opts.repairInterval,
              timeoutMs: opts.timeout * 1000,
              log: (l) => console.error(l),
            })
          : await runFault({
              workDir,
              events: opts.events,
              agents: opts.agents,
              rate: opts.rate,
              every: {
                agentKill: opts.agentKillEvery,
                ingestKill: opts.ingestKillEvery,
                natsKill: opts.natsKillEvery,
                pgCrash: opts.pgCrashEvery,
                pgFreeze: opts.pgFreezeEvery,
                uplinkCut: opts.cutEvery,
              },
              cutForMs: opts.cutFor,
              freezeForMs: opts.pgFreezeFor,
              downForMs: opts.downFor,
              strandedRepairIntervalSeconds: opts.repairInterval,
              webhook: opts.webhook,
              timeoutMs: opts.timeout * 1000,
              log: (l) => console.error(l),
            });
        const why = judge(result);
        pass = why.length === 0;
        console.log(summary(result, why));
      } catch (err) {
        console.error(
          `FAIL: ${err instanceof Error ? err.message : String(err)}\nevidence kept in ${workDir}`,
        );
      }
      process.exitCode = pass ? 0 : 1;
      if (pass && !opts.keep) rmSync(workDir, { recursive: true, force: true });
    },
  );

program.parseAsync().catch((err: unknown) => {
  console.error(`fault: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
