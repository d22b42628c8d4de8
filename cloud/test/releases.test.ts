// The release repository's pure rules and the cloud's timestamp refresh (a real PostgreSQL for the writer lock,
// a real filesystem repository, an injected clock).
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Metadata, Root, TargetFile, Targets } from '@tufjs/models';
import { compareSemver } from '@vigil/proto';
import { useDatabase } from '@vigil/testkit';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../src/storage/db.js';
import { generateKey, parseKeyFile, publicKeyOf, signWith, TUF_SPEC_VERSION } from '../src/releases/keys.js';
import { parseRepoPath } from '../src/releases/layout.js';
import { ReleaseRefreshJob } from '../src/releases/refresh-job.js';
import { FsReleaseRepository } from '../src/releases/repository.js';
import { ReleaseService } from '../src/releases/service.js';

describe('release repository paths', () => {
  it('names only the layout: no traversal, no directories, no other files', () => {
    expect(parseRepoPath('metadata/timestamp.json')).toMatchObject({ kind: 'metadata', role: 'timestamp' });
    expect(parseRepoPath('metadata/12.targets.json')).toMatchObject({ kind: 'metadata', role: 'targets' });
    const sha = 'a'.repeat(64);
    expect(parseRepoPath(`targets/${sha}.vigil-agent-1.2.3-linux-x64.tar.gz`)).toMatchObject({
      kind: 'target',
      sha256: sha,
    });
    for (const bad of [
      'metadata/../keys/online.key.json',
      'metadata/0.root.json',
      'metadata/root.json',
      '/etc/passwd',
      'incoming/' + sha,
      `targets/${sha}.vigil-agent-1.2.3-linux-x64.tar.gz/..`,
      `targets/${sha}.../../x-linux-x64.tar.gz`.replace('...', '..'),
      `targets/../${sha}.vigil-agent-1-linux-x64.tar.gz`,
    ])
      expect(parseRepoPath(bad), bad).toBeNull();
  });

  it('orders semantic versions by precedence', () => {
    const sorted = [
      '1.0.0-alpha',
      '1.0.0-alpha.1',
      '1.0.0-beta',
      '1.0.0-beta.2',
      '1.0.0-beta.11',
      '1.0.0-rc.1',
      '1.0.0',
      '1.2.0',
      '1.10.0',
      '2.0.0',
    ];
    for (let i = 1; i < sorted.length; i++) {
      expect(compareSemver(sorted[i - 1]!, sorted[i]!), `${sorted[i - 1]} < ${sorted[i]}`).toBe(-1);
      expect(compareSemver(sorted[i]!, sorted[i - 1]!)).toBe(1);
    }
    expect(compareSemver('1.2.3+build.5', '1.2.3')).toBe(0);
  });

  it('key files: round trip, and a public key that is not the private key’s is refused', () => {
    const k = generateKey();
    expect(parseKeyFile(JSON.stringify(k), 'k')).toEqual(k);
    const other = generateKey();
    expect(() => parseKeyFile(JSON.stringify({ ...k, public: other.public }), 'k.json')).toThrow(
      /does not match/,
    );
    expect(() => parseKeyFile('{}', 'k.json')).toThrow(/not a Vigil TUF key file/);
  });
});

describe('timestamp refresh (cloud, online key)', () => {
  const dbUrl = useDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-releases-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let clock = new Date('2030-01-01T00:00:00Z');
  const metrics = new Registry();
  let service: ReleaseService;
  let job: ReleaseRefreshJob;
  let close: () => Promise<void>;
  const repo = new FsReleaseRepository(dir);
  const keys = { root: generateKey(), targets: generateKey(), online: generateKey() };
  const timestamp = (): { version: number; expires: string } =>
    (
      JSON.parse(readFileSync(join(dir, 'metadata', 'timestamp.json'), 'utf8')) as {
        signed: { version: number; expires: string };
      }
    ).signed;

  beforeAll(async () => {
    const db = createDb(dbUrl(), 2, () => undefined);
    close = () => db.destroy();
    await repo.init();
    const log = pino({ level: 'silent' });
    service = new ReleaseService({
      repo,
      db,
      onlineKey: keys.online,
      log,
      metrics,
      now: () => clock,
      timestampExpirySeconds: 86_400,
      snapshotExpirySeconds: 7 * 86_400,
      maxBundleBytes: 1 << 20,
    });
    job = new ReleaseRefreshJob(service, 60_000, log, metrics, () => clock);
    const root = new Root({
      version: 1,
      specVersion: TUF_SPEC_VERSION,
      expires: '2031-01-01T00:00:00Z',
      consistentSnapshot: true,
    });
    root.addKey(publicKeyOf(keys.root), 'root');
    root.addKey(publicKeyOf(keys.targets), 'targets');
    root.addKey(publicKeyOf(keys.online), 'snapshot');
    root.addKey(publicKeyOf(keys.online), 'timestamp');
    const rootMd = new Metadata(root);
    signWith(rootMd, keys.root);
    await service.putRoot(rootMd.toJSON());
    const bundle = Buffer.from('bundle bytes');
    const sha = createHash('sha256').update(bundle).digest('hex');
    await service.stageBundle(sha, Readable.from([bundle]));
    const name = 'vigil-agent-1.0.0-linux-x64.tar.gz';
    const targets = new Targets({
      version: 1,
      specVersion: TUF_SPEC_VERSION,
      expires: '2031-01-01T00:00:00Z',
    });
    targets.addTarget(
      new TargetFile({
        path: name,
        length: bundle.length,
        hashes: { sha256: sha },
        unrecognizedFields: { custom: { version: '1.0.0', channel: 'stable', minVersion: '0.1.0' } },
      }),
    );
    const md = new Metadata(targets);
    signWith(md, keys.targets);
    await service.putTargets(md.toJSON());
  });
  afterAll(async () => close());

  it('signs a 1-day timestamp at publish, keeps it while fresh, renews it past half its life', async () => {
    expect(timestamp()).toMatchObject({ version: 1, expires: '2030-01-02T00:00:00Z' });
    clock = new Date('2030-01-01T06:00:00Z');
    await job.runOnce();
    expect(timestamp().version).toBe(1);
    clock = new Date('2030-01-01T12:30:00Z');
    await job.runOnce();
    expect(timestamp()).toMatchObject({ version: 2, expires: '2030-01-02T12:30:00Z' });
    // The snapshot (7 days) is still fresh: the new timestamp names the same one.
    expect(await repo.latestVersion('snapshot')).toBe(1);
    clock = new Date('2030-01-05T00:00:00Z');
    await job.runOnce();
    expect(await repo.latestVersion('snapshot')).toBe(2);
    expect(timestamp().version).toBe(3);
    expect(await metrics.getSingleMetricAsString('vigil_cloud_release_signed_total')).toMatch(
      /role="timestamp"} 3/,
    );
  });

  it('refuses a targets version that is not the next one, and a root that skips a version', async () => {
    const t = new Metadata(
      new Targets({ version: 1, specVersion: TUF_SPEC_VERSION, expires: '2031-01-01T00:00:00Z' }),
    );
    signWith(t, keys.targets);
    await expect(service.putTargets(t.toJSON())).rejects.toMatchObject({
      code: 'RELEASE_VERSION_CONFLICT',
      reason: 'version_rollback',
    });
    const r = new Root({
      version: 3,
      specVersion: TUF_SPEC_VERSION,
      expires: '2031-01-01T00:00:00Z',
      consistentSnapshot: true,
    });
    r.addKey(publicKeyOf(keys.root), 'root');
    const rm = new Metadata(r);
    signWith(rm, keys.root);
    await expect(service.putRoot(rm.toJSON())).rejects.toMatchObject({ code: 'RELEASE_VERSION_CONFLICT' });
    expect(await metrics.getSingleMetricAsString('vigil_cloud_release_refused_total')).toMatch(
      /reason="version_rollback"} 2/,
    );
  });
});
