import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ensureDevSigningKey,
  FsMediaStore,
  MediaRepository,
  mediaKeyFor,
  parseCloudConfig,
  startCloud,
  type CloudApp,
} from '@vigil/cloud';
import { natsConfig, useDatabase, useNats, usePki } from '@vigil/testkit';
import { runCli } from '../src/index.js';

// `vigil media get|erase` and `vigil audit` against the real cloud API (media index in PostgreSQL, bytes in
// a filesystem MediaStore).
describe('vigil media and vigil audit (against the cloud API)', () => {
  const pki = usePki({ services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const dbUrl = useDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-cli-media-'));
  const out = mkdtempSync(join(tmpdir(), 'vigil-cli-media-out-'));
  let cloud: CloudApp;
  const id = '0193a0b4-1c2d-7e3f-8a4b-5c6d7e8f9a0b';
  const bytes = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(1000)]);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  let key: string;

  beforeAll(async () => {
    const signing = ensureDevSigningKey(pki().dir);
    const svc = pki().services.cloud!;
    cloud = await startCloud(
      parseCloudConfig({
        http: { port: 0 },
        database: { url: dbUrl() },
        nats: {
          servers: [`tls://localhost:${nats().port}`],
          tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key },
        },
        auth: { jwksFile: signing.jwksFile },
        media: { dir },
        log: { level: 'silent' },
      }),
    );
    const capturedAt = new Date();
    key = mediaKeyFor({ tenantId: 'acme', mediaId: id, capturedAt, contentType: 'image/jpeg', sha256 });
    await new FsMediaStore(dir).put(key, bytes);
    await new MediaRepository(cloud.db).insert({
      tenantId: 'acme',
      mediaId: id,
      siteId: 'hq',
      deviceId: 'gw-1',
      cameraId: 'lobby',
      eventId: '0193a0b4-1c2d-7e3f-8a4b-000000000001',
      contentType: 'image/jpeg',
      sha256,
      sizeBytes: bytes.length,
      redacted: true,
      capturedAt,
      storedAt: new Date(),
      storageKey: key,
    });
  });
  afterAll(async () => {
    await cloud?.stop();
    rmSync(dir, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  });

  async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    const o: string[] = [];
    const e: string[] = [];
    const code = await runCli(['--api', `http://127.0.0.1:${cloud.httpPort}`, '--pki', pki().dir, ...args], {
      io: { out: (t) => o.push(t), err: (t) => e.push(t) },
    });
    return { code, out: o.join('\n'), err: e.join('\n') };
  }

  it('downloads a snapshot to a file, checked against its digest, and the read shows on the audit log', async () => {
    const file = join(out, 'snap.jpg');
    const r = await cli('media', 'get', id, '--tenant', 'acme', '-o', file);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe(`wrote ${bytes.length} bytes (image/jpeg, sha256 ${sha256}) to ${file}`);
    expect(readFileSync(file).equals(bytes)).toBe(true);

    const audit = await cli('--json', 'audit', '--tenant', 'acme', '--action', 'media.read');
    expect(audit.code, audit.err).toBe(0);
    const entries = audit.out.split('\n').map((l) => JSON.parse(l) as { actor: string; resource: string });
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ actor: 'dev-operator@acme', resource: `media:acme/${id}` });

    // A viewer has no media grant; another tenant sees nothing.
    const viewer = await cli('media', 'get', id, '--tenant', 'acme', '--role', 'viewer', '-o', file);
    expect(viewer.code).toBe(1);
    expect(viewer.err).toContain('403');
    const other = await cli('media', 'get', id, '--tenant', 'globex', '-o', join(out, 'x.jpg'));
    expect(other.code).toBe(1);
    expect(other.err).toContain(`no media ${id} that this token may see`);
    expect(existsSync(join(out, 'x.jpg'))).toBe(false);
  });

  it('erases with --reason and --yes only; afterwards get says it was deleted', async () => {
    const noYes = await cli('media', 'erase', id, '--tenant', 'acme', '--reason', 'request 7');
    expect(noYes.code).toBe(2);
    expect(noYes.err).toContain('add --yes');
    expect(existsSync(join(dir, key))).toBe(true);

    const r = await cli('media', 'erase', id, '--tenant', 'acme', '--reason', 'request 7', '--yes');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(new RegExp(`^media ${id} erased at \\d{4}-`));
    expect(existsSync(join(dir, key))).toBe(false);

    const again = await cli('media', 'erase', id, '--tenant', 'acme', '--reason', 'again', '--yes');
    expect(again.out).toContain('was already deleted (erasure)');
    const get = await cli('media', 'get', id, '--tenant', 'acme', '-o', join(out, 'y.jpg'));
    expect(get.code).toBe(1);
    expect(get.err).toContain(`media ${id} was deleted`);

    const audit = await cli('audit', '--tenant', 'acme', '--action', 'media.erase');
    expect(audit.out.split('\n')[0]).toMatch(/^SEQ\s+AT\s+ACTOR\s+ACTION\s+OUTCOME\s+RESOURCE$/);
    expect(audit.out).toContain(`dev-admin@acme`);
    expect(audit.out).toContain(`media:acme/${id}`);
  });
});
