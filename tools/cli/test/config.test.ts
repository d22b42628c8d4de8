import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ensureDevConfigSigningKey,
  ensureDevSigningKey,
  parseCloudConfig,
  startCloud,
  type CloudApp,
} from '@vigil/cloud';
import { natsConfig, useDatabase, useNats, usePki } from '@vigil/testkit';
import { runCli } from '../src/index.js';

// The CLI against the real cloud: config documents, a device's config, issuing it, and the models store.
describe('vigil config / vigil models (against the cloud API)', () => {
  const pki = usePki({ services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const dbUrl = useDatabase();
  const tmp = mkdtempSync(join(tmpdir(), 'vigil-cli-config-'));
  let cloud: CloudApp;

  beforeAll(async () => {
    const key = ensureDevSigningKey(pki().dir);
    const signing = await ensureDevConfigSigningKey(join(tmp, 'keys'));
    const svc = pki().services.cloud!;
    cloud = await startCloud(
      parseCloudConfig({
        http: { port: 0 },
        database: { url: dbUrl() },
        nats: {
          servers: [`tls://localhost:${nats().port}`],
          tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key },
        },
        auth: { jwksFile: key.jwksFile },
        configSigning: { privateJwkFile: signing.privateJwkFile },
        models: { dir: join(tmp, 'models') },
        log: { level: 'silent' },
      }),
    );
    await cloud.registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' });
  });
  afterAll(async () => {
    await cloud?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(['--api', `http://127.0.0.1:${cloud.httpPort}`, '--pki', pki().dir, ...args], {
      io: { out: (t) => out.push(t), err: (t) => err.push(t) },
    });
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  it('sets and gets documents, shows and issues a device config', async () => {
    const file = join(tmp, 'site.json');
    writeFileSync(file, JSON.stringify({ cameras: [{ id: 'lobby', url: 'rtsp://cam/lobby' }] }));
    const set = await cli(
      'config',
      'set',
      '--scope',
      'site',
      '--id',
      'hq',
      '--file',
      file,
      '--tenant',
      'acme',
    );
    expect(set, set.err).toMatchObject({ code: 0, out: 'site hq: revision 1 stored' });
    const got = await cli('--json', 'config', 'get', '--scope', 'site', '--id', 'hq', '--tenant', 'acme');
    expect(JSON.parse(got.out)).toMatchObject({ revision: 1, body: { cameras: [{ id: 'lobby' }] } });
    writeFileSync(file, JSON.stringify({ cameras: [{ id: 'lobby', url: 'rtsp://x', fps: 1 }] }));
    const bad = await cli(
      'config',
      'set',
      '--scope',
      'site',
      '--id',
      'hq',
      '--file',
      file,
      '--tenant',
      'acme',
    );
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('fps');

    const issued = await cli('config', 'issue', 'gw-1', '--tenant', 'acme');
    expect(issued, issued.err).toMatchObject({ code: 0, out: 'device gw-1: version 1 issued' });
    const device = await cli('config', 'device', 'gw-1', '--tenant', 'acme');
    expect(device.out).toMatch(/desired version: +1\n/);
    expect(device.out).toMatch(/state: +pending/);
    expect((await cli('config', 'device', 'nope', '--tenant', 'acme')).code).toBe(1);
  });

  it('uploads and lists models', async () => {
    const bytes = randomBytes(4096);
    const file = join(tmp, 'm.onnx');
    writeFileSync(file, bytes);
    const sha = createHash('sha256').update(bytes).digest('hex');
    const up = await cli('models', 'upload', file, '--tenant', 'acme');
    expect(up, up.err).toMatchObject({ code: 0, out: `${sha} (4096 bytes) stored` });
    const list = await cli('--json', 'models', 'list', '--tenant', 'acme');
    expect(JSON.parse(list.out)).toMatchObject({ sha256: sha, size: 4096 });
  });
});
