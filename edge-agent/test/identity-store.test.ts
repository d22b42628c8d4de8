import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IdentityError, IdentityStore, parseCreds } from '../src/identity/index.js';
import { IDS, issueIdentity, tempDir } from './helpers/identity-fixtures.js';

const modeOf = (p: string) => statSync(p).mode & 0o777;

function expectInvalid(fn: () => unknown, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(IdentityError);
  expect((caught as IdentityError).code).toBe('IDENTITY_INVALID');
  expect((caught as Error).message).toMatch(pattern);
}

describe('IdentityStore', () => {
  let tmp: ReturnType<typeof tempDir>;
  let dir: string;
  let warnings: string[];
  let store: IdentityStore;
  beforeEach(() => {
    tmp = tempDir('identity-store');
    dir = join(tmp.dir, 'identity');
    warnings = [];
    store = new IdentityStore(dir, { onWarning: (m) => warnings.push(m) });
  });
  afterEach(() => tmp.cleanup());

  it('is empty until something is saved', () => {
    expect(store.exists()).toBe(false);
    expect(store.load()).toBeUndefined();
  });

  it('saves and loads an identity: private modes, stable paths, creds nats.js can parse', () => {
    const issued = issueIdentity();
    const saved = store.save(issued.info, issued.material);
    expect(saved).toMatchObject({
      ...IDS,
      natsUrls: ['tls://localhost:4222'],
      grpcEndpoint: 'localhost:7443',
    });
    expect(saved.notAfter.getTime()).toBeGreaterThan(Date.now());
    expect(saved.files.cert).toBe(join(dir, 'current', 'device.crt'));
    expect(modeOf(dir)).toBe(0o700);
    expect(modeOf(saved.files.key)).toBe(0o600);
    expect(modeOf(saved.files.creds)).toBe(0o600);
    expect(modeOf(saved.files.cert)).toBe(0o644);
    expect(modeOf(saved.files.ca)).toBe(0o644);
    expect(parseCreds(readFileSync(saved.files.creds, 'utf8'))).toEqual({
      jwt: issued.material.natsJwt,
      seed: issued.material.natsSeed,
    });
    const meta = JSON.parse(readFileSync(saved.files.meta, 'utf8')) as Record<string, unknown>;
    expect(meta).toMatchObject({ ...IDS, notAfter: saved.notAfter.toISOString(), renewedAt: null });
    // Secrets never show up when an identity is logged or printed.
    expect(JSON.stringify(saved)).not.toContain(issued.material.natsSeed);
    expect(Object.keys(saved)).not.toContain('material');
    expect(saved.material.keyPem).toBe(issued.material.keyPem);
    expect(store.load()).toEqual(saved);
  });

  it('switches generations atomically and keeps only the current and previous one', () => {
    const first = issueIdentity();
    store.save(first.info, first.material);
    const gen1 = readlinkSync(join(dir, 'current'));
    const second = issueIdentity();
    store.save(second.info, { ...second.material });
    const gen2 = readlinkSync(join(dir, 'current'));
    expect(gen2).not.toBe(gen1);
    const third = issueIdentity();
    const loaded = store.save({ ...third.info, renewedAt: new Date() }, third.material);
    expect(loaded.material.certPem).toBe(third.material.certPem);
    expect(loaded.renewedAt).toBeInstanceOf(Date);
    const gens = readdirSync(dir).filter((e) => e.startsWith('gen-'));
    expect(gens.sort()).toEqual([gen2, readlinkSync(join(dir, 'current'))].sort());
  });

  it('a crash in the middle of a save leaves the old identity loadable, and the next save cleans up', () => {
    const old = issueIdentity();
    const saved = store.save(old.info, old.material);
    const oldGen = join(dir, readlinkSync(join(dir, 'current')));
    // Crash while writing temps: a half-written generation (new key, no cert yet) ...
    const half = join(dir, '.gen-crash1.tmp');
    mkdirSync(half, { mode: 0o700 });
    writeFileSync(join(half, 'device.key'), issueIdentity().material.keyPem, { mode: 0o600 });
    // ... a complete generation that was never switched to, with a mismatched cert, and a dangling temp link.
    const unswitched = join(dir, 'gen-zzzz-unswitched');
    cpSync(oldGen, unswitched, { recursive: true });
    writeFileSync(join(unswitched, 'device.crt'), issueIdentity().material.certPem);
    symlinkSync('gen-zzzz-unswitched', join(dir, '.current-crash2.tmp'));

    const after = new IdentityStore(dir).load();
    expect(after?.material.certPem).toBe(old.material.certPem);
    expect(after?.notAfter).toEqual(saved.notAfter);

    // Leftovers: the unswitched generation goes at once, temp entries once they are clearly stale.
    const past = new Date(Date.now() - 3_600_000);
    utimesSync(half, past, past);
    const next = issueIdentity();
    store.save(next.info, next.material);
    const entries = readdirSync(dir);
    expect(entries).not.toContain('gen-zzzz-unswitched');
    expect(entries).not.toContain('.gen-crash1.tmp');
    expect(store.load()?.material.certPem).toBe(next.material.certPem);
  });

  it('refuses a certificate that does not match device.key, naming both files', () => {
    const a = issueIdentity();
    const saved = store.save(a.info, a.material);
    const gen = join(dir, readlinkSync(join(dir, 'current')));
    writeFileSync(join(gen, 'device.crt'), issueIdentity().material.certPem);
    expectInvalid(() => store.load(), /device\.crt does not match the private key in .*device\.key/);
    expect(saved.files.cert).toContain('current');
  });

  it('refuses creds whose JWT is bound to another key, a cert for another device, and a broken record', () => {
    const a = issueIdentity();
    store.save(a.info, a.material);
    const gen = join(dir, readlinkSync(join(dir, 'current')));
    const good = readFileSync(join(gen, 'nats.creds'), 'utf8');
    const other = issueIdentity().material;
    writeFileSync(join(gen, 'nats.creds'), good.replace(a.material.natsJwt, other.natsJwt));
    expectInvalid(() => store.load(), /NATS user JWT in .*nats\.creds is for "U[A-Z0-9]+", not for its seed/);
    writeFileSync(join(gen, 'nats.creds'), good);

    const meta = JSON.parse(readFileSync(join(gen, 'identity.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(gen, 'identity.json'), JSON.stringify({ ...meta, deviceId: 'gw-2' }));
    expectInvalid(() => store.load(), /device\.crt is for CN=gw-1, not for device "gw-2"/);
    writeFileSync(join(gen, 'identity.json'), '{"version":1');
    expectInvalid(() => store.load(), /identity\.json is not a valid identity record/);
  });

  it('never writes an identity it would refuse to load', () => {
    const a = issueIdentity();
    const b = issueIdentity();
    expectInvalid(() => store.save(a.info, { ...a.material, keyPem: b.material.keyPem }), /does not match/);
    expect(store.exists()).toBe(false);
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
  });

  it('tightens secrets readable by others to 0600 and warns, rather than refusing to start', () => {
    const a = issueIdentity();
    const saved = store.save(a.info, a.material);
    chmodSync(saved.files.key, 0o644);
    chmodSync(saved.files.creds, 0o640);
    chmodSync(dir, 0o755);
    expect(store.load()?.deviceId).toBe(IDS.deviceId);
    expect(modeOf(saved.files.key)).toBe(0o600);
    expect(modeOf(saved.files.creds)).toBe(0o600);
    expect(modeOf(dir)).toBe(0o700);
    expect(warnings).toHaveLength(3);
    expect(warnings.join('\n')).toMatch(/device\.key had mode 0644; set to 0600\. .*re-enroll/);
  });
});
