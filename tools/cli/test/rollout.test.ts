import { mkdtempSync, writeFileSync } from 'node:fs';
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

// `vigil rollout` against the real cloud. No agent runs here: issued devices stay pending, which is enough to
// create, pause, resume, abort and watch a rollout end (rolled back: nobody took it).
describe('vigil rollout (against the cloud API)', () => {
  const pki = usePki({ services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const dbUrl = useDatabase();
  let cloud: CloudApp;
  const dir = mkdtempSync(join(tmpdir(), 'vigil-cli-rollout-'));
  const bodyFile = join(dir, 'body.json');

  beforeAll(async () => {
    const key = ensureDevSigningKey(pki().dir);
    const cfgKey = await ensureDevConfigSigningKey(join(dir, 'cfg'));
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
        configSigning: { privateJwkFile: cfgKey.privateJwkFile },
        log: { level: 'silent' },
      }),
    );
    for (const id of ['gw-1', 'gw-2', 'gw-3'])
      await cloud.registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: id });
    await cloud.db
      .updateTable('devices')
      .set({ enrolled_at: new Date() })
      .where('tenant_id', '=', 'acme')
      .execute();
    writeFileSync(bodyFile, JSON.stringify({ attributes: { rev: '2' } }));
  });
  afterAll(async () => {
    await cloud?.stop();
  });

  async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(['--api', `http://127.0.0.1:${cloud.httpPort}`, '--pki', pki().dir, ...args], {
      io: { out: (t) => out.push(t), err: (t) => err.push(t) },
    });
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  it('creates, lists, pauses, resumes, aborts and watches a rollout to its end', async () => {
    const created = await cli(
      '--json',
      'rollout',
      'create',
      '--tenant',
      'acme',
      '--body-file',
      bodyFile,
      '--canary',
      '1',
      '--waves',
      '50,100',
      '--window',
      '2',
      '--max-inference-ratio',
      '2.5',
      '--max-event-rate',
      '60',
    );
    expect(created.code, created.err).toBe(0);
    const createdView = JSON.parse(created.out) as { id: string; spec: { gates: Record<string, unknown> } };
    expect(createdView.spec.gates).toMatchObject({ maxInferenceRatio: 2.5, eventRate: { max: 60 } });
    const id = createdView.id;
    const list = await cli('rollout', 'list', '--tenant', 'acme');
    expect(list.out).toMatch(new RegExp(`^${id} (pending|running) wave=`));
    expect((await cli('rollout', 'pause', id, '--tenant', 'acme')).out).toMatch(/ paused /);
    expect((await cli('rollout', 'pause', id, '--tenant', 'acme')).code).toBe(1);
    expect((await cli('rollout', 'resume', id, '--tenant', 'acme')).out).toMatch(/ running /);
    const status = await cli('rollout', 'status', id, '--tenant', 'acme');
    const block = status.out.split('\n');
    expect(block).toHaveLength(4); // the summary, then the canary, 50 % and 100 %
    expect(block[1]).toMatch(/^ {2}[> ] canary +\[/);
    const aborted = await cli('rollout', 'abort', id, '--tenant', 'acme', '--reason', 'test');
    // The cloud's executor runs concurrently: by the time the answer is read it may have started the rollback.
    expect(aborted.out).toMatch(
      / (aborted|rolling_back|rolled_back) .*reason="aborted by dev-admin@acme: test"/,
    );
    const watch = await cli('rollout', 'status', id, '--tenant', 'acme', '--watch', '--interval', '200');
    const lines = watch.out.split('\n');
    expect(lines[lines.length - 1]).toMatch(/ rolled_back /);
    expect(new Set(lines).size).toBe(lines.length); // one line per change
    expect(watch.code).toBe(1); // it did not complete
    expect(
      (await cli('rollout', 'status', '0190f5c2-8a3e-7b1c-9d2e-4f5a6b7c8d9e', '--tenant', 'acme')).code,
    ).toBe(1);
    expect((await cli('rollout', 'create', '--tenant', 'acme')).code).toBe(2);
    expect(
      (await cli('rollout', 'create', '--tenant', 'acme', '--effective', '--max-inference-ratio', '0.5'))
        .code,
    ).toBe(2);
  }, 30_000);
});
