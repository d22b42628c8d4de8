import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PkiError } from './errors.js';
import {
  CERT_MODE,
  KEY_MODE,
  ensurePrivateDir,
  readIfExists,
  tightenMode,
  withDirLock,
  writeFileAtomic,
} from './fsutil.js';
import { deviceUri, serviceUri } from './identity.js';
import {
  SERVER_VALIDITY_DAYS,
  createCa,
  generateRsaKeyPair,
  planLeaf,
  loadCa,
  selfSignCa,
  type LoadedCa,
} from './pki.js';
import { commonNameOf, expectedSanSet, notAfter, notBefore, sameSans, sanSetOf } from './x509.js';

export interface DevPkiOptions {
  /** Device client certificates to ensure. Default: `[{ tenantId: 'dev', deviceId: 'dev-001' }]`. */
  devices?: Array<{ tenantId: string; deviceId: string }>;
  /** Cloud service client certificates to ensure. Default: `['cloud']`. */
  services?: string[];
  /** The clock; injected by tests. */
  now?: Date;
}

export interface CertKeyPaths {
  cert: string;
  key: string;
}

export interface DevPkiPaths {
  dir: string;
  caCert: string;
  caKey: string;
  /** CN nats-server, SAN DNS localhost + IP 127.0.0.1, EKU serverAuth. */
  natsServer: CertKeyPaths;
  /** CN cloud-api, SAN DNS localhost + IP 127.0.0.1, EKU serverAuth. */
  cloudApi: CertKeyPaths;
  /** Client certs for cloud services, keyed by name; CN = name, URI SAN serviceUri(name). */
  services: Record<string, CertKeyPaths>;
  /** Device client certs keyed `${tenantId}/${deviceId}`; CN = deviceId, URI SAN deviceUri(...). */
  devices: Record<string, CertKeyPaths>;
}

export type DevPkiAction = 'created' | 'kept' | 'reissued';

export interface DevPkiEntry {
  /** 'ca', 'nats-server', 'cloud-api', 'service <name>', 'device <tenant>/<device>' */
  name: string;
  cert: string;
  key: string;
  action: DevPkiAction;
  /** Why a cert was reissued, or what was fixed on a kept one (e.g. key mode). */
  reason?: string;
  notAfter: Date;
}

export interface DevPkiReport {
  paths: DevPkiPaths;
  entries: DevPkiEntry[];
}

export const DEV_CA_COMMON_NAME = 'Vigil Dev CA';
export const DEV_CLIENT_VALIDITY_DAYS = 365;
/** A cert (or the CA) that expires within this window is treated as expiring. */
export const RENEW_WITHIN_MS = 7 * 24 * 60 * 60 * 1000;
export const DEFAULT_DEV_DEVICES: ReadonlyArray<{ tenantId: string; deviceId: string }> = [
  { tenantId: 'dev', deviceId: 'dev-001' },
];
export const DEFAULT_DEV_SERVICES: readonly string[] = ['cloud'];
const SERVER_DNS = ['localhost'];
const SERVER_IPS = ['127.0.0.1'];

interface LeafSpec {
  name: string;
  dirs: string[];
  cert: string;
  key: string;
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  uris: string[];
  eku: 'serverAuth' | 'clientAuth';
  days: number;
}

/**
 * Creates or completes a development PKI in `dir` and returns the paths. Idempotent: files that exist, were
 * issued by the CA on disk, match the expected identity and stay valid for more than 7 days are left untouched
 * (same bytes, same mtime); missing, expiring, foreign or mismatched leaves are reissued with a new key.
 * The CA itself is never replaced: a `ca.crt` without `ca.key` (or an expiring CA) is an error.
 */
export function ensureDevPki(dir: string, opts?: DevPkiOptions): DevPkiPaths {
  return ensureDevPkiWithReport(dir, opts).paths;
}

/** {@link ensureDevPki}, plus what happened to each certificate (for the CLI and logs). */
export function ensureDevPkiWithReport(dir: string, opts: DevPkiOptions = {}): DevPkiReport {
  const root = resolve(dir);
  const now = opts.now ?? new Date();
  const specs = leafSpecs(root, opts); // validates every id before touching the disk
  prepareDir(root);
  return withDirLock(root, () => {
    const { entry: caEntry, ca } = ensureCa(root, now);
    const entries: DevPkiEntry[] = [caEntry];
    for (const spec of specs) entries.push(ensureLeaf(spec, ca, now));
    return { paths: pathsOf(root, specs), entries };
  });
}

function leafSpecs(root: string, opts: DevPkiOptions): LeafSpec[] {
  const server = (cn: string): LeafSpec => ({
    name: cn,
    dirs: [],
    cert: join(root, `${cn}.crt`),
    key: join(root, `${cn}.key`),
    commonName: cn,
    dnsNames: SERVER_DNS,
    ipAddresses: SERVER_IPS,
    uris: [],
    eku: 'serverAuth',
    days: SERVER_VALIDITY_DAYS,
  });
  const specs = [server('nats-server'), server('cloud-api')];
  for (const name of new Set(opts.services ?? DEFAULT_DEV_SERVICES)) {
    const uri = serviceUri(name);
    const d = join(root, 'services');
    specs.push({
      name: `service ${name}`,
      dirs: [d],
      cert: join(d, `${name}.crt`),
      key: join(d, `${name}.key`),
      commonName: name,
      dnsNames: [],
      ipAddresses: [],
      uris: [uri],
      eku: 'clientAuth',
      days: DEV_CLIENT_VALIDITY_DAYS,
    });
  }
  const seen = new Set<string>();
  for (const { tenantId, deviceId } of opts.devices ?? DEFAULT_DEV_DEVICES) {
    const uri = deviceUri(tenantId, deviceId);
    const id = `${tenantId}/${deviceId}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const d = join(root, 'devices', tenantId);
    specs.push({
      name: `device ${id}`,
      dirs: [join(root, 'devices'), d],
      cert: join(d, `${deviceId}.crt`),
      key: join(d, `${deviceId}.key`),
      commonName: deviceId,
      dnsNames: [],
      ipAddresses: [],
      uris: [uri],
      eku: 'clientAuth',
      days: DEV_CLIENT_VALIDITY_DAYS,
    });
  }
  return specs;
}

function pathsOf(root: string, specs: LeafSpec[]): DevPkiPaths {
  const pick = (s: LeafSpec): CertKeyPaths => ({ cert: s.cert, key: s.key });
  const paths: DevPkiPaths = {
    dir: root,
    caCert: join(root, 'ca.crt'),
    caKey: join(root, 'ca.key'),
    natsServer: pick(specs[0]!),
    cloudApi: pick(specs[1]!),
    services: {},
    devices: {},
  };
  for (const s of specs.slice(2)) {
    if (s.name.startsWith('service ')) paths.services[s.name.slice('service '.length)] = pick(s);
    else paths.devices[s.name.slice('device '.length)] = pick(s);
  }
  return paths;
}

/** Refuses to turn an unrelated non-empty directory (a home dir, /tmp, the repo root) into a 0700 PKI dir. */
function prepareDir(root: string): void {
  if (existsSync(root)) {
    if (!statSync(root).isDirectory()) throw new PkiError('PKI_DIR', `${root} exists and is not a directory`);
    const names = readdirSync(root).filter((n) => n !== '.lock' && !n.endsWith('.tmp'));
    if (names.length > 0 && !names.includes('ca.crt') && !names.includes('ca.key')) {
      throw new PkiError(
        'PKI_DIR',
        `${root} is not empty and holds no ca.crt/ca.key; use a dedicated directory for the dev PKI`,
      );
    }
  }
  ensurePrivateDir(root);
}

function ensureCa(root: string, now: Date): { entry: DevPkiEntry; ca: LoadedCa } {
  const certPath = join(root, 'ca.crt');
  const keyPath = join(root, 'ca.key');
  let certPem = readIfExists(certPath);
  let keyPem = readIfExists(keyPath);
  let action: DevPkiAction = 'kept';
  let reason: string | undefined;
  if (certPem === null && keyPem === null) {
    ({ certPem, keyPem } = createCa({ commonName: DEV_CA_COMMON_NAME, now }));
    writeFileAtomic(keyPath, keyPem, KEY_MODE);
    writeFileAtomic(certPath, certPem, CERT_MODE);
    action = 'created';
  } else if (keyPem === null) {
    throw new PkiError(
      'CA_KEY_MISSING',
      `${certPath} exists but ${keyPath} is missing. Refusing to replace a CA that other certificates and peers ` +
        `may trust. Restore ca.key, or delete the whole directory ${root} to start over with a new dev CA ` +
        `(every peer must then trust the new ca.crt).`,
    );
  } else if (certPem === null) {
    certPem = selfSignCa(keyPem, { commonName: DEV_CA_COMMON_NAME, now });
    writeFileAtomic(certPath, certPem, CERT_MODE);
    action = 'reissued';
    reason = 'ca.crt was missing; re-created from the existing ca.key (certificates it issued stay valid)';
  }
  let ca: LoadedCa;
  try {
    ca = loadCa({ certPem, keyPem });
  } catch (e) {
    if (e instanceof PkiError) {
      throw new PkiError(
        e.code,
        `${certPath} / ${keyPath}: ${e.message}; fix or restore them, or delete ${root} to start over`,
        { cause: e },
      );
    }
    throw e;
  }
  const from = notBefore(ca.x509);
  const until = notAfter(ca.x509);
  if (from.getTime() > now.getTime()) {
    throw new PkiError(
      'CA_INVALID',
      `${certPath} is not valid before ${from.toISOString()} (check the clock)`,
    );
  }
  if (until.getTime() - now.getTime() <= RENEW_WITHIN_MS) {
    throw new PkiError(
      'CA_INVALID',
      `${certPath} ${until.getTime() <= now.getTime() ? 'expired' : 'expires'} ${until.toISOString()}. ` +
        `The CA is never replaced automatically: delete ${root} to start over with a new dev CA.`,
    );
  }
  if (tightenMode(keyPath, KEY_MODE)) reason = appendReason(reason, 'key mode tightened to 0600');
  return { entry: { name: 'ca', cert: certPath, key: keyPath, action, reason, notAfter: until }, ca };
}

function appendReason(reason: string | undefined, more: string): string {
  return reason ? `${reason}; ${more}` : more;
}

/** Why the leaf on disk cannot be kept, or null if it can. */
function leafProblem(spec: LeafSpec, ca: LoadedCa, now: Date): string | null {
  const certPem = readIfExists(spec.cert);
  const keyPem = readIfExists(spec.key);
  if (certPem === null) return 'certificate missing';
  if (keyPem === null) return 'key missing';
  let x: X509Certificate;
  try {
    x = new X509Certificate(certPem);
    if (!x.checkPrivateKey(createPrivateKey(keyPem))) return 'key does not match the certificate';
  } catch {
    return 'certificate or key unreadable';
  }
  if (!x.checkIssued(ca.x509) || !x.verify(ca.x509.publicKey)) return 'not issued by the CA on disk';
  const from = notBefore(x);
  const until = notAfter(x);
  if (from.getTime() > now.getTime()) return `not valid before ${from.toISOString()}`;
  if (until.getTime() <= now.getTime()) return `expired ${until.toISOString()}`;
  if (until.getTime() - now.getTime() <= RENEW_WITHIN_MS)
    return `expires ${until.toISOString()} (within 7 days)`;
  if (commonNameOf(x) !== spec.commonName)
    return `CN is ${String(commonNameOf(x))}, expected ${spec.commonName}`;
  const eku = x.keyUsage ?? [];
  const wantEku = spec.eku === 'serverAuth' ? '1.3.6.1.5.5.7.3.1' : '1.3.6.1.5.5.7.3.2';
  if (eku.length !== 1 || eku[0] !== wantEku) return `extended key usage is not ${spec.eku}`;
  try {
    if (!sameSans(sanSetOf(certPem), expectedSanSet(spec.dnsNames, spec.ipAddresses, spec.uris))) {
      return 'subject alternative names differ';
    }
  } catch {
    return 'certificate unreadable';
  }
  return null;
}

function ensureLeaf(spec: LeafSpec, ca: LoadedCa, now: Date): DevPkiEntry {
  for (const d of spec.dirs) ensurePrivateDir(d);
  const problem = leafProblem(spec, ca, now);
  if (problem === null) {
    const until = notAfter(new X509Certificate(readIfExists(spec.cert)!));
    const fixed = tightenMode(spec.key, KEY_MODE);
    return {
      name: spec.name,
      cert: spec.cert,
      key: spec.key,
      action: 'kept',
      ...(fixed ? { reason: 'key mode tightened to 0600' } : {}),
      notAfter: until,
    };
  }
  const existed = existsSync(spec.cert) || existsSync(spec.key);
  const signer = planLeaf(
    ca,
    {
      commonName: spec.commonName,
      dnsNames: spec.dnsNames,
      ipAddresses: spec.ipAddresses,
      uris: spec.uris,
      eku: spec.eku,
      defaultDays: spec.days,
    },
    { now, validityDays: spec.days },
  );
  const { keyPem, publicKeyPem } = generateRsaKeyPair();
  const certPem = signer(publicKeyPem);
  // Key first: a crash in between leaves a key/cert mismatch, which the next run detects and repairs.
  writeFileAtomic(spec.key, keyPem, KEY_MODE);
  writeFileAtomic(spec.cert, certPem, CERT_MODE);
  return {
    name: spec.name,
    cert: spec.cert,
    key: spec.key,
    action: existed ? 'reissued' : 'created',
    ...(existed ? { reason: problem } : {}),
    notAfter: notAfter(new X509Certificate(certPem)),
  };
}
