// Runs every benchmark of the repository, one after the other, and writes ONE JSON report:
//   pnpm bench [--full] [--only ingest,media] [--skip api-load] [--out bench-report.json] [--list]
// Default: each benchmark in its short form (--quick where it has one, else short arguments chosen below);
// --full: their own defaults (tens of minutes). Each benchmark prints one JSON document on stdout (kept whole in
// the report, with its raw baselines and ratios) and progress on stderr (passed through, prefixed). A benchmark
// that fails is recorded with its exit code and the tail of its stderr; the others still run; the exit code is
// 1 if any failed. Machine, commit and load average (before and after each benchmark) are in the report.
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

interface Bench {
  name: string;
  /** Script path from the repository root. */
  script: string;
  /** Arguments of the short form (`pnpm bench`). */
  quick: string[];
  /** Arguments of `pnpm bench --full`. */
  full: string[];
  /** Environment for both forms. */
  env?: Record<string, string>;
  what: string;
}

/** Every benchmark. Add yours here: it must print one JSON document on stdout. */
const BENCHES: readonly Bench[] = [
  {
    name: 'ingest',
    script: 'cloud/bench/ingest.bench.ts',
    quick: ['--quick'],
    full: [],
    what: 'cloud ingest events/s (live and drain) vs raw COPY of the same rows and raw JetStream publish',
  },
  {
    name: 'latency',
    script: 'cloud/bench/latency.bench.ts',
    quick: ['--rate', '1000', '--seconds', '15'],
    full: ['--rate', '1000', '--seconds', '60'],
    what: 'capture-to-commit p50/p99 at a fixed rate vs the raw JetStream publish round trip',
  },
  {
    name: 'media',
    script: 'cloud/bench/media.bench.ts',
    quick: ['--quick'],
    full: [],
    what: 'media ingest objects/s vs raw fsync’d file writes and raw JetStream publish',
  },
  {
    name: 'webhooks',
    script: 'cloud/bench/webhooks.bench.ts',
    quick: ['--quick'],
    full: [],
    what: 'webhook deliveries/s end to end (outbox commit -> signed POST answered 2xx) vs raw keep-alive POSTs from Node',
  },
  {
    name: 'authz',
    script: 'cloud/bench/authz.bench.ts',
    quick: ['--calls', '2000', '--warmup', '500'],
    full: [],
    what: 'authorization decision cost: Cedar vs the fixed role table',
  },
  {
    name: 'api-load',
    script: 'cloud/bench/api-load.bench.ts',
    quick: [
      '--events',
      '200000',
      '--days',
      '10',
      '--rate',
      '100',
      '--seconds',
      '15',
      '--database',
      'vigil_apiload_bench',
      '--drop-database',
    ],
    full: ['--database', 'vigil_apiload_bench', '--drop-database'],
    what: 'fixed-rate open-loop API load (GET /v1/events mix) over a COPYed data set',
  },
  {
    name: 'enroll',
    script: 'cloud/bench/enroll.bench.ts',
    quick: ['--devices', '500'],
    full: ['--devices', '3000'],
    what: 'device enrollments/s through gRPC Enroll (cloud process) vs raw RSA-2048 signs and raw TLS gRPC unary calls',
  },
  {
    name: 'edge-outbox',
    script: 'edge-agent/bench/outbox.bench.ts',
    quick: [],
    full: [],
    env: { OUTBOX_BENCH_REPEATS: '3' },
    what: 'edge outbox events/s vs raw better-sqlite3 (synchronous=FULL)',
  },
  {
    name: 'edge-pipeline',
    script: 'edge-agent/bench/pipeline.bench.ts',
    quick: ['--quick'],
    full: [],
    what: 'edge decode + detect throughput and capacity vs raw ffmpeg and raw onnxruntime',
  },
];

const { values } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    only: { type: 'string' },
    skip: { type: 'string' },
    out: { type: 'string', default: 'bench-report.json' },
    list: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help || values.list) {
  process.stdout.write(
    values.help
      ? 'pnpm bench [--full] [--only a,b] [--skip a,b] [--out bench-report.json] [--list]\n'
      : BENCHES.map((b) => `${b.name.padEnd(14)} ${b.script}  ${b.what}`).join('\n') + '\n',
  );
  process.exit(0);
}

const names = (s: string | undefined): Set<string> | undefined =>
  s === undefined ? undefined : new Set(s.split(',').map((x) => x.trim()));
const only = names(values.only);
const skip = names(values.skip) ?? new Set<string>();
for (const n of [...(only ?? []), ...skip])
  if (!BENCHES.some((b) => b.name === n))
    throw new Error(`unknown benchmark ${n}: one of ${BENCHES.map((b) => b.name).join(', ')}`);
const chosen = BENCHES.filter((b) => (only ? only.has(b.name) : true) && !skip.has(b.name));

const load = (): number[] => loadavg().map((x) => Math.round(x * 100) / 100);

function git(args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
}

interface Outcome {
  code: number | null;
  stdout: string;
  stderrTail: string[];
  seconds: number;
}

function run(b: Bench, args: string[]): Promise<Outcome> {
  return new Promise((resolveRun, reject) => {
    const t0 = performance.now();
    const child = spawn(
      process.execPath,
      ['--conditions=@vigil/source', '--import', 'tsx', join(repoRoot, b.script), ...args],
      { cwd: repoRoot, env: { ...process.env, ...b.env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    const tail: string[] = [];
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) {
        if (!line) continue;
        process.stderr.write(`[${b.name}] ${line}\n`);
        tail.push(line);
        if (tail.length > 40) tail.shift();
      }
    });
    child.once('error', reject);
    child.once('close', (code) =>
      resolveRun({ code, stdout, stderrTail: tail, seconds: (performance.now() - t0) / 1000 }),
    );
  });
}

async function main(): Promise<number> {
  const started = new Date();
  const results: Array<Record<string, unknown>> = [];
  let failed = 0;
  for (const b of chosen) {
    const args = values.full ? b.full : b.quick;
    const command = [
      ...Object.entries(b.env ?? {}).map(([k, v]) => `${k}=${v}`),
      'node --conditions=@vigil/source --import tsx',
      b.script,
      ...args,
    ].join(' ');
    process.stderr.write(`== ${b.name}: ${command}\n`);
    const loadBefore = load();
    const o = await run(b, args);
    let result: unknown;
    let error: string | undefined;
    try {
      result = JSON.parse(o.stdout);
    } catch {
      error = 'stdout is not one JSON document';
    }
    if (o.code !== 0) error = `exit code ${o.code}`;
    if (error) failed++;
    results.push({
      name: b.name,
      what: b.what,
      command,
      ok: !error,
      ...(error ? { error, stderrTail: o.stderrTail } : {}),
      seconds: Math.round(o.seconds * 10) / 10,
      loadavgBefore: loadBefore,
      loadavgAfter: load(),
      result: result ?? null,
    });
    process.stderr.write(`== ${b.name}: ${error ?? 'ok'} in ${Math.round(o.seconds)} s\n`);
  }
  const report = {
    report: 'vigil benchmarks',
    mode: values.full ? 'full' : 'quick',
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    commit: git(['rev-parse', 'HEAD']),
    dirty: (git(['status', '--porcelain']) ?? '') !== '',
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model ?? '?',
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
    },
    failed,
    benchmarks: results,
  };
  const out = resolve(process.cwd(), values.out);
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
  process.stderr.write(`report: ${out} (${results.length} benchmarks, ${failed} failed)\n`);
  return failed > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(
      `pnpm bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(2);
  },
);
