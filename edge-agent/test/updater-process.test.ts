// vigil-updater as a real process (built from source once, as the release build makes it) against a real TUF
// repository (keys made here, tuf-js verifying), real release bundles built with the release build's archive
// code, and a real agent process (a tiny /healthz server installed as the release) run by a supervisor that
// plays systemd. Upgrades commit; bad releases roll back by themselves within the bake; kill -9 at each
// journal step ends on a working release; attacks are refused with a clear error and counted.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitForExit } from '@vigil/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildFakeRelease } from './helpers/fake-release.js';
import { rawTarGz } from './helpers/hostile-tar.js';
import { TestTufRepo } from './helpers/tuf-repo.js';
import { buildUpdater, UpdaterDevice } from './helpers/updater-device.js';

const work = mkdtempSync(join(tmpdir(), 'vigil-updater-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let repo: TestTufRepo;
let v1Stage: string;
let updaterModule: string;
const devices: UpdaterDevice[] = [];
let n = 0;

async function device(config: Record<string, unknown> = {}): Promise<UpdaterDevice> {
  const d = new UpdaterDevice(join(work, `device-${++n}`), v1Stage, repo, updaterModule);
  devices.push(d);
  await d.setUp(config);
  return d;
}

/** A bundle the release keys sign although it breaks the format (a compromised build): made entry by entry. */
function hostileBundle(version: string, extra: Parameters<typeof rawTarGz>[0]): string {
  const body = '#!/bin/sh\n';
  const manifest = JSON.stringify({
    format: 1,
    name: 'vigil-agent',
    version,
    minUpgradeFrom: '0.1.0',
    platform: 'linux-x64',
    entrypoint: 'bin/vigil-agent',
    files: [
      {
        path: 'bin/vigil-agent',
        size: body.length,
        sha256: createHash('sha256').update(body).digest('hex'),
        mode: '0755',
      },
    ],
  });
  const file = join(work, `hostile-${version}.tar.gz`);
  writeFileSync(
    file,
    rawTarGz([
      { name: 'manifest.json', data: manifest },
      { name: 'bin', type: '5' },
      { name: 'bin/vigil-agent', data: body },
      ...extra,
    ]),
  );
  return file;
}

beforeAll(async () => {
  mkdirSync(join(work, 'build'));
  updaterModule = await buildUpdater(work);
  repo = new TestTufRepo(join(work, 'repo'));
  v1Stage = (await buildFakeRelease(join(work, 'build'), '1.0.0', 'good')).staged;
  repo.publish((await buildFakeRelease(join(work, 'build'), '2.0.0', 'good')).bundle, '2.0.0');
  repo.publish((await buildFakeRelease(join(work, 'build'), '3.0.0', 'crash')).bundle, '3.0.0');
  repo.publish((await buildFakeRelease(join(work, 'build'), '4.0.0', 'unhealthy')).bundle, '4.0.0');
  repo.publish(hostileBundle('5.0.0', [{ name: '../../escaped', data: 'x' }]), '5.0.0');
  repo.publish(hostileBundle('6.0.0', [{ name: 'lib', type: '2', linkname: '/etc' }]), '6.0.0');
  const tampered = repo.publish(
    (await buildFakeRelease(join(work, 'build'), '7.0.0', 'good')).bundle,
    '7.0.0',
  );
  // The server (or the path to it) swaps bytes after signing: same length, other content.
  const bytes = readFileSync(tampered);
  bytes[bytes.length - 20]! ^= 0xff;
  writeFileSync(tampered, bytes);
  repo.publish(
    (await buildFakeRelease(join(work, 'build'), '8.0.0', 'good', { padding: 2 * 1024 * 1024 })).bundle,
    '8.0.0',
  );
}, 120_000);

afterEach(async () => {
  for (const d of devices.splice(0)) await d.stop();
});

describe('vigil-updater: upgrade, automatic rollback', () => {
  it('upgrades 1.0.0 -> 2.0.0: staged, switched, baked, committed; the agent runs 2.0.0', async () => {
    const d = await device();
    d.startUpdater();
    await expect.poll(() => d.status()?.state, { timeout: 60_000 }).toBe('idle');
    expect(d.status()).toMatchObject({ state: 'idle', current: '1.0.0', target: null });
    // Hostile or broken request.json: ignored, counted once (not at every poll).
    // Written as the contract says (tmp + rename): a plain write can be read half-done (empty, then whole), which
    // is two different invalid files and counted twice.
    const hostile = join(d.stateDir, 'update', 'request.json');
    writeFileSync(`${hostile}.tmp`, '{"version":"../../etc","channel":"stable"}');
    renameSync(`${hostile}.tmp`, hostile);
    await expect
      .poll(() => d.metric('vigil_updater_requests_invalid_total', ''), { timeout: 20_000 })
      .toBe(1);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await d.metric('vigil_updater_requests_invalid_total', '')).toBe(1);
    expect(d.status()?.state).toBe('idle');
    d.request('2.0.0');
    const s = await d.waitState(['committed', 'rolled_back', 'failed']);
    expect(s, d.output.slice(-3000)).toMatchObject({
      state: 'committed',
      current: '2.0.0',
      previous: '1.0.0',
      target: '2.0.0',
      reason: null,
    });
    expect(d.currentTarget()).toBe('2.0.0');
    expect(d.currentIsComplete()).toBe(true);
    expect(await d.agentVersion()).toBe('2.0.0');
    expect(readdirSync(d.releases).sort()).toEqual(['2.0.0', 'current']);
    expect(await d.metric('vigil_updater_updates_total', '{result="committed"}')).toBe(1);
    // The same request again does nothing.
    d.request('2.0.0');
    await new Promise((r) => setTimeout(r, 1000));
    expect(d.status()?.state).toBe('committed');
  }, 120_000);

  it('a 3.0.0 that crashes at start rolls back to 1.0.0 by itself within the bake time, with the reason', async () => {
    const d = await device();
    d.startUpdater();
    const t0 = Date.now();
    d.request('3.0.0');
    await d.waitState(['baking']);
    const tBake = Date.now();
    const s = await d.waitState(['committed', 'rolled_back', 'failed']);
    expect(s, d.output.slice(-3000)).toMatchObject({
      state: 'rolled_back',
      current: '1.0.0',
      previous: '3.0.0',
      target: '3.0.0',
    });
    expect(s.reason).toMatch(/never healthy within the 3s bake: agent \/healthz unreachable: ECONNREFUSED/);
    // Bake 3 s, plus probe and restart slack on a loaded machine.
    expect(Date.now() - tBake).toBeLessThan(3000 + 8000);
    expect(d.currentTarget()).toMatch(/opt-vigil$/);
    await expect.poll(() => d.agentVersion(), { timeout: 20_000 }).toBe('1.0.0');
    expect(readFileSync(d.agentLog, 'utf8')).toMatch(/"version":"3.0.0","mode":"crash"/);
    expect(await d.metric('vigil_updater_updates_total', '{result="rolled_back"}')).toBe(1);
    expect(Date.now() - t0).toBeLessThan(60_000);
  }, 120_000);

  it('a 4.0.0 whose cameras never stream rolls back to 1.0.0 with the failing check as the reason', async () => {
    const d = await device();
    d.startUpdater();
    d.request('4.0.0');
    const s = await d.waitState(['committed', 'rolled_back', 'failed']);
    expect(s).toMatchObject({ state: 'rolled_back', current: '1.0.0', target: '4.0.0' });
    expect(s.reason).toBe('never healthy within the 3s bake: check cameras not ok: lobby connecting');
    await expect.poll(() => d.agentVersion(), { timeout: 20_000 }).toBe('1.0.0');
    // Not retried for the same request; a new request (a new requestedAt) would be.
    await new Promise((r) => setTimeout(r, 1000));
    expect(d.status()?.state).toBe('rolled_back');
  }, 120_000);
});

describe('vigil-updater: kill -9 at each journal step, then a restart', () => {
  const good: string[] = ['downloading', 'staging', 'staged', 'switching', 'switched', 'baking', 'committed'];
  it.each(good)(
    'upgrade to 2.0.0 killed after "%s": ends on a working release, current always whole',
    async (step) => {
      const d = await device();
      const u = d.startUpdater({ VIGIL_UPDATER_FAULT: `kill-after:${step}` });
      d.request('2.0.0');
      const exit = await waitForExit(u, 60_000);
      expect(exit, d.output.slice(-3000)).toEqual({ code: null, signal: 'SIGKILL' });
      expect(d.currentIsComplete()).toBe(true);
      d.startUpdater();
      const s = await d.waitState(['committed', 'rolled_back', 'failed']);
      expect(s.state, d.output.slice(-3000)).toBe('committed');
      expect(d.currentIsComplete()).toBe(true);
      await expect.poll(() => d.agentVersion(), { timeout: 20_000 }).toBe(d.currentVersion());
      expect(d.currentVersion()).toBe('2.0.0');
    },
    180_000,
  );

  const bad: string[] = ['baking', 'rolling_back', 'rolled_back'];
  it.each(bad)(
    'a crashing 3.0.0 killed after "%s": ends back on 1.0.0 running',
    async (step) => {
      const d = await device();
      const u = d.startUpdater({ VIGIL_UPDATER_FAULT: `kill-after:${step}` });
      d.request('3.0.0');
      expect(await waitForExit(u, 60_000)).toEqual({ code: null, signal: 'SIGKILL' });
      expect(d.currentIsComplete()).toBe(true);
      d.startUpdater();
      const s = await d.waitState(['committed', 'rolled_back', 'failed']);
      expect(s.state, d.output.slice(-3000)).toBe('rolled_back');
      expect(d.currentVersion()).toBe('1.0.0');
      await expect.poll(() => d.agentVersion(), { timeout: 20_000 }).toBe('1.0.0');
    },
    180_000,
  );
});

describe('vigil-updater: attacks refused with a clear error and counted', () => {
  const attacks: [string, string, string, RegExp][] = [
    ['tampered bundle', '7.0.0', 'tampered', /refused \(tampered\): .*does not match its signed hash/],
    [
      'path traversal entry',
      '5.0.0',
      'traversal',
      /refused \(traversal\): bundle entry "\.\.\/\.\.\/escaped" refused/,
    ],
    ['symbolic link entry', '6.0.0', 'link', /refused \(link\): bundle entry "lib" is a symbolic link/],
    ['oversized bundle', '8.0.0', 'oversized', /refused \(oversized\): .*more than the 1048576 allowed/],
  ];
  it.each(attacks)(
    '%s (%s): failed, still on 1.0.0, nothing installed',
    async (_what, version, reason, message) => {
      const d = await device();
      d.startUpdater();
      d.request(version);
      const s = await d.waitState(['committed', 'rolled_back', 'failed']);
      expect(s).toMatchObject({ state: 'failed', current: '1.0.0', target: version });
      expect(s.reason).toMatch(message);
      expect(await d.metric('vigil_updater_refused_total', `{reason="${reason}"}`)).toBe(1);
      expect(readdirSync(d.releases).filter((x) => x !== 'current')).toEqual([]);
      expect([d.dataDir, d.dir].filter((x) => existsSync(join(x, 'escaped')))).toEqual([]);
      expect(await d.agentVersion()).toBe('1.0.0');
    },
    120_000,
  );
});
