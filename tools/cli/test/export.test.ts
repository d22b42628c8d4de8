// `vigil export`, `vigil export verify` and `vigil erase` against the real cloud (PostgreSQL, a filesystem media
// store, the API, the erasure job). An export must verify offline with the published key, and each kind of
// tampering must be detected with a clear message: a changed file, a missing file, an extra file, a changed
// manifest, a wrong key, a truncated archive.
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTar, TAR_END, tarEntry } from '@vigil/cloud';
import { listStore, seedObjects, type Seeded } from '../../../cloud/test/support/privacy.js';
import { useCliCloud } from './support/cloud.js';

const work = mkdtempSync(join(tmpdir(), 'vigil-cli-export-'));
const storeDir = join(work, 'media');
const keyFile = join(work, 'export-key.pem');
// The cloud's export signing key, made for this test only (a mounted file in production).
writeFileSync(
  keyFile,
  generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  { mode: 0o600 },
);

describe('vigil export and vigil erase (against the cloud API)', () => {
  const c = useCliCloud({
    media: { dir: storeDir },
    privacy: {
      erasure: { pollIntervalSeconds: 1, batchSize: 5 },
      export: { signingKeyFile: keyFile, maxMedia: 30 },
    },
  });
  const now = Date.now();
  const HOUR = 3_600_000;
  let seeded: Seeded[] = [];
  const archive = join(work, 'evidence.tar');
  const pub = join(work, 'public.pem');
  const range = ['--from', new Date(now - HOUR).toISOString(), '--to', new Date(now).toISOString()];

  beforeAll(async () => {
    const objects = [];
    for (let i = 0; i < 12; i++)
      objects.push({
        tenant: 'acme',
        site: 'hq',
        device: 'gw-1',
        camera: 'lobby',
        track: `t${i % 2}`,
        at: new Date(now - 1000 - i * 240_000),
      });
    for (let i = 0; i < 40; i++)
      objects.push({
        tenant: 'acme',
        site: 'hq',
        device: 'gw-1',
        camera: 'yard',
        track: 'y',
        at: new Date(now - 1000 - i * 60_000),
      });
    for (let i = 0; i < 3; i++)
      objects.push({
        tenant: 'globex',
        site: 'plant',
        device: 'gw-1',
        camera: 'lobby',
        track: 'g',
        at: new Date(now - 1000 - i * 60_000),
      });
    seeded = await seedObjects(c.cloud().db, storeDir, objects, 2048);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const lobby = (): Seeded[] => seeded.filter((o) => o.tenant === 'acme' && o.camera === 'lobby');

  it('exports a camera range as a signed archive that verifies offline', async () => {
    const r = await c.cli(
      'export',
      '--tenant',
      'acme',
      '--device',
      'gw-1',
      '--camera',
      'lobby',
      ...range,
      '--reason',
      'case 17',
      '-o',
      archive,
    );
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^wrote .*evidence\.tar: export [0-9a-f-]{36}, 12 events, 12 media files/);
    const k = await c.cli('export', 'public-key', '--tenant', 'acme', '-o', pub);
    expect(k.code, k.err).toBe(0);
    expect(readFileSync(pub, 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----/);

    const v = await c.cli('export', 'verify', archive, '--public-key', pub);
    expect(v.code, v.err).toBe(0);
    expect(v.out).toMatch(
      /^OK .*: 14 files \(\d+ bytes\) match the manifest, signed by key [0-9a-f]{32}; export .* of tenant acme by /,
    );

    // What is inside: exactly the scope's events and media bytes.
    const files = readTar(readFileSync(archive), 1000);
    const media = files.filter((f) => f.name.startsWith('media/'));
    expect(new Set(media.map((f) => f.name))).toEqual(new Set(lobby().map((o) => `media/${o.mediaId}.jpg`)));
    for (const f of media)
      expect(f.data.equals(lobby().find((o) => f.name.includes(o.mediaId))!.bytes)).toBe(true);
    const events = JSON.parse(files.find((f) => f.name === 'events.json')!.data.toString()) as {
      event_id: string;
    }[];
    expect(new Set(events.map((e) => e.event_id))).toEqual(new Set(lobby().map((o) => o.eventId)));

    // Chain of custody: who, when, scope and the manifest's digest on the audit log.
    const manifest = files.find((f) => f.name === 'manifest.json')!.data;
    const entry = await c
      .cloud()
      .db.selectFrom('audit_log')
      .selectAll()
      .where('action', '=', 'evidence.export')
      .executeTakeFirstOrThrow();
    expect(entry.actor).toBe('dev-admin@acme');
    expect(entry.detail).toMatchObject({
      manifest_sha256: createHash('sha256').update(manifest).digest('hex'),
      scope: { kind: 'camera', device_id: 'gw-1', camera_id: 'lobby' },
      files: 14,
    });
  });

  /** The archive rebuilt with `change` applied to its files (as a tamperer with a tar tool would). */
  function tampered(
    name: string,
    change: (files: { name: string; data: Buffer }[]) => { name: string; data: Buffer }[],
  ): string {
    const files = change(
      readTar(readFileSync(archive), 1000).map((f) => ({ name: f.name, data: Buffer.from(f.data) })),
    );
    const out = join(work, `${name}.tar`);
    writeFileSync(out, Buffer.concat([...files.map((f) => tarEntry(f.name, f.data, 0)), TAR_END]));
    return out;
  }

  it('detects every kind of tampering, with the file it concerns', async () => {
    const target = `media/${lobby()[3]!.mediaId}.jpg`;
    const cases: Array<[string, string, RegExp]> = [
      [
        'changed file',
        tampered('changed', (fs) =>
          fs.map((f) =>
            f.name === target
              ? {
                  ...f,
                  data: Buffer.concat([
                    f.data.subarray(0, 100),
                    Buffer.from([f.data[100]! ^ 1]),
                    f.data.subarray(101),
                  ]),
                }
              : f,
          ),
        ),
        new RegExp(
          `does not match its signed manifest \\(1 problem\\)\\n  tampered: ${target} \\(sha256 [0-9a-f]{64}, 2048 bytes; the manifest says`,
        ),
      ],
      [
        'missing file',
        tampered('missing', (fs) => fs.filter((f) => f.name !== target)),
        new RegExp(`missing: ${target} \\(listed in the manifest, not in the archive\\)`),
      ],
      [
        'extra file',
        tampered('extra', (fs) => [...fs, { name: 'media/planted.jpg', data: Buffer.from('x') }]),
        /extra: media\/planted\.jpg \(in the archive, not in the manifest\)/,
      ],
      [
        'changed manifest',
        tampered('manifest', (fs) =>
          fs.map((f) =>
            f.name === 'manifest.json'
              ? {
                  ...f,
                  data: Buffer.from(
                    f.data.toString().replace(/"created_by": "[^"]*"/, '"created_by": "someone-else"'),
                  ),
                }
              : f,
          ),
        ),
        /manifest\.json is not the manifest that was signed/,
      ],
      [
        'no signature',
        tampered('unsigned', (fs) => fs.filter((f) => f.name !== 'manifest.jws')),
        /the archive has no manifest\.jws/,
      ],
    ];
    for (const [what, file, message] of cases) {
      const r = await c.cli('export', 'verify', file, '--public-key', pub);
      expect(r.code, what).toBe(1);
      expect(r.err, what).toMatch(/^vigil: FAILED /);
      expect(r.err, what).toMatch(message);
    }
    // The wrong key: another Ed25519 key does not verify the signature, and the message says whose it was.
    const other = join(work, 'other.pem');
    writeFileSync(other, generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }));
    const wrong = await c.cli('export', 'verify', archive, '--public-key', other);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(
      /does not verify with this public key \(key id [0-9a-f]{32}\); the archive says it was signed by key id [0-9a-f]{32}: wrong key/,
    );
    // A truncated archive, and a key that is not Ed25519.
    const cut = join(work, 'cut.tar');
    writeFileSync(cut, readFileSync(archive).subarray(0, 5000));
    expect((await c.cli('export', 'verify', cut, '--public-key', pub)).err).toMatch(
      /the archive ends first \(truncated\?\)/,
    );
    const rsa = join(work, 'rsa.pem');
    writeFileSync(
      rsa,
      generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'pem', type: 'spki' }),
    );
    expect((await c.cli('export', 'verify', archive, '--public-key', rsa)).err).toMatch(
      /an rsa key; Ed25519 expected/,
    );
  });

  it('refuses a scope over the configured limit, and another tenant’s event ids like missing ones', async () => {
    const big = await c.cli(
      'export',
      '--tenant',
      'acme',
      '--device',
      'gw-1',
      '--camera',
      'yard',
      ...range,
      '--reason',
      'r',
      '-o',
      join(work, 'big.tar'),
    );
    expect(big.code).toBe(1);
    expect(big.err).toMatch(
      /API answered 422 .*too large for one evidence export: 40 media objects \(limit 30\)/,
    );
    const globex = seeded.filter((o) => o.tenant === 'globex');
    const cross = await c.cli(
      'export',
      '--tenant',
      'acme',
      '--event',
      globex[0]!.eventId,
      '--reason',
      'r',
      '-o',
      join(work, 'x.tar'),
    );
    expect(cross.code).toBe(1);
    expect(cross.err).toMatch(/API answered 404/);
    expect(listStore(storeDir).size).toBe(seeded.length); // exports change nothing
  });

  it('vigil erase follows the request to the end, with progress, and the bytes are gone', async () => {
    const r = await c.cli(
      'erase',
      '--tenant',
      'acme',
      '--device',
      'gw-1',
      '--camera',
      'lobby',
      ...range,
      '--reason',
      'DSR 4471',
      '--yes',
    );
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(
      /^erasure [0-9a-f-]{36}: done; media 12 erased, 0 held, 0 failed; events 12 erased, 0 held$/,
    );
    expect(r.err).toMatch(/erasure [0-9a-f-]{36}: (pending|running)/);
    const left = listStore(storeDir);
    expect(left.size).toBe(seeded.length - 12);
    for (const o of lobby()) expect(left.has(o.key)).toBe(false);
    // Without --yes nothing is sent.
    const no = await c.cli('erase', '--tenant', 'acme', '--site', 'hq', '--reason', 'x');
    expect(no.code).toBe(2);
    expect(no.err).toMatch(/add --yes/);
  });
});
