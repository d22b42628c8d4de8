import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The monitoring material under infra/: Prometheus rules (promtool check + unit tests), Grafana dashboards
// (valid, provisionable, only real metric names) and a runbook per alert.

const root = fileURLToPath(new URL('../..', import.meta.url));
const promDir = join(root, 'infra/prometheus');
const grafanaDir = join(root, 'infra/grafana');
const ymlIn = (dir: string): string[] =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.yml'))
    .sort()
    .map((f) => join(dir, f));
const ruleFiles = ymlIn(promDir);
const ruleTests = ymlIn(join(promDir, 'tests'));

const promtoolMissing =
  spawnSync('promtool', ['--version'], { encoding: 'utf8' }).error !== undefined
    ? 'promtool is not installed: run ./dev setup (it installs the Debian package prometheus, which has promtool)'
    : undefined;

function run(cmd: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

describe('infra/prometheus: promtool', () => {
  it('has rule files and rule unit tests', () => {
    expect(ruleFiles.map((f) => relative(root, f))).toEqual([
      'infra/prometheus/alerts.yml',
      'infra/prometheus/slos.yml',
    ]);
    expect(ruleTests.length).toBeGreaterThan(0);
  });

  it('promtool check rules accepts every rule file', async () => {
    expect(promtoolMissing, promtoolMissing).toBeUndefined();
    const { code, output } = await run('promtool', ['check', 'rules', ...ruleFiles]);
    expect(code, output).toBe(0);
    expect(output.match(/SUCCESS/g)?.length, output).toBe(ruleFiles.length);
  });

  // One promtool per test file, side by side: the multi-day burn-rate tests take a while.
  it('promtool test rules passes every unit test', { timeout: 300_000 }, async () => {
    expect(promtoolMissing, promtoolMissing).toBeUndefined();
    const results = await Promise.all(ruleTests.map((f) => run('promtool', ['test', 'rules', f])));
    for (const { code, output } of results) {
      expect(code, output).toBe(0);
      expect(output, output).toMatch(/SUCCESS/);
      expect(output, output).not.toMatch(/FAILED/);
    }
  });
});

/** Metric names the code registers (prom-client `name: '...'` and name constants), histogram series included. */
function codeMetricNames(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts'))
        for (const m of readFileSync(p, 'utf8').matchAll(/['"`](vigil_(?:cloud|agent)_[a-z0-9_]+)['"`]/g))
          for (const suffix of ['', '_bucket', '_sum', '_count']) names.add(m[1]! + suffix);
    }
  };
  walk(join(root, 'cloud/src'));
  walk(join(root, 'edge-agent/src'));
  return names;
}

/** The rule files without their comment lines. */
const rulesText = ruleFiles
  .map((f) => readFileSync(f, 'utf8'))
  .join('\n')
  .replace(/^\s*#.*$/gm, '');
const recorded = new Set([...rulesText.matchAll(/^\s*- record:\s*(\S+)/gm)].map((m) => m[1]!));
const alertBlocks = rulesText
  .split(/^\s*- (?=alert:)/m)
  .slice(1)
  .map((block) => ({
    name: /^alert:\s*(\S+)/.exec(block)![1]!,
    block: block.split(/^\s*- (?:record|name):/m)[0]!,
  }));
const codeNames = codeMetricNames();
/** Built into Prometheus. */
const builtins = new Set(['up', 'ALERTS', 'ALERTS_FOR_STATE']);
const known = (name: string): boolean => codeNames.has(name) || recorded.has(name) || builtins.has(name);

const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
]);
KEYWORDS.add('bool').add('offset').add('inf').add('nan');

/** The metric names a PromQL expression selects (not functions, label names, keywords or strings). */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const out: string[] = [];
  for (const m of bare.matchAll(/[A-Za-z_:][\w:]*/g)) {
    const before = bare[m.index - 1] ?? ' ';
    if (/[\w.$]/.test(before)) continue; // 1e-9, $__rate_interval
    if (/^\s*\(/.test(bare.slice(m.index + m[0].length))) continue; // a function call
    if (KEYWORDS.has(m[0].toLowerCase())) continue;
    out.push(m[0]);
  }
  return out;
}

interface Panel {
  type?: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  targets?: { expr?: string; datasource?: { uid?: string } }[];
  panels?: Panel[];
}

describe('infra/grafana dashboards', () => {
  const files = readdirSync(grafanaDir).filter((f) => f.endsWith('.json'));

  it('are the two dashboards', () => {
    expect(files.sort()).toEqual(['vigil-fleet-ingest.json', 'vigil-slos.json']);
  });

  it('metricNames finds metric names only', () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (route, le) (rate(x_bucket{status=~"5.."}[$__rate_interval]))) / on (slo) y > 1e-9 and bool z',
      ),
    ).toEqual(['x_bucket', 'y', 'z']);
  });

  for (const file of files) {
    it(`${file}: provisionable, templated datasource, only known metric names`, () => {
      const d = JSON.parse(readFileSync(join(grafanaDir, file), 'utf8')) as {
        uid?: unknown;
        title?: unknown;
        panels?: Panel[];
        templating?: { list?: { name?: string; type?: string; query?: string }[] };
      };
      expect(typeof d.uid === 'string' && d.uid.length > 0 && d.uid.length <= 40).toBe(true);
      expect(typeof d.title === 'string' && d.title.length > 0).toBe(true);
      expect(d.templating?.list).toContainEqual(
        expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }),
      );
      const panels = (d.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
      const queries = panels.filter((p) => p.type !== 'row');
      expect(queries.length).toBeGreaterThan(0);
      const unknown: string[] = [];
      for (const p of queries) {
        expect(p.datasource?.uid, p.title).toBe('${datasource}');
        expect(p.targets?.length, p.title).toBeGreaterThan(0);
        for (const t of p.targets ?? []) {
          expect(t.datasource?.uid ?? '${datasource}', p.title).toBe('${datasource}');
          expect(t.expr, p.title).toBeTruthy();
          const names = metricNames(t.expr ?? '');
          expect(names.length, `${p.title}: ${t.expr}`).toBeGreaterThan(0);
          for (const n of names) if (!known(n)) unknown.push(`${p.title}: ${n}`);
        }
      }
      expect(unknown).toEqual([]);
    });
  }
});

describe('infra/prometheus rules and runbooks', () => {
  it('reference only metric names the code exports or the rules record', () => {
    const used = new Set([...rulesText.matchAll(/\bvigil_[a-z0-9_:]+/g)].map((m) => m[0]));
    expect([...used].filter((n) => !known(n))).toEqual([]);
    // Every SLO series the alerts and dashboards read is recorded.
    for (const w of ['5m', '30m', '1h', '2h', '6h', '1d', '3d', '30d'])
      expect(recorded.has(`vigil_slo:sli_error:ratio_rate${w}`), w).toBe(true);
  });

  it('every alert has severity, summary, description and a runbook that exists', () => {
    expect(alertBlocks.length).toBeGreaterThanOrEqual(15);
    for (const { name, block } of alertBlocks) {
      expect(block, name).toMatch(/^\s+severity: (page|ticket)$/m);
      expect(block, name).toMatch(/^\s+summary: \S/m);
      expect(block, name).toMatch(/^\s+description: \S/m);
      if (name.endsWith('Burn'))
        expect(block, name).toMatch(/^\s+slo: (event-freshness|api-availability|api-latency)$/m);
      expect(block, name).toContain(`runbook_url: infra/prometheus/runbooks/${name}.md`);
      expect(existsSync(join(promDir, 'runbooks', `${name}.md`)), `runbook of ${name}`).toBe(true);
      const runbook = readFileSync(join(promDir, 'runbooks', `${name}.md`), 'utf8');
      expect(runbook.startsWith(`# ${name}\n`), name).toBe(true);
      for (const section of ['## What it means', '## Impact', '## Diagnose', '## Mitigate'])
        expect(runbook, `${name}: ${section}`).toContain(section);
    }
  });

  it('every runbook belongs to an alert', () => {
    const alerts = new Set(alertBlocks.map((a) => a.name));
    const orphans = readdirSync(join(promDir, 'runbooks'))
      .map((f) => f.replace(/\.md$/, ''))
      .filter((n) => !alerts.has(n));
    expect(orphans).toEqual([]);
  });
});
