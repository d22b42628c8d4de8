import { execFile, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The bare-metal units (infra/systemd) checked with systemd's own tools, as tools/release does for the agent:
// `systemd-analyze verify` inside a throwaway root (PID 1 is not systemd here, so nothing is started) and
// `systemd-analyze security --offline=true` for the sandbox's exposure score.

const root = fileURLToPath(new URL('../..', import.meta.url));
const unitsDir = join(root, 'infra/systemd');
const missing =
  spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).error !== undefined
    ? 'systemd-analyze is not installed (Debian package systemd)'
    : undefined;

function analyze(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('systemd-analyze', args, { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

describe('infra/systemd: vigil-cloud@.service', () => {
  let T = '';
  const system = () => join(T, 'lib/systemd/system');
  beforeAll(() => {
    // Not skipped when missing: CI must check the units.
    if (missing) throw new Error(missing);
    T = mkdtempSync(join(tmpdir(), 'vigil-units-'));
    mkdirSync(system(), { recursive: true });
    mkdirSync(join(T, 'opt/vigil/bin'), { recursive: true });
    // verify checks that ExecStart's program exists and is executable inside the root.
    writeFileSync(join(T, 'opt/vigil/bin/vigil-cloud'), '#!/bin/sh\n');
    chmodSync(join(T, 'opt/vigil/bin/vigil-cloud'), 0o755);
    for (const f of ['vigil-cloud@.service', 'vigil-cloud.target'])
      copyFileSync(join(unitsDir, f), join(system(), f));
    // The host's targets, slices and sockets, so that After=/Wants= resolve.
    for (const f of readdirSync('/lib/systemd/system'))
      if (/\.(target|slice|socket)$/.test(f) && !existsSync(join(system(), f)))
        copyFileSync(join('/lib/systemd/system', f), join(system(), f));
  });
  afterAll(() => rmSync(T, { recursive: true, force: true }));

  it('verifies clean for a role instance and the target', async () => {
    for (const unit of ['vigil-cloud@api.service', 'vigil-cloud@ingest.service', 'vigil-cloud.target']) {
      const res = await analyze(['verify', `--root=${T}`, `/lib/systemd/system/${unit}`]);
      expect(res.code, res.out).toBe(0);
      expect(res.out.trim(), unit).toBe('');
    }
  });

  it('verify would catch a broken unit (the check can fail)', async () => {
    const broken = readFileSync(join(unitsDir, 'vigil-cloud@.service'), 'utf8').replace(
      'ProtectSystem=strict',
      'ProtectSystm=strict',
    );
    writeFileSync(join(system(), 'vigil-broken@.service'), broken);
    const res = await analyze(['verify', `--root=${T}`, '/lib/systemd/system/vigil-broken@api.service']);
    expect(res.out).toMatch(/Unknown key 'ProtectSystm'/);
  });

  async function exposure(unitFile: string): Promise<number> {
    const res = await analyze(['security', '--offline=true', unitFile]);
    const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(res.out);
    expect(m, res.out).not.toBeNull();
    return Number(m![1]);
  }

  it('systemd-analyze security rates the sandbox 2.0 or better (a basic unit: worse)', async () => {
    const instance = join(T, 'vigil-cloud@api.service');
    copyFileSync(join(unitsDir, 'vigil-cloud@.service'), instance);
    expect(await exposure(instance)).toBeLessThanOrEqual(2.0);
    const basic = join(T, 'basic.service');
    writeFileSync(basic, '[Service]\nExecStart=/bin/true\nUser=nobody\nNoNewPrivileges=yes\n');
    expect(await exposure(basic)).toBeGreaterThan(2.0);
  });

  it('runs as its own user, one config file per instance, and never restarts on a bad config', () => {
    const unit = readFileSync(join(unitsDir, 'vigil-cloud@.service'), 'utf8');
    expect(unit).toMatch(/^User=vigil-cloud$/m);
    expect(unit).toMatch(
      /^ExecStart=\/opt\/vigil\/bin\/vigil-cloud --config \/etc\/vigil\/cloud\/%i\.json$/m,
    );
    expect(unit).toMatch(/^RestartPreventExitStatus=78$/m);
    expect(readFileSync(join(unitsDir, 'vigil-cloud.sysusers'), 'utf8')).toMatch(/^u vigil-cloud /m);
  });
});
