import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  PkiError,
  createCa,
  ensureDevPki,
  ensureDevPkiWithReport,
  issueClientCert,
  issueServerCert,
  listCerts,
  type DevPkiPaths,
} from '../src/index.js';
import { DAY_MS, makeTempDir, modeOf, notAfterOf, snapshot, type FileSnap } from './helpers.js';

const NOW = new Date('2030-06-01T12:00:00Z');
const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function tempPkiDir(name: string): string {
  const t = makeTempDir(name);
  cleanups.push(t.cleanup);
  return join(t.dir, 'pki'); // does not exist yet
}

function allFiles(p: DevPkiPaths): string[] {
  return [
    p.caCert,
    p.caKey,
    p.natsServer.cert,
    p.natsServer.key,
    p.cloudApi.cert,
    p.cloudApi.key,
    ...Object.values(p.services).flatMap((s) => [s.cert, s.key]),
    ...Object.values(p.devices).flatMap((d) => [d.cert, d.key]),
  ];
}

function expectSame(
  before: Map<string, FileSnap>,
  after: Map<string, FileSnap>,
  except: string[] = [],
): void {
  for (const [file, snap] of before) {
    if (except.includes(file)) continue;
    const now = after.get(file);
    expect(now, file).toBeDefined();
    expect(now!.bytes, `${file} bytes`).toBe(snap.bytes);
    expect(now!.mtimeMs, `${file} mtime`).toBe(snap.mtimeMs);
  }
}

describe('ensureDevPki', () => {
  it('creates the layout with private modes and the expected identities', () => {
    const dir = tempPkiDir('layout');
    const p = ensureDevPki(dir, { now: NOW });
    expect(p.dir).toBe(dir);
    expect(p.caCert).toBe(join(dir, 'ca.crt'));
    expect(p.caKey).toBe(join(dir, 'ca.key'));
    expect(p.natsServer).toEqual({ cert: join(dir, 'nats-server.crt'), key: join(dir, 'nats-server.key') });
    expect(p.cloudApi).toEqual({ cert: join(dir, 'cloud-api.crt'), key: join(dir, 'cloud-api.key') });
    expect(p.services).toEqual({
      cloud: { cert: join(dir, 'services/cloud.crt'), key: join(dir, 'services/cloud.key') },
    });
    expect(p.devices).toEqual({
      'dev/dev-001': {
        cert: join(dir, 'devices/dev/dev-001.crt'),
        key: join(dir, 'devices/dev/dev-001.key'),
      },
    });
    expect([...snapshot(dir).keys()].sort()).toEqual(
      [
        'ca.crt',
        'ca.key',
        'cloud-api.crt',
        'cloud-api.key',
        'devices/dev/dev-001.crt',
        'devices/dev/dev-001.key',
        'nats-server.crt',
        'nats-server.key',
        'services/cloud.crt',
        'services/cloud.key',
      ].sort(),
    );
    for (const d of [dir, join(dir, 'services'), join(dir, 'devices'), join(dir, 'devices/dev')]) {
      expect(modeOf(d), d).toBe(0o700);
    }
    for (const f of allFiles(p)) expect(modeOf(f), f).toBe(f.endsWith('.key') ? 0o600 : 0o644);

    const ca = new X509Certificate(readFileSync(p.caCert));
    expect(ca.ca).toBe(true);
    expect(notAfterOf(ca)).toBe(NOW.getTime() + 3650 * DAY_MS);
    const nats = new X509Certificate(readFileSync(p.natsServer.cert));
    expect(nats.subject).toBe('CN=nats-server');
    expect(nats.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1');
    expect(nats.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(nats.verify(ca.publicKey)).toBe(true);
    const api = new X509Certificate(readFileSync(p.cloudApi.cert));
    expect(api.subject).toBe('CN=cloud-api');
    expect(api.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1');
    const svc = new X509Certificate(readFileSync(p.services.cloud!.cert));
    expect(svc.subject).toBe('CN=cloud');
    expect(svc.subjectAltName).toBe('URI:spiffe://vigil/service/cloud');
    expect(svc.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    const dev = new X509Certificate(readFileSync(p.devices['dev/dev-001']!.cert));
    expect(dev.subject).toBe('CN=dev-001');
    expect(dev.subjectAltName).toBe('URI:spiffe://vigil/tenant/dev/device/dev-001');
    expect(dev.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(dev.checkIssued(ca)).toBe(true);
    expect(notAfterOf(dev)).toBe(NOW.getTime() + 365 * DAY_MS);
  });

  it('is idempotent: a second run keeps every file byte-identical with the same mtime', () => {
    const dir = tempPkiDir('idem');
    const first = ensureDevPkiWithReport(dir, { now: NOW });
    expect(first.entries.map((e) => e.action)).toEqual([
      'created',
      'created',
      'created',
      'created',
      'created',
    ]);
    const before = snapshot(dir);
    const second = ensureDevPkiWithReport(dir, { now: new Date(NOW.getTime() + 30 * DAY_MS) });
    expect(second.entries.map((e) => [e.name, e.action])).toEqual([
      ['ca', 'kept'],
      ['nats-server', 'kept'],
      ['cloud-api', 'kept'],
      ['service cloud', 'kept'],
      ['device dev/dev-001', 'kept'],
    ]);
    expect(second.paths).toEqual(first.paths);
    const after = snapshot(dir);
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    expectSame(before, after);
  });

  it("adding a device only adds that device's files", () => {
    const dir = tempPkiDir('add');
    ensureDevPki(dir, { now: NOW });
    const before = snapshot(dir);
    const p = ensureDevPki(dir, {
      now: NOW,
      devices: [
        { tenantId: 'dev', deviceId: 'dev-001' },
        { tenantId: 'acme', deviceId: 'cam-7' },
      ],
    });
    const after = snapshot(dir);
    expectSame(before, after);
    expect([...after.keys()].filter((k) => !before.has(k)).sort()).toEqual([
      'devices/acme/cam-7.crt',
      'devices/acme/cam-7.key',
    ]);
    expect(Object.keys(p.devices).sort()).toEqual(['acme/cam-7', 'dev/dev-001']);
    expect(modeOf(join(dir, 'devices/acme'))).toBe(0o700);
    expect(new X509Certificate(readFileSync(p.devices['acme/cam-7']!.cert)).subjectAltName).toBe(
      'URI:spiffe://vigil/tenant/acme/device/cam-7',
    );
  });

  it('tightens a loosened key mode without rewriting the key', () => {
    const dir = tempPkiDir('mode');
    const p = ensureDevPki(dir, { now: NOW });
    chmodSync(p.natsServer.key, 0o644);
    chmodSync(p.caKey, 0o640);
    chmodSync(dir, 0o755);
    const before = snapshot(dir);
    const r = ensureDevPkiWithReport(dir, { now: NOW });
    expect(modeOf(p.natsServer.key)).toBe(0o600);
    expect(modeOf(p.caKey)).toBe(0o600);
    expect(modeOf(dir)).toBe(0o700);
    expectSame(before, snapshot(dir));
    const nats = r.entries.find((e) => e.name === 'nats-server');
    expect(nats?.action).toBe('kept');
    expect(nats?.reason).toMatch(/0600/);
  });

  it('reissues leaves that expire within 7 days, and only those', () => {
    const dir = tempPkiDir('expiring');
    const p = ensureDevPki(dir, { now: NOW });
    const before = snapshot(dir);
    const later = new Date(NOW.getTime() + 359 * DAY_MS); // device/service certs (365 d) have < 7 days left
    const r = ensureDevPkiWithReport(dir, { now: later });
    expect(r.entries.map((e) => [e.name, e.action])).toEqual([
      ['ca', 'kept'],
      ['nats-server', 'kept'],
      ['cloud-api', 'kept'],
      ['service cloud', 'reissued'],
      ['device dev/dev-001', 'reissued'],
    ]);
    expect(r.entries[4]!.reason).toMatch(/within 7 days/);
    const changed = [
      'services/cloud.crt',
      'services/cloud.key',
      'devices/dev/dev-001.crt',
      'devices/dev/dev-001.key',
    ];
    const after = snapshot(dir);
    expectSame(before, after, changed);
    for (const f of changed) expect(after.get(f)!.bytes, f).not.toBe(before.get(f)!.bytes);
    const dev = new X509Certificate(readFileSync(p.devices['dev/dev-001']!.cert));
    expect(notAfterOf(dev)).toBe(later.getTime() + 365 * DAY_MS);
    expect(dev.verify(new X509Certificate(readFileSync(p.caCert)).publicKey)).toBe(true);
    expect(modeOf(p.devices['dev/dev-001']!.key)).toBe(0o600);
  });

  it('reissues a leaf from another CA, a leaf whose key does not match, and a leaf with the wrong identity', () => {
    const dir = tempPkiDir('mismatch');
    const p = ensureDevPki(dir, { now: NOW });
    const foreignCa = createCa({ commonName: 'Vigil Dev CA', now: NOW }); // same name, different key
    const foreign = issueServerCert(foreignCa, {
      commonName: 'nats-server',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      now: NOW,
    });
    writeFileSync(p.natsServer.cert, foreign.certPem);
    writeFileSync(p.natsServer.key, foreign.keyPem, { mode: 0o600 });
    writeFileSync(p.cloudApi.key, readFileSync(p.services.cloud!.key), { mode: 0o600 }); // wrong key
    const ca = { certPem: readFileSync(p.caCert, 'utf8'), keyPem: readFileSync(p.caKey, 'utf8') };
    const wrongId = issueClientCert(ca, {
      commonName: 'dev-001',
      uris: ['spiffe://vigil/tenant/other/device/dev-001'],
      now: NOW,
    });
    writeFileSync(p.devices['dev/dev-001']!.cert, wrongId.certPem);
    writeFileSync(p.devices['dev/dev-001']!.key, wrongId.keyPem, { mode: 0o600 });
    const before = snapshot(dir);

    const r = ensureDevPkiWithReport(dir, { now: NOW });
    const byName = new Map(r.entries.map((e) => [e.name, e]));
    expect(byName.get('nats-server')).toMatchObject({
      action: 'reissued',
      reason: 'not issued by the CA on disk',
    });
    expect(byName.get('cloud-api')).toMatchObject({
      action: 'reissued',
      reason: 'key does not match the certificate',
    });
    expect(byName.get('device dev/dev-001')).toMatchObject({
      action: 'reissued',
      reason: 'subject alternative names differ',
    });
    expect(byName.get('service cloud')!.action).toBe('kept');
    expect(byName.get('ca')!.action).toBe('kept');
    expectSame(before, snapshot(dir), [
      'nats-server.crt',
      'nats-server.key',
      'cloud-api.crt',
      'cloud-api.key',
      'devices/dev/dev-001.crt',
      'devices/dev/dev-001.key',
    ]);
    const caX = new X509Certificate(ca.certPem);
    expect(new X509Certificate(readFileSync(p.natsServer.cert)).verify(caX.publicKey)).toBe(true);
    // a third run keeps everything again
    const again = ensureDevPkiWithReport(dir, { now: NOW });
    expect(again.entries.every((e) => e.action === 'kept')).toBe(true);
  });

  it('refuses to replace a CA whose key is gone, and touches nothing', () => {
    const dir = tempPkiDir('nokey');
    const p = ensureDevPki(dir, { now: NOW });
    rmSync(p.caKey);
    rmSync(p.natsServer.cert); // would need the CA to reissue
    const before = snapshot(dir);
    let err: unknown;
    try {
      ensureDevPki(dir, { now: NOW });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PkiError);
    expect((err as PkiError).code).toBe('CA_KEY_MISSING');
    expect((err as PkiError).message).toContain(p.caKey);
    expect((err as PkiError).message).toMatch(/Refusing to replace/);
    const after = snapshot(dir);
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    expectSame(before, after);
    expect(existsSync(p.caKey)).toBe(false);
    expect(existsSync(join(dir, '.lock'))).toBe(false); // the lock is released on error
  });

  it('re-creates a lost ca.crt from ca.key without invalidating issued certs', () => {
    const dir = tempPkiDir('nocert');
    const p = ensureDevPki(dir, { now: NOW });
    rmSync(p.caCert);
    const before = snapshot(dir);
    const r = ensureDevPkiWithReport(dir, { now: NOW });
    expect(r.entries[0]).toMatchObject({ name: 'ca', action: 'reissued' });
    expect(r.entries.slice(1).every((e) => e.action === 'kept')).toBe(true);
    expectSame(before, snapshot(dir));
    const ca = new X509Certificate(readFileSync(p.caCert));
    expect(new X509Certificate(readFileSync(p.natsServer.cert)).checkIssued(ca)).toBe(true);
  });

  it('refuses to use a CA that is about to expire', () => {
    const dir = tempPkiDir('caexp');
    ensureDevPki(dir, { now: NOW });
    const before = snapshot(dir);
    const later = new Date(NOW.getTime() + 3645 * DAY_MS);
    expect(() => ensureDevPki(dir, { now: later })).toThrow(expect.objectContaining({ code: 'CA_INVALID' }));
    expect(() => ensureDevPki(dir, { now: later })).toThrow(/never replaced/);
    expectSame(before, snapshot(dir));
  });

  it('refuses a CA cert/key pair that does not match', () => {
    const dir = tempPkiDir('camismatch');
    const p = ensureDevPki(dir, { now: NOW });
    writeFileSync(p.caKey, createCa({ commonName: 'x', now: NOW }).keyPem, { mode: 0o600 });
    expect(() => ensureDevPki(dir, { now: NOW })).toThrow(expect.objectContaining({ code: 'CA_INVALID' }));
  });

  it('refuses a non-empty directory that is not a PKI dir, and bad ids before touching disk', () => {
    const dir = tempPkiDir('notpki');
    mkdirSync(dir, { mode: 0o755 });
    writeFileSync(join(dir, 'notes.txt'), 'hello');
    expect(() => ensureDevPki(dir, { now: NOW })).toThrow(expect.objectContaining({ code: 'PKI_DIR' }));
    expect(modeOf(dir)).toBe(0o755);
    const fresh = tempPkiDir('badid');
    expect(() => ensureDevPki(fresh, { devices: [{ tenantId: 'a/b', deviceId: 'x' }] })).toThrow(/"a\/b"/);
    expect(existsSync(fresh)).toBe(false);
  });

  it('uses the requested services and devices', () => {
    const dir = tempPkiDir('custom');
    const p = ensureDevPki(dir, { now: NOW, services: ['ingest', 'api'], devices: [] });
    expect(Object.keys(p.services).sort()).toEqual(['api', 'ingest']);
    expect(p.devices).toEqual({});
    expect(existsSync(join(dir, 'devices'))).toBe(false);
    expect(new X509Certificate(readFileSync(p.services.ingest!.cert)).subjectAltName).toBe(
      'URI:spiffe://vigil/service/ingest',
    );
  });

  it('listCerts reports identities and status', () => {
    const dir = tempPkiDir('list');
    ensureDevPki(dir, { now: NOW });
    const list = listCerts(dir, NOW);
    expect(list.map((c) => c.file)).toEqual([
      'ca.crt',
      'cloud-api.crt',
      'devices/dev/dev-001.crt',
      'nats-server.crt',
      'services/cloud.crt',
    ]);
    expect(list.every((c) => c.status === 'ok' && c.keyPresent)).toBe(true);
    expect(list[2]).toMatchObject({
      commonName: 'dev-001',
      sans: ['URI:spiffe://vigil/tenant/dev/device/dev-001'],
    });
    expect(listCerts(dir, new Date(NOW.getTime() + 360 * DAY_MS))[2]!.status).toBe('expiring');
  });
});
