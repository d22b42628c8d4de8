import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa, deviceUri, signCsr, type CertKeyPem } from '@vigil/certs';
import {
  generateDeviceKeys,
  type IdentityInfo,
  type IdentityMaterial,
  type IssuedIdentity,
} from '../../src/identity/index.js';

/** Test PKI and identities for the identity tests: a fleet CA, certificates issued for CSRs made as the agent makes them. */

export const IDS: { tenantId: string; siteId: string; deviceId: string } = {
  tenantId: 'acme',
  siteId: 'hq',
  deviceId: 'gw-1',
};
const DAY_MS = 86_400_000;

let sharedCa: CertKeyPem | undefined;
/** One fleet CA per test file (a CA key costs ~100 ms). */
export function fleetCa(): CertKeyPem {
  sharedCa ??= createCa({ commonName: 'Test Fleet CA' });
  return sharedCa;
}

/**
 * A NATS user JWT as far as the agent looks at it (it only reads `sub`; nats-server checks the signature,
 * and no test here runs nats-server in JWT mode). Built from parts: header.claims.signature.
 */
export function fakeUserJwt(publicKey: string, extra: Record<string, unknown> = {}): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return [part({ typ: 'JWT', alg: 'ed25519-nkey' }), part({ sub: publicKey, ...extra }), 'c2ln'].join('.');
}

export interface IssueOptions {
  ids?: { tenantId: string; siteId: string; deviceId: string };
  ca?: CertKeyPem;
  /** The issuing clock: a past `now` makes an identity that is due (or overdue) for renewal. */
  now?: Date;
  validityDays?: number;
  natsUrls?: string[];
  grpcEndpoint?: string;
}

/** Signs a CSR as the cloud does: CN = device id, URI SAN for tenant/device. */
export function signFor(csrPem: string, o: IssueOptions = {}): string {
  const ids = o.ids ?? IDS;
  return signCsr(o.ca ?? fleetCa(), csrPem, {
    commonName: ids.deviceId,
    uris: [deviceUri(ids.tenantId, ids.deviceId)],
    now: o.now,
    validityDays: o.validityDays,
  });
}

/** A complete identity for IdentityStore.save(): fresh keys, a cert from the fleet CA, creds. */
export function issueIdentity(o: IssueOptions = {}): IssuedIdentity {
  const ids = o.ids ?? IDS;
  const ca = o.ca ?? fleetCa();
  const keys = generateDeviceKeys(ids.deviceId);
  const certPem = signFor(keys.csrPem, o);
  const material: IdentityMaterial = {
    keyPem: keys.keyPem,
    certPem,
    caPem: ca.certPem,
    natsJwt: fakeUserJwt(keys.natsPublicKey),
    natsSeed: keys.natsSeed,
  };
  const info: IdentityInfo = {
    ...ids,
    natsUrls: o.natsUrls ?? ['tls://localhost:4222'],
    grpcEndpoint: o.grpcEndpoint ?? 'localhost:7443',
    enrolledAt: o.now ?? new Date(),
    renewedAt: undefined,
  };
  const days = o.validityDays ?? 30;
  return { info, material, notAfter: new Date((o.now ?? new Date()).getTime() + days * DAY_MS) };
}

/** A temp directory removed by the returned function. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `vigil-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
