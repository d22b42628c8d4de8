import { readFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ApiError } from '../adapters/api.js';
import { CliError } from '../errors.js';
import { apiClient, globals, int, withAuth, type AuthOptions, type CliContext } from './common.js';

/** A rollout as GET /v1/rollouts/{id} answers it (the fields the CLI shows). */
export interface ApiRollout {
  id: string;
  /** An agent-version rollout's target; null for a config rollout. */
  agent?: { version: string; channel: string } | null;
  target: { scope: string; id: string };
  state: string;
  current_wave: number;
  abort_reason: string | null;
  created_at: string;
  devices: number;
  totals: { not_issued: number; pending: number; applied: number; failed: number; rolled_back: number };
  waves: Array<{
    wave: number;
    label: string;
    devices: number;
    applied: number;
    failed: number;
    pending: number;
    rolled_back: number;
  }>;
}

const TERMINAL = new Set(['completed', 'rolled_back']);

const ratioArg = (value: string): number => {
  const n = Number(value);
  if (!(n >= 0 && n <= 1)) throw new InvalidArgumentError('expected a number from 0 to 1');
  return n;
};
const multipleArg = (value: string): number => {
  const n = Number(value);
  if (!(n >= 1 && n <= 1000)) throw new InvalidArgumentError('expected a number from 1 to 1000');
  return n;
};
const rateArg = (value: string): number => {
  const n = Number(value);
  if (!(n >= 0 && Number.isFinite(n))) throw new InvalidArgumentError('expected a number >= 0');
  return n;
};
const wavesArg = (value: string): number[] => {
  const waves = value.split(',').map((s) => Number(s.trim()));
  if (waves.some((w) => !(w > 0 && w <= 100)))
    throw new InvalidArgumentError('expected percentages, e.g. 10,50,100');
  return waves;
};

/** One line: state, wave and totals. */
export function summaryLine(r: ApiRollout): string {
  const t = r.totals;
  const wave = r.current_wave < 0 ? '-' : (r.waves[r.current_wave]?.label ?? String(r.current_wave));
  return (
    `${r.id}${r.agent ? ` agent=${r.agent.version}@${r.agent.channel}` : ''} ${r.state} wave=${wave} applied=${t.applied}/${r.devices} failed=${t.failed} pending=${t.pending} ` +
    `rolled_back=${t.rolled_back}${r.abort_reason ? ` reason="${r.abort_reason}"` : ''}`
  );
}

/** The progress block: a summary and one line per wave. */
export function progressLines(r: ApiRollout): string[] {
  const lines = [summaryLine(r)];
  for (const w of r.waves) {
    const bar = w.devices === 0 ? '' : '#'.repeat(Math.round((20 * w.applied) / w.devices)).padEnd(20, '.');
    lines.push(
      `  ${w.wave === r.current_wave ? '>' : ' '} ${w.label.padEnd(7)} [${bar.padEnd(20)}] ` +
        `${w.applied}/${w.devices} applied, ${w.failed} failed, ${w.pending} pending, ${w.rolled_back} rolled back`,
    );
  }
  return lines;
}

/** `vigil rollout`: staged config rollouts (REST API). */
export function register(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const rollout = program
    .command('rollout')
    .description('staged config rollouts: create, list, watch, pause, resume, abort (REST API)');

  const get = async (client: Awaited<ReturnType<typeof apiClient>>, id: string): Promise<ApiRollout> => {
    try {
      return await client.call<ApiRollout>('GET', `/v1/rollouts/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404)
        throw new CliError(`no rollout ${id} in this tenant (API answered 404)`, 1, { cause: err });
      throw err;
    }
  };

  withAuth(
    rollout
      .command('create')
      .description('start a rollout (POST /v1/rollouts)')
      .addOption(new Option('--scope <scope>', 'target').choices(['tenant', 'site']).default('tenant'))
      .option('--site <id>', 'the site (with --scope site)')
      .option('--body-file <file>', 'the config body (JSON, ConfigBody)')
      .option('--effective', "roll out each device's current effective document", false)
      .option(
        '--agent-version <version>',
        'roll out this agent version (a published release) instead of a config',
      )
      .option('--channel <channel>', 'release channel of --agent-version', 'stable')
      .option('--canary <n>', 'devices in the canary', int(1), 1)
      .option('--waves <list>', 'cumulative percentages', wavesArg, [10, 50, 100])
      .option('--window <s>', 'gate window: seconds a device has to report', int(1), 300)
      .option('--soak <s>', 'seconds a wave runs before the next', int(0), 0)
      .option('--applied-ratio <r>', 'share of a wave applied and healthy to advance', ratioArg, 0.95)
      .option('--min-fps-ratio <r>', "fps below this share of the device's baseline fails it", ratioArg)
      .option(
        '--max-inference-ratio <x>',
        "inference latency above this multiple of the device's baseline fails it",
        multipleArg,
      )
      .option('--min-event-rate <n>', 'events per minute below this fail a device', rateArg)
      .option('--max-event-rate <n>', 'events per minute above this fail a device', rateArg)
      .option('--failure-ratio <r>', 'abort above this failure ratio', ratioArg, 0.1)
      .option('--min-reported <n>', '...once this many devices reported', int(1), 3),
    'admin',
  ).action(
    async (
      o: AuthOptions & {
        scope: string;
        site?: string;
        bodyFile?: string;
        effective: boolean;
        agentVersion?: string;
        channel: string;
        canary: number;
        waves: number[];
        window: number;
        soak: number;
        appliedRatio: number;
        minFpsRatio?: number;
        maxInferenceRatio?: number;
        minEventRate?: number;
        maxEventRate?: number;
        failureRatio: number;
        minReported: number;
      },
      cmd: Command,
    ) => {
      if ([o.bodyFile !== undefined, o.effective, o.agentVersion !== undefined].filter(Boolean).length !== 1)
        throw new CliError(
          'give exactly one of --body-file <file>, --effective, --agent-version <version>',
          2,
        );
      const g = globals(cmd);
      const client = await apiClient(ctx, g, o);
      const body =
        o.bodyFile === undefined ? undefined : (JSON.parse(readFileSync(o.bodyFile, 'utf8')) as unknown);
      const created = await client.call<ApiRollout>('POST', '/v1/rollouts', {
        target: { scope: o.scope, ...(o.site === undefined ? {} : { id: o.site }) },
        ...(o.agentVersion !== undefined
          ? { agent: { version: o.agentVersion, channel: o.channel } }
          : body === undefined
            ? { use_effective_document: true }
            : { body }),
        spec: {
          canary: o.canary,
          waves: o.waves,
          gate_window_seconds: o.window,
          soak_seconds: o.soak,
          gates: {
            applied_ratio: o.appliedRatio,
            ...(o.minFpsRatio === undefined ? {} : { min_fps_ratio: o.minFpsRatio }),
            ...(o.maxInferenceRatio === undefined ? {} : { max_inference_ratio: o.maxInferenceRatio }),
            ...(o.minEventRate === undefined && o.maxEventRate === undefined
              ? {}
              : {
                  event_rate: {
                    ...(o.minEventRate === undefined ? {} : { min: o.minEventRate }),
                    ...(o.maxEventRate === undefined ? {} : { max: o.maxEventRate }),
                  },
                }),
          },
          abort: { failure_ratio: o.failureRatio, min_reported: o.minReported },
        },
      });
      io.out(g.json ? JSON.stringify(created) : summaryLine(created));
    },
  );

  withAuth(
    rollout.command('list').description('rollouts of the tenant, newest first (GET /v1/rollouts)'),
  ).action(async (o: AuthOptions, cmd: Command) => {
    const g = globals(cmd);
    const client = await apiClient(ctx, g, o);
    const page = await client.call<{ items: ApiRollout[] }>('GET', '/v1/rollouts');
    if (page.items.length === 0) io.err('no rollouts');
    for (const r of page.items) io.out(g.json ? JSON.stringify(r) : summaryLine(r));
  });

  withAuth(
    rollout
      .command('status')
      .description('progress of a rollout (GET /v1/rollouts/<id>); --watch follows it live')
      .argument('<id>', 'rollout id')
      .option('--watch', 'refresh every second until the rollout ends', false)
      .option('--interval <ms>', 'refresh period with --watch', int(100), 1000),
  ).action(async (id: string, o: AuthOptions & { watch: boolean; interval: number }, cmd: Command) => {
    const g = globals(cmd);
    const client = await apiClient(ctx, g, o);
    let r = await get(client, id);
    if (!o.watch) {
      io.out(g.json ? JSON.stringify(r) : progressLines(r).join('\n'));
      return;
    }
    // A TTY: redraw the block in place. Otherwise (a pipe, a log): one line per change.
    const tty = !g.json && process.stdout.isTTY === true;
    let drawn = 0;
    let last = '';
    for (;;) {
      if (tty) {
        const lines = progressLines(r);
        io.out(`${drawn > 0 ? `\x1b[${drawn}A\x1b[J` : ''}${lines.join('\n')}`);
        drawn = lines.length;
      } else {
        const line = g.json ? JSON.stringify(r) : summaryLine(r);
        const key = g.json ? JSON.stringify({ ...r, updated_at: undefined }) : line;
        if (key !== last) io.out(line);
        last = key;
      }
      if (TERMINAL.has(r.state)) break;
      await new Promise((res) => setTimeout(res, o.interval));
      r = await get(client, id);
    }
    if (r.state !== 'completed') ctx.state.exitCode = 1;
  });

  for (const op of ['pause', 'resume', 'abort'] as const) {
    withAuth(
      rollout
        .command(op)
        .description(`${op} a rollout (POST /v1/rollouts/<id>/${op})`)
        .argument('<id>', 'rollout id')
        .option('--reason <text>', 'why (kept in the audit log)'),
      'admin',
    ).action(async (id: string, o: AuthOptions & { reason?: string }, cmd: Command) => {
      const g = globals(cmd);
      const client = await apiClient(ctx, g, o);
      let r: ApiRollout;
      try {
        r = await client.call<ApiRollout>(
          'POST',
          `/v1/rollouts/${encodeURIComponent(id)}/${op}`,
          o.reason === undefined ? {} : { reason: o.reason },
        );
      } catch (err) {
        if (err instanceof ApiError && err.status === 404)
          throw new CliError(`no rollout ${id} in this tenant (API answered 404)`, 1, { cause: err });
        if (err instanceof ApiError && err.status === 409) throw new CliError(err.message, 1, { cause: err });
        throw err;
      }
      io.out(g.json ? JSON.stringify(r) : summaryLine(r));
    });
  }
}
