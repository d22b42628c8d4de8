// vigil-updater's pure logic and its unpacker: what a restarted updater does at each journal step, which
// requests it acts on, the health gate through the bake, and every bundle the format forbids refused.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BundleRefusedError,
  decideRequest,
  HealthGate,
  judgeHealth,
  parseUpdaterConfig,
  readTrustedRoot,
  recover,
  requestKey,
  unpackBundle,
  updateRequestSchema,
  updateStatusSchema,
  type Journal,
  type JournalStep,
  type UpdateRequest,
} from '../src/updater/index.js';
import { healthChecks } from '../src/health/checks.js';
import { buildFakeRelease } from './helpers/fake-release.js';
import { rawTar, rawTarGz, type RawEntry } from './helpers/hostile-tar.js';

const work = mkdtempSync(join(tmpdir(), 'vigil-updater-plan-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const request: UpdateRequest = {
  version: '2.0.0',
  channel: 'stable',
  requestedAt: '2026-12-07T10:00:00.000Z',
  rolloutId: 'r-1',
};
const journal = (step: JournalStep, extra: Partial<Journal> = {}): Journal => ({
  v: 1,
  step,
  request,
  requestKey: requestKey(request),
  target: '2.0.0',
  targetRef: '2.0.0',
  previous: '1.0.0',
  previousRef: '/opt/vigil',
  attempt: 1,
  startedAt: '2026-12-07T10:00:01.000Z',
  stepAt: '2026-12-07T10:00:02.000Z',
  reason: null,
  retryable: false,
  ...extra,
});

describe('contract files', () => {
  it('request.json and status.json are exactly the agreed shapes (unknown keys refused)', () => {
    expect(updateRequestSchema.parse(request)).toEqual(request);
    expect(updateRequestSchema.safeParse({ ...request, extra: 1 }).success).toBe(false);
    expect(updateRequestSchema.safeParse({ ...request, version: 'v2' }).success).toBe(false);
    expect(updateRequestSchema.safeParse({ ...request, rolloutId: null }).success).toBe(true);
    const status = {
      state: 'rolled_back',
      current: '1.0.0',
      previous: '2.0.0',
      target: '2.0.0',
      reason: 'x',
      updatedAt: '2026-12-07T10:00:00.000Z',
    };
    expect(updateStatusSchema.parse(status)).toEqual(status);
    expect(updateStatusSchema.safeParse({ ...status, state: 'done' }).success).toBe(false);
  });
});

describe('journal recovery after a crash at each step', () => {
  const cases: [JournalStep, string, string][] = [
    ['downloading', '/opt/vigil', 'retry_from_start'],
    ['staging', '/opt/vigil', 'retry_from_start'],
    ['staged', '/opt/vigil', 'switch'],
    ['switching', '/opt/vigil', 'switch'],
    ['switching', '2.0.0', 'restart_and_bake'],
    ['switched', '2.0.0', 'restart_and_bake'],
    ['baking', '2.0.0', 'restart_and_bake'],
    ['rolling_back', '2.0.0', 'roll_back'],
    ['rolling_back', '/opt/vigil', 'roll_back'],
    ['committed', '2.0.0', 'idle'],
    ['rolled_back', '/opt/vigil', 'idle'],
    ['failed', '/opt/vigil', 'idle'],
  ];
  it.each(cases)('%s with current -> %s: %s', (step, current, kind) => {
    expect(recover(journal(step), current).kind).toBe(kind);
  });
  it('gives up after repeated deaths during download, and leaves a foreign current alone', () => {
    expect(recover(journal('downloading', { attempt: 3 }), '/opt/vigil')).toEqual({
      kind: 'retry_from_start',
      giveUp: true,
    });
    expect(recover(journal('baking'), '3.0.0')).toEqual({ kind: 'superseded', found: '3.0.0' });
    expect(recover(undefined, '/opt/vigil')).toEqual({ kind: 'idle' });
  });
});

describe('which requests are acted on', () => {
  const ctx = {
    current: '1.0.0',
    installed: [] as string[],
    nowMs: Date.parse('2026-12-07T11:00:00Z'),
    retryDelayMs: 30_000,
  };
  it('upgrades to a newer version, ignores the running one and no request', () => {
    expect(decideRequest({ ...ctx, request, journal: undefined })).toEqual({
      kind: 'upgrade',
      target: '2.0.0',
    });
    expect(
      decideRequest({ ...ctx, request: { ...request, version: '1.0.0' }, journal: undefined }).kind,
    ).toBe('none');
    expect(decideRequest({ ...ctx, request: undefined, journal: undefined }).kind).toBe('none');
  });
  it('does not retry a version that failed or rolled back for the same request; a new request tries again', () => {
    for (const step of ['failed', 'rolled_back'] as const)
      expect(decideRequest({ ...ctx, request, journal: journal(step) }).kind).toBe('none');
    const again = { ...request, requestedAt: '2026-12-07T10:30:00.000Z' };
    expect(decideRequest({ ...ctx, request: again, journal: journal('rolled_back') }).kind).toBe('upgrade');
  });
  it('retries a retryable failure (repository unreachable) after a delay', () => {
    const j = journal('failed', { retryable: true, stepAt: '2026-12-07T10:59:50.000Z' });
    expect(decideRequest({ ...ctx, request, journal: j }).kind).toBe('none');
    expect(decideRequest({ ...ctx, nowMs: ctx.nowMs + 60_000, request, journal: j }).kind).toBe('upgrade');
  });
  it('downgrades only to a release kept on the device (TUF refuses to download an older one)', () => {
    const down = { ...request, version: '0.9.0' };
    expect(decideRequest({ ...ctx, request: down, journal: undefined }).kind).toBe('refuse');
    expect(decideRequest({ ...ctx, installed: ['0.9.0'], request: down, journal: undefined })).toEqual({
      kind: 'switch_local',
      target: '0.9.0',
    });
  });
});

describe('health gate', () => {
  const good = {
    ok: true,
    version: '2.0.0',
    checks: healthChecks({
      uplink: 'online',
      cameras: [],
      modelFailures: [],
      outbox: { ok: true, detail: 'writable' },
    }),
  };
  const all = ['uplink', 'cameras', 'models', 'outbox'];
  it('judges version, every required check, and reachability', () => {
    expect(judgeHealth(200, good, '2.0.0', all)).toEqual({ healthy: true, reason: null });
    expect(judgeHealth(200, good, '3.0.0', all).reason).toMatch(/version "2.0.0", not 3.0.0/);
    expect(judgeHealth(null, null, '2.0.0', all, 'ECONNREFUSED').reason).toMatch(/unreachable: ECONNREFUSED/);
    const bad = {
      ...good,
      ok: false,
      checks: { ...good.checks, uplink: { ok: false, detail: 'uplink offline' } },
    };
    expect(judgeHealth(503, bad, '2.0.0', all).reason).toBe('check uplink not ok: uplink offline');
    expect(judgeHealth(503, bad, '2.0.0', ['cameras']).reason).toMatch(/answered 503/);
    expect(judgeHealth(200, { ok: true, version: '2.0.0' }, '2.0.0', all).reason).toMatch(
      /no "uplink" check/,
    );
  });
  it('commits when healthy at the end of the bake, rolls back when never healthy or failing after healthy', () => {
    const ok = { healthy: true, reason: null };
    const no = { healthy: false, reason: 'check cameras not ok' };
    let g = new HealthGate(0, 10_000, 3);
    expect(g.feed(no, 1000)).toEqual({ kind: 'wait' });
    expect(g.feed(ok, 2000)).toEqual({ kind: 'wait' });
    expect(g.feed(ok, 10_000)).toEqual({ kind: 'commit' });
    g = new HealthGate(0, 10_000, 3);
    expect(g.feed(no, 5000)).toEqual({ kind: 'wait' });
    expect(g.feed(no, 10_001)).toEqual({
      kind: 'rollback',
      reason: 'never healthy within the 10s bake: check cameras not ok',
    });
    g = new HealthGate(0, 10_000, 3);
    g.feed(ok, 1000);
    g.feed(no, 2000);
    expect(g.feed(no, 3000).kind).toBe('wait');
    expect(g.feed(no, 4000)).toEqual({
      kind: 'rollback',
      reason: 'unhealthy for 3 probes after being healthy: check cameras not ok',
    });
  });
  it('the agent checks: streaming cameras, inferring models, uplink online, outbox writable', () => {
    const c = healthChecks({
      uplink: 'backing_off',
      cameras: [
        { cameraId: 'a', state: 'streaming', detects: true, framesProcessed: 0 },
        { cameraId: 'b', state: 'connecting', lastError: 'refused', detects: false, framesProcessed: 0 },
      ],
      modelFailures: [],
      outbox: { ok: false, detail: 'not writable: readonly' },
    });
    expect(c).toEqual({
      uplink: { ok: false, detail: 'uplink backing_off' },
      cameras: { ok: false, detail: 'b connecting (refused)' },
      models: { ok: false, detail: 'no inference yet on a' },
      outbox: { ok: false, detail: 'not writable: readonly' },
    });
  });
});

describe('config', () => {
  it('is strict and has production defaults', () => {
    const c = parseUpdaterConfig({
      repository: { kind: 'device', trustedRootFile: '/opt/vigil/share/1.root.json' },
    });
    expect(c.restart.command).toEqual(['/usr/bin/systemctl', 'restart', 'vigil-agent.service']);
    expect(c.health.url).toBe('http://127.0.0.1:9464/healthz');
    expect(() =>
      parseUpdaterConfig({ repository: { kind: 'device', trustedRootFile: 'x' }, bake: 1 }),
    ).toThrow(/Unrecognized key/);
    expect(() => parseUpdaterConfig({ repository: { kind: 'ftp' } })).toThrow(/CONFIG|repository/);
  });
});

describe('the trusted root: the administrator file wins, else the one the package shipped', () => {
  const dir = join(work, 'roots');
  const admin = join(dir, 'etc-release-root.json');
  const packaged = join(dir, 'usr-share-release-root.json');
  it('reads the administrator file when there is one, the packaged one when there is none, and says which when neither', () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(packaged, '{"packaged":1}');
    // The package's updater.json names both (tools/release/debian/updater.json).
    const shipped = parseUpdaterConfig(
      JSON.parse(readFileSync(new URL('../../tools/release/debian/updater.json', import.meta.url), 'utf8')),
    );
    expect(shipped.repository).toMatchObject({
      trustedRootFile: '/etc/vigil/release-root.json',
      packagedRootFile: '/usr/share/vigil-agent/release-root.json',
    });
    expect(readTrustedRoot(admin, packaged).toString()).toBe('{"packaged":1}');
    writeFileSync(admin, '{"admin":1}');
    expect(readTrustedRoot(admin, packaged).toString()).toBe('{"admin":1}');
    rmSync(admin);
    expect(() => readTrustedRoot(admin)).toThrow(
      /cannot read repository.trustedRootFile .* no repository.packagedRootFile/,
    );
    rmSync(packaged);
    expect(() => readTrustedRoot(admin, packaged)).toThrow(
      /neither repository.trustedRootFile .* nor repository.packagedRootFile/,
    );
  });

  it('does not fall back when the administrator file exists but cannot be read', () => {
    writeFileSync(packaged, '{"packaged":1}');
    // A directory where the file should be: present, unreadable as a file.
    mkdirSync(admin, { recursive: true });
    expect(() => readTrustedRoot(admin, packaged)).toThrow(/cannot read repository.trustedRootFile/);
    rmSync(admin, { recursive: true });
  });
});

describe('unpacking a bundle', () => {
  const limits = { maxUnpackedBytes: 10 * 1024 * 1024, maxEntries: 1000 };
  let n = 0;
  const staging = () => join(work, `staging-${++n}`);

  it('unpacks a real bundle (release build archive code) whole, with modes, and verifies every file', async () => {
    const { bundle } = await buildFakeRelease(work, '2.0.0', 'good');
    const dir = staging();
    const m = await unpackBundle(bundle, dir, '2.0.0', limits);
    expect(m.version).toBe('2.0.0');
    for (const f of m.files) expect(existsSync(join(dir, f.path))).toBe(true);
    const { mode } = statSync(join(dir, 'bin', 'vigil-agent'));
    expect(mode & 0o777).toBe(0o755);
    await expect(unpackBundle(bundle, staging(), '2.0.1', limits)).rejects.toThrow(
      /says version 2.0.0, the signed release is 2.0.1/,
    );
  });

  const manifest = (
    files: { path: string; data: string; mode?: '0755' | '0644' }[],
    version = '9.0.0',
  ): string =>
    JSON.stringify({
      format: 1,
      name: 'vigil-agent',
      version,
      minUpgradeFrom: '0.1.0',
      platform: 'linux-x64',
      entrypoint: 'bin/vigil-agent',
      files: files.map((f) => ({
        path: f.path,
        size: Buffer.byteLength(f.data),
        sha256: createHash('sha256').update(f.data).digest('hex'),
        mode: f.mode ?? '0644',
      })),
    });
  const ok = { path: 'bin/vigil-agent', data: '#!/bin/sh\n', mode: '0755' as const };
  const head = (extra: { path: string; data: string }[] = []): RawEntry[] => [
    { name: 'manifest.json', data: manifest([ok, ...extra]) },
    { name: 'bin', type: '5' },
    { name: 'bin/vigil-agent', data: ok.data },
  ];
  async function refused(
    entries: RawEntry[] | Buffer,
    reason: string,
    message: RegExp,
    lim = limits,
  ): Promise<void> {
    const file = join(work, `hostile-${++n}.tar.gz`);
    writeFileSync(file, Buffer.isBuffer(entries) ? entries : rawTarGz(entries));
    const err = await unpackBundle(file, staging(), '9.0.0', lim).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BundleRefusedError);
    expect(err).toMatchObject({ reason, code: 'BUNDLE_REFUSED', retryable: false });
    expect((err as Error).message).toMatch(message);
  }

  it('accepts the minimal hand-made archive (the hostile cases below differ by one entry)', async () => {
    const file = join(work, 'minimal.tar.gz');
    writeFileSync(file, rawTarGz(head()));
    const dir = staging();
    await unpackBundle(file, dir, '9.0.0', limits);
    expect(readFileSync(join(dir, 'bin', 'vigil-agent'), 'utf8')).toBe('#!/bin/sh\n');
  });
  it('refuses ".." and absolute paths (traversal), also through a GNU long name', async () => {
    await refused([...head(), { name: '../evil', data: 'x' }], 'traversal', /"\.\.\/evil" refused/);
    await refused([...head(), { name: '/etc/cron.d/evil', data: 'x' }], 'traversal', /absolute path/);
    await refused([...head(), { name: 'bin/../../evil', data: 'x' }], 'traversal', /bin\/\.\.\/\.\.\/evil/);
    const long = `${'a/'.repeat(60)}../../x`;
    await refused(
      [...head(), { name: '././@LongLink', type: 'L', data: `${long}\0` }, { name: 'short', data: 'x' }],
      'traversal',
      /\.\.\/\.\.\/x/,
    );
    await refused(
      [{ name: 'manifest.json', data: manifest([{ path: '../x', data: 'x' }]) }],
      'traversal',
      /"\.\.\/x"/,
    );
  });
  it('refuses symbolic and hard links, devices and fifos', async () => {
    await refused(
      [...head(), { name: 'lib', type: '2', linkname: '/etc' }],
      'link',
      /"lib" is a symbolic link/,
    );
    await refused([...head(), { name: 'x', type: '1', linkname: 'bin/vigil-agent' }], 'link', /hard link/);
    await refused([...head(), { name: 'dev', type: '3' }], 'special_file', /tar type "3"/);
    await refused([...head(), { name: 'fifo', type: '6' }], 'special_file', /tar type "6"/);
  });
  it('refuses files not in the manifest, other bytes, missing files, and a manifest not first', async () => {
    await refused([...head(), { name: 'extra', data: 'x' }], 'unexpected_file', /extra is not listed/);
    await refused(
      [
        { name: 'manifest.json', data: manifest([ok]) },
        { name: 'bin/vigil-agent', data: '#!/bin/XX\n' },
      ],
      'digest_mismatch',
      /hashes to/,
    );
    await refused(
      [
        { name: 'manifest.json', data: manifest([ok, { path: 'lib/x', data: 'y' }]) },
        { name: 'bin/vigil-agent', data: ok.data },
      ],
      'missing_file',
      /lib\/x/,
    );
    await refused(
      [{ name: 'bin/vigil-agent', data: ok.data }],
      'bad_manifest',
      /first bundle entry must be manifest.json/,
    );
    await refused(
      [...head(), { name: 'bin/vigil-agent', data: ok.data }],
      'unexpected_file',
      /appears twice/,
    );
  });
  it('refuses more bytes or entries than the limits, a decompression bomb, and a truncated archive', async () => {
    const big = { path: 'big', data: 'z'.repeat(5000) };
    await refused(
      [{ name: 'manifest.json', data: manifest([ok, big]) }],
      'oversized',
      /unpacks to 5010 bytes, more than the 4096 allowed/,
      { maxUnpackedBytes: 4096, maxEntries: 100 },
    );
    await refused(head(), 'oversized', /more than 2 entries/, { maxUnpackedBytes: 4096, maxEntries: 2 });
    // 64 MiB of zeros after the archive end gzip to ~64 KiB: stopped by the decompressed-bytes bound.
    const bomb = gzipSync(Buffer.concat([rawTar(head()).subarray(0, -1024), Buffer.alloc(64 * 1024 * 1024)]));
    await refused(bomb, 'oversized', /decompresses to more/, { maxUnpackedBytes: 4096, maxEntries: 10 });
    const whole = rawTar(head());
    await refused(gzipSync(whole.subarray(0, 1536 + 100)), 'corrupt', /truncated|ends in the middle/);
    await refused(Buffer.from('not gzip at all'), 'corrupt', /not a readable gzip/);
  });
});
