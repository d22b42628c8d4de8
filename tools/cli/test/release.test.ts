// Agent releases end to end against the real served repository: keys made by `vigil release root init`,
// `vigil release publish` through the API, a device enrolled over gRPC reading the repository over mutual TLS
// (FetchRelease) with the edge-agent ReleaseClient (tuf-js). Then every attack of issue 14 part 5, each refused
// with its reason and counted.
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, MetadataKind, TargetFile, Targets } from '@tufjs/models';
import { generateTufKey, tufSignWith, TUF_SPEC_VERSION, type TufKeyFile } from '@vigil/cloud';
import { credentials } from '@grpc/grpc-js';
import { createCsr } from '@vigil/certs';
import {
  grpcReleaseSource,
  ReleaseClient,
  type DeviceIdentity,
  type ReleaseFileSource,
} from '@vigil/edge-agent';
import { DeviceServiceClient, type EnrollResponse } from '@vigil/proto';
import { Registry, type Counter } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/index.js';
import { useCliCloud } from './support/cloud.js';

const work = mkdtempSync(join(tmpdir(), 'vigil-release-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const keysDir = join(work, 'keys');
const repoDir = join(work, 'repo');

/** A small real bundle: a gzipped tarball with a version file. */
function makeBundle(version: string, padding = 0): string {
  const src = join(work, `src-${version}`);
  mkdirSync(join(src, 'vigil-agent'), { recursive: true });
  writeFileSync(join(src, 'vigil-agent', 'VERSION'), `${version}\n`);
  if (padding > 0) writeFileSync(join(src, 'vigil-agent', 'pad.bin'), Buffer.alloc(padding, 7));
  const out = join(work, `vigil-agent-${version}-linux-x64.tar.gz`);
  execFileSync('tar', ['-czf', out, '-C', src, 'vigil-agent']);
  return out;
}

/** A bundle in the release format's shape (manifest.json first), built from a `dirty` work tree or not. */
function manifestBundle(version: string, dirty: boolean): string {
  const src = join(work, `src-${version}-${dirty ? 'dirty' : 'clean'}`);
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'VERSION'), `${version}\n`);
  const manifest = {
    format: 1,
    name: 'vigil-agent',
    version,
    commit: dirty ? 'c0ffee-dirty' : 'c0ffee',
    dirty,
  };
  writeFileSync(join(src, 'manifest.json'), JSON.stringify(manifest));
  mkdirSync(join(src, 'out'));
  const out = join(src, 'out', `vigil-agent-${version}-linux-x64.tar.gz`);
  execFileSync('tar', ['-czf', out, '-C', src, 'manifest.json', 'VERSION']);
  return out;
}

const silentIo = (lines: string[]) => ({
  out: (t: string) => lines.push(t),
  err: (t: string) => lines.push(t),
});

describe('agent releases: TUF repository, publish, device client, attacks', () => {
  // The keys must exist before the cloud starts (it loads the online key): registered before useCliCloud.
  beforeAll(async () => {
    const lines: string[] = [];
    const code = await runCli(['release', 'root', 'init', '--keys-dir', keysDir], { io: silentIo(lines) });
    expect(code, lines.join('\n')).toBe(0);
    expect(lines.join('\n')).toMatch(/WARNING: .* ROOT and TARGETS private keys/);
  });
  const { cli, cloud, pki } = useCliCloud((p) => ({
    identity: {
      caCertFile: p.caCert,
      caKeyFile: p.caKey,
      certificateTtlSeconds: 3600,
      minRenewIntervalSeconds: 0,
    },
    grpc: { enabled: true, port: 0, tls: { certFile: p.cloudApi.cert, keyFile: p.cloudApi.key } },
    releases: {
      dir: repoDir,
      onlineKeyFile: join(keysDir, 'online.key.json'),
      publisherTenant: 'vigil',
    },
  }));
  const publish = (bundle: string, version: string, ...extra: string[]) =>
    cli(
      'release',
      'publish',
      bundle,
      '--agent-version',
      version,
      '--channel',
      'stable',
      '--min-version',
      '1.0.0',
      '--keys-dir',
      keysDir,
      '--tenant',
      'vigil',
      '--role',
      'admin',
      ...extra,
    );
  const root1 = (): Buffer => readFileSync(join(keysDir, 'root', '1.root.json'));
  const targetsKey = (): TufKeyFile =>
    JSON.parse(readFileSync(join(keysDir, 'targets.key.json'), 'utf8')) as TufKeyFile;

  let source: ReleaseFileSource;
  const metrics = new Registry();
  let clients = 0;
  const client = (
    opts: { now?: () => Date; maxBundleBytes?: number; initialRoot?: Buffer } = {},
  ): ReleaseClient => {
    const dir = join(work, `device-${++clients}`);
    return new ReleaseClient({
      metadataDir: join(dir, 'metadata'),
      downloadDir: join(dir, 'downloads'),
      initialRoot: opts.initialRoot ?? root1(),
      source,
      maxBundleBytes: opts.maxBundleBytes ?? 10 * 1024 * 1024,
      metrics,
      ...(opts.now ? { now: opts.now } : {}),
    });
  };
  const refusals = async (reason: string): Promise<number> => {
    const c = metrics.getSingleMetric('vigil_agent_update_refused_total') as Counter<'reason'> | undefined;
    const v = (await c?.get())?.values.find((x) => x.labels.reason === reason);
    return v?.value ?? 0;
  };
  const cloudRefusals = async (reason: string): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${cloud().httpPort}/metrics`)).text();
    const m = new RegExp(`vigil_cloud_release_refused_total\\{reason="${reason}"\\} (\\d+)`).exec(text);
    return m ? Number(m[1]) : 0;
  };
  /** Expects `p` to be refused with `reason`, and the refusal counter to move by one. */
  const refused = async (p: () => Promise<unknown>, reason: string, message: RegExp): Promise<void> => {
    const before = await refusals(reason);
    const err = await p().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ name: 'UpdateRefusedError', reason });
    expect((err as Error).message).toMatch(message);
    expect(await refusals(reason)).toBe(before + 1);
  };
  const repoFile = (...p: string[]): string => join(repoDir, ...p);
  const latest = (role: string): number =>
    Math.max(
      0,
      ...readdirSync(repoFile('metadata'))
        .map((n: string) => new RegExp(`^(\\d+)\\.${role}\\.json$`).exec(n)?.[1])
        .filter(Boolean)
        .map(Number),
    );
  /** Replaces a repository file for the duration of `fn` (what an attacker on the path or the server does). */
  async function swapped(file: string, bytes: Buffer, fn: () => Promise<void>): Promise<void> {
    const saved = readFileSync(file);
    writeFileSync(file, bytes);
    try {
      await fn();
    } finally {
      writeFileSync(file, saved);
    }
  }

  let bundle11: string;
  let sha11: string;

  beforeAll(async () => {
    const token = await cli(
      'enroll-token',
      'create',
      '--tenant',
      'acme',
      '--site',
      'hq',
      '--role',
      'installer',
      '--json',
    );
    expect(token.code, token.err).toBe(0);
    // Enroll over gRPC as the agent does (a CSR for a key made here); NATS runs in TLS mode, so no NATS key.
    const endpoint = `localhost:${cloud().grpcPort!}`;
    const caPem = readFileSync(pki().caCert, 'utf8');
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const grpcClient = new DeviceServiceClient(endpoint, credentials.createSsl(Buffer.from(caPem)));
    const res = await new Promise<EnrollResponse>((resolve, reject) =>
      grpcClient.enroll(
        {
          token: (JSON.parse(token.out) as { token: string }).token,
          csrPem: createCsr({ privateKeyPem: keyPem, commonName: 'gw-rel-1' }),
          agentVersion: '1.0.0',
          hardwareId: 'hw-rel-1',
          natsPublicKey: '',
        },
        (err, v) => (err ? reject(err) : resolve(v)),
      ),
    );
    grpcClient.close();
    const material: DeviceIdentity['material'] = {
      caPem,
      keyPem,
      certPem: res.certificatePem,
      natsJwt: '',
      natsSeed: '',
    };
    source = grpcReleaseSource(() => ({ material, grpcEndpoint: endpoint }));
  });

  it('root push, then publish: the cloud signs snapshot and timestamp (1 day) with its online key', async () => {
    const push = await cli('release', 'root', 'push', '--keys-dir', keysDir, '--tenant', 'vigil');
    expect(push.code, push.err).toBe(0);
    expect(push.out).toContain('root version 1 pushed');
    bundle11 = makeBundle('1.1.0');
    sha11 = createHash('sha256').update(readFileSync(bundle11)).digest('hex');
    const res = await publish(bundle11, '1.1.0', '--json');
    expect(res.code, res.err).toBe(0);
    expect(JSON.parse(res.out)).toMatchObject({
      version: '1.1.0',
      channel: 'stable',
      sha256: sha11,
      targets_version: 1,
    });
    expect(readdirSync(repoFile('targets'))).toContain(`${sha11}.vigil-agent-1.1.0-linux-x64.tar.gz`);
    const ts = JSON.parse(readFileSync(repoFile('metadata', 'timestamp.json'), 'utf8')) as {
      signed: { expires: string };
    };
    const life = new Date(ts.signed.expires).getTime() - Date.now();
    expect(life).toBeGreaterThan(23 * 3600_000);
    expect(life).toBeLessThanOrEqual(24 * 3600_000);
    // A second root push has nothing to do.
    expect((await cli('release', 'root', 'push', '--keys-dir', keysDir, '--tenant', 'vigil')).err).toMatch(
      /already has/,
    );
  });

  it('only admins of the publisher tenant publish; every tenant reads', async () => {
    const other = await publish(bundle11, '1.1.0', '--tenant', 'acme');
    expect(other.code).toBe(1);
    expect(other.err).toMatch(/403/);
    const viewer = await cli(
      'release',
      'publish',
      bundle11,
      '--agent-version',
      '1.1.0',
      '--channel',
      'stable',
      '--min-version',
      '1.0.0',
      '--keys-dir',
      keysDir,
      '--tenant',
      'vigil',
      '--role',
      'viewer',
    );
    expect(viewer.code).toBe(1);
    const read = await fetch(
      `http://127.0.0.1:${cloud().httpPort}/v1/releases/repository/metadata/1.root.json`,
      {
        headers: { authorization: `Bearer ${await viewerToken()}` },
      },
    );
    expect(read.status).toBe(200);
    expect(await read.json()).toEqual(JSON.parse(root1().toString('utf8')));
    const traversal = await fetch(
      `http://127.0.0.1:${cloud().httpPort}/v1/releases/repository/metadata/..%2F..%2Fkeys`,
      {
        headers: { authorization: `Bearer ${await viewerToken()}` },
      },
    );
    expect(traversal.status).toBe(404);
  });

  it('a device refreshes over mTLS, finds the newest release of its channel and downloads it verified', async () => {
    const c = client();
    const found = await c.latest('stable', '1.0.0');
    expect(found).toMatchObject({
      name: 'vigil-agent-1.1.0-linux-x64.tar.gz',
      version: '1.1.0',
      minVersion: '1.0.0',
      sha256: sha11,
    });
    expect(await c.latest('beta', '1.0.0')).toBeNull();
    const { path } = await c.download(found!.name, '1.0.0');
    expect(readFileSync(path)).toEqual(readFileSync(bundle11));
    expect(execFileSync('tar', ['-xzOf', path, 'vigil-agent/VERSION'], { encoding: 'utf8' })).toBe('1.1.0\n');
  });

  it('tampered bundle: same length, other bytes on the server -> refused (tampered)', async () => {
    const file = repoFile('targets', `${sha11}.vigil-agent-1.1.0-linux-x64.tar.gz`);
    const bad = readFileSync(file);
    bad.writeUInt8(bad.readUInt8(bad.length - 10) ^ 0xff, bad.length - 10);
    await swapped(file, bad, () =>
      refused(
        () => client().download('vigil-agent-1.1.0-linux-x64.tar.gz', '1.0.0'),
        'tampered',
        /does not match its signed hash/,
      ),
    );
  });

  it('wrong signing key: the cloud refuses the upload; targets forged onto the server are refused by the device', async () => {
    const forgedKey = generateTufKey();
    const forged = forgeTargets(latest('targets') + 1, forgedKey, { ...currentTargets() });
    const before = await cloudRefusals('wrong_signing_key');
    const res = await putTargets(forged);
    expect(res.status).toBe(422);
    expect(((await res.json()) as { detail: string }).detail).toMatch(/not signed by the targets key/);
    expect(await cloudRefusals('wrong_signing_key')).toBe(before + 1);
    // A compromised server writes it anyway and signs snapshot/timestamp with the online key.
    const file = repoFile('metadata', `${forged.signed.version}.targets.json`);
    writeFileSync(file, JSON.stringify(forged.toJSON()));
    try {
      await cloud().releases!.service.refresh(true);
      await refused(
        () => client().latest('stable', '1.0.0'),
        'wrong_signing_key',
        /not signed by the keys the trusted root lists/,
      );
    } finally {
      rmSync(file);
      await cloud().releases!.service.refresh(true);
    }
  });

  it('expired timestamp (freeze): a device whose clock is 2 days on refuses the 1-day timestamp', async () => {
    const later = new Date(Date.now() + 2 * 86_400_000);
    await refused(
      () => client({ now: () => later }).latest('stable', '1.0.0'),
      'expired_metadata',
      /timestamp.json expired/,
    );
    // The same repository is fine for a device on time.
    expect(await client().latest('stable', '1.0.0')).not.toBeNull();
  });

  it('rollback: a release not newer than the installed one, and older metadata than already trusted', async () => {
    await refused(
      () => client().download('vigil-agent-1.1.0-linux-x64.tar.gz', '1.2.0'),
      'rollback',
      /not newer than the installed 1.2.0/,
    );
    expect(await client().latest('stable', '1.1.0')).toBeNull();
    // Metadata rollback: a device trusts timestamp N, the server then serves N-1.
    const old = readFileSync(repoFile('metadata', 'timestamp.json'));
    await cloud().releases!.service.refresh(true);
    const c = client();
    await c.latest('stable', '1.0.0');
    await swapped(repoFile('metadata', 'timestamp.json'), old, () =>
      refused(
        () => c.latest('stable', '1.0.0'),
        'metadata_rollback',
        /older than what this device already trusts/,
      ),
    );
  });

  it('mix-and-match: a snapshot from another point in time under the current name is refused', async () => {
    await cloud().releases!.service.refresh(true);
    const n = latest('snapshot');
    const older = readFileSync(repoFile('metadata', `${n - 1}.snapshot.json`));
    await swapped(repoFile('metadata', `${n}.snapshot.json`), older, () =>
      refused(
        () => client().latest('stable', '1.0.0'),
        'mix_and_match',
        /do not (belong together|match)|does not match/,
      ),
    );
  });

  it('path traversal and links: refused by the cloud, by the device, and never served', async () => {
    const traversal = forgeTargets(latest('targets') + 1, targetsKey(), {
      ...currentTargets(),
      '../../etc/cron.d/x': new TargetFile({
        path: '../../etc/cron.d/x',
        length: 10,
        hashes: { sha256: 'a'.repeat(64) },
        unrecognizedFields: { custom: { version: '9.9.9', channel: 'stable', minVersion: '1.0.0' } },
      }),
    });
    const before = await cloudRefusals('bad_target_path');
    expect((await putTargets(traversal)).status).toBe(400);
    expect(await cloudRefusals('bad_target_path')).toBe(before + 1);
    await refused(
      () => client().download('../../etc/cron.d/x', '1.0.0'),
      'bad_target_path',
      /not a bundle name/,
    );
    // Signed with the real targets key and written past the cloud's checks (a compromised server): the device refuses.
    const file = repoFile('metadata', `${traversal.signed.version}.targets.json`);
    writeFileSync(file, JSON.stringify(traversal.toJSON()));
    try {
      await cloud().releases!.service.refresh(true);
      await refused(() => client().latest('stable', '1.0.0'), 'bad_target_path', /not a bundle name/);
    } finally {
      rmSync(file);
      await cloud().releases!.service.refresh(true);
    }
    // A link in the repository is never followed: FetchRelease answers NOT_FOUND.
    const link = `${'b'.repeat(64)}.vigil-agent-6.6.6-linux-x64.tar.gz`;
    symlinkSync('/etc/passwd', repoFile('targets', link));
    const chunks: Uint8Array[] = [];
    await expect(
      (async () => {
        for await (const c of source(`targets/${link}`, 0)) chunks.push(c.data);
      })(),
    ).rejects.toMatchObject({ code: 5 });
    expect(chunks).toEqual([]);
  });

  it('oversized download: a signed length above the cap is refused before a byte is fetched; the cloud refuses too', async () => {
    await refused(
      () => client({ maxBundleBytes: 64 }).download('vigil-agent-1.1.0-linux-x64.tar.gz', '1.0.0'),
      'oversized',
      /more than the 64 allowed/,
    );
    await expect(
      (async () => {
        for await (const _ of source(`targets/${sha11}.vigil-agent-1.1.0-linux-x64.tar.gz`, 64)) void _;
      })(),
    ).rejects.toMatchObject({ code: 8 });
  });

  it('root rotation: the device follows root 1 -> 2 and keeps verifying releases signed by the new targets key', async () => {
    const rotate = await cli('release', 'root', 'rotate', '--keys-dir', keysDir, '--targets');
    expect(rotate.code, rotate.err).toBe(0);
    expect((await cli('release', 'root', 'push', '--keys-dir', keysDir, '--tenant', 'vigil')).out).toContain(
      'root version 2 pushed',
    );
    const bundle12 = makeBundle('1.2.0');
    const res = await publish(bundle12, '1.2.0');
    expect(res.code, res.err).toBe(0);
    const c = client(); // trusts root 1 only
    const found = await c.latest('stable', '1.1.0');
    expect(found?.version).toBe('1.2.0');
    const { path } = await c.download(found!.name, '1.1.0');
    expect(readFileSync(path)).toEqual(readFileSync(bundle12));
  });

  it('a dirty build ("dirty": true in its manifest): publish refuses it before signing; the cloud refuses its upload, counted', async () => {
    const dirty = manifestBundle('1.3.0', true);
    const targetsBefore = latest('targets');
    const res = await publish(dirty, '1.3.0');
    expect(res.code, res.out).toBe(1);
    expect(res.err).toMatch(
      /uncommitted changes .*never published.*pnpm release:build.*without --allow-dirty/s,
    );
    expect(latest('targets')).toBe(targetsBefore);
    // Any other client of the API: the upload itself is refused, counted, and nothing of it is kept.
    const bytes = readFileSync(dirty);
    const sha = createHash('sha256').update(bytes).digest('hex');
    const before = await cloudRefusals('dirty_build');
    const up = await fetch(`http://127.0.0.1:${cloud().httpPort}/v1/releases/bundles/${sha}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${await adminToken()}`, 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    expect(up.status).toBe(400);
    expect(((await up.json()) as { detail: string }).detail).toMatch(/uncommitted changes/);
    expect(await cloudRefusals('dirty_build')).toBe(before + 1);
    expect(readdirSync(repoFile('incoming'))).not.toContain(sha);
    // The same bundle from a clean tree is published: what is refused is the mark.
    const clean = await publish(manifestBundle('1.3.0', false), '1.3.0');
    expect(clean.code, clean.err).toBe(0);
    expect(latest('targets')).toBe(targetsBefore + 1);
  });

  // --- helpers that reach the repository as an attacker would ---
  function currentTargets(): Record<string, TargetFile> {
    const md = Metadata.fromJSON(
      MetadataKind.Targets,
      JSON.parse(readFileSync(repoFile('metadata', `${latest('targets')}.targets.json`), 'utf8')) as never,
    );
    return md.signed.targets;
  }
  function forgeTargets(
    version: number,
    key: TufKeyFile,
    targets: Record<string, TargetFile>,
  ): Metadata<Targets> {
    const md = new Metadata(
      new Targets({
        version,
        specVersion: TUF_SPEC_VERSION,
        expires: new Date(Date.now() + 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
        targets,
      }),
    );
    tufSignWith(md, key);
    return md;
  }
  async function adminToken(): Promise<string> {
    const t = await cli('token', 'mint', '--tenant', 'vigil', '--role', 'admin');
    return t.out.trim();
  }
  async function viewerToken(): Promise<string> {
    const t = await cli('token', 'mint', '--tenant', 'acme', '--role', 'viewer');
    return t.out.trim();
  }
  async function putTargets(md: Metadata<Targets>): Promise<Response> {
    return fetch(`http://127.0.0.1:${cloud().httpPort}/v1/releases/metadata/targets`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${await adminToken()}`, 'content-type': 'application/json' },
      body: JSON.stringify(md.toJSON()),
    });
  }
});
