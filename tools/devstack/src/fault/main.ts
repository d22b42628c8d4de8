import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { runFault } from './fault.js';

const int = (v: string): number => {
  const n = Number.parseInt(v, 10);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
};

const program = new Command('pnpm -F @vigil/devstack fault')
  .description(
    "Exactly-once fault test on loopback: agents produce events while they are kill -9'd, nats-server and PostgreSQL\n" +
      'are crashed and restarted and the uplink is cut; at the end PostgreSQL must hold every acknowledged event once.',
  )
  .option('--events <n>', 'events to produce in total', int, 100_000)
  .option('--agents <n>', 'agent processes', int, 4)
  .option('--rate <n>', 'events per second per agent', int, 400)
  .option('--kill-every <ms>', 'kill -9 a random agent this often', int, 4_000)
  .option('--nats-every <ms>', 'crash and restart nats-server this often', int, 30_000)
  .option('--pg-every <ms>', 'crash and restart PostgreSQL this often', int, 45_000)
  .option('--cut-every <ms>', "cut the agents' uplink this often", int, 20_000)
  .option('--cut-for <ms>', 'for this long', int, 5_000)
  .option('--timeout <s>', 'give up after this many seconds', int, 1_800)
  .action(
    async (opts: {
      events: number;
      agents: number;
      rate: number;
      killEvery: number;
      natsEvery: number;
      pgEvery: number;
      cutEvery: number;
      cutFor: number;
      timeout: number;
    }) => {
      const workDir = mkdtempSync(join(tmpdir(), 'vigil-fault-'));
      console.error(
        `fault run: ${opts.events} events from ${opts.agents} agents at ${opts.rate}/s each; work dir ${workDir}`,
      );
      try {
        const result = await runFault({
          workDir,
          events: opts.events,
          agents: opts.agents,
          rate: opts.rate,
          killEveryMs: opts.killEvery,
          natsRestartEveryMs: opts.natsEvery,
          pgRestartEveryMs: opts.pgEvery,
          cutEveryMs: opts.cutEvery,
          cutForMs: opts.cutFor,
          timeoutMs: opts.timeout * 1000,
          log: (l) => console.error(l),
        });
        console.log(JSON.stringify(result, null, 2));
        const ok =
          result.lost === 0 && result.duplicates === 0 && result.unacknowledgedExtras <= result.kills;
        console.error(ok ? 'PASS: 0 lost, 0 duplicated' : 'FAIL');
        process.exitCode = ok ? 0 : 1;
      } finally {
        rmSync(workDir, { recursive: true, force: true });
      }
    },
  );

program.parseAsync().catch((err: unknown) => {
  console.error(`fault: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
