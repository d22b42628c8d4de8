import { X509Certificate } from 'node:crypto';
import { Metadata, credentials, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { DeviceServiceClient, type EnrollResponse, type RenewResponse } from '@vigil/proto';
import { IdentityError, assertDeviceId, type IdentityErrorCode } from './errors.js';
import { generateDeviceKeys, type DeviceKeys } from './keys.js';
import { checkMaterial, splitPemCerts, type IdentityMaterial } from './material.js';
import type { DeviceIdentity, IdentityInfo } from './store.js';

export const DEFAULT_DEADLINE_MS = 10_000;
const ID_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/i;
const ENDPOINT_RE = /^(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d{1,5}$/i;

export interface EnrollOptions {
  /** host:port of the cloud's DeviceService. */
  endpoint: string;
  /** The fleet CA (PEM) the installer was given: the only trust anchor before enrollment. */
  caPem: string;
  token: string;
  deviceId: string;
  hardwareId: string;
  agentVersion: string;
  deadlineMs?: number;
  now?: () => Date;
}

export interface RenewOptions {
  /** Overrides the endpoint stored with the identity (config identity.grpcEndpoint). */
  endpoint?: string;
  deadlineMs?: number;
  /** Aborting cancels the call (agent shutdown). */
  signal?: AbortSignal;
  now?: () => Date;
}

/** An identity the cloud issued, checked against our keys, ready for IdentityStore.save(). */
export interface IssuedIdentity {
  info: IdentityInfo;
  material: IdentityMaterial;
  notAfter: Date;
  /** JWKS of the cloud's config signing keys (config_signing_jwks); '' = keep the stored set. */
  configJwks?: string;
}

/** What the renewer needs from the cloud; the gRPC client below, or a stand-in in tests. */
export interface IdentityClient {
  renew(identity: DeviceIdentity, opts?: RenewOptions): Promise<IssuedIdentity>;
}

/** Exchanges a one-time token and a CSR for a new key for the device identity. Keys are made here. */
export async function enroll(opts: EnrollOptions): Promise<IssuedIdentity> {
  assertDeviceId(opts.deviceId);
  const endpoint = checkEndpoint(opts.endpoint);
  const keys = generateDeviceKeys(opts.deviceId);
  const res = await call<EnrollResponse>(
    'enroll',
    endpoint,
    credentials.createSsl(Buffer.from(opts.caPem)),
    opts,
    (c, cb) =>
      c.enroll(
        {
          token: opts.token,
          csrPem: keys.csrPem,
          agentVersion: opts.agentVersion,
          hardwareId: opts.hardwareId,
          natsPublicKey: keys.natsPublicKey,
        },
        cb.metadata,
        cb.options,
        cb.done,
      ),
  );
  if (res.deviceId !== opts.deviceId) invalid(`device id "${res.deviceId}" instead of "${opts.deviceId}"`);
  if (!ID_RE.test(res.tenantId) || !ID_RE.test(res.siteId)) {
    invalid(`unusable tenant/site ids ${JSON.stringify(res.tenantId)}/${JSON.stringify(res.siteId)}`);
  }
  const now = (opts.now ?? (() => new Date()))();
  const info: IdentityInfo = {
    deviceId: res.deviceId,
    tenantId: res.tenantId,
    siteId: res.siteId,
    natsUrls: [...res.natsUrls],
    grpcEndpoint: endpoint,
    enrolledAt: now,
    renewedAt: undefined,
  };
  return issued(info, keys, res, opts.caPem, now);
}

/** Renews over mutual TLS with the current certificate; the new one is for fresh keys (they rotate). */
export async function renew(identity: DeviceIdentity, opts: RenewOptions = {}): Promise<IssuedIdentity> {
  const endpoint = checkEndpoint(opts.endpoint ?? identity.grpcEndpoint);
  const m = identity.material;
  const creds = credentials.createSsl(Buffer.from(m.caPem), Buffer.from(m.keyPem), Buffer.from(m.certPem));
  const keys = generateDeviceKeys(identity.deviceId);
  const res = await call<RenewResponse>('renew', endpoint, creds, opts, (c, cb) =>
    c.renew({ csrPem: keys.csrPem, natsPublicKey: keys.natsPublicKey }, cb.metadata, cb.options, cb.done),
  );
  const now = (opts.now ?? (() => new Date()))();
  const {
    files: _files,
    material: _material,
    notBefore: _nb,
    notAfter: _na,
    natsPublicKey: _pk,
    ...info
  } = identity;
  // The stored endpoint stays as enrolled: a config override applies while it is configured, no longer.
  return issued({ ...info, renewedAt: now }, keys, res, m.caPem, now);
}

/** The default IdentityClient: the cloud's DeviceService over gRPC. */
export const grpcIdentityClient: IdentityClient = { renew };

function invalid(what: string): never {
  throw new IdentityError(
    'CLOUD_RESPONSE_INVALID',
    `the cloud answered with ${what}; nothing was stored. This is a cloud/agent version mismatch or a cloud ` +
      'bug: report it with this message.',
  );
}

function checkEndpoint(endpoint: string): string {
  if (!ENDPOINT_RE.test(endpoint)) {
    throw new IdentityError(
      'CLOUD_UNAVAILABLE',
      `invalid cloud endpoint ${JSON.stringify(endpoint)}: expected host:port, e.g. cloud.example.com:7443`,
    );
  }
  return endpoint;
}

/** Checks the issued credentials against the keys we made, so a bad answer never replaces a good identity. */
function issued(
  info: IdentityInfo,
  keys: DeviceKeys,
  res: {
    certificatePem: string;
    caChainPem: string[];
    natsUserJwt: string;
    notAfter: Date | undefined;
    configSigningJwks?: string;
  },
  trustedCaPem: string,
  now: Date,
): IssuedIdentity {
  if (!res.certificatePem) invalid('no certificate');
  if (!res.natsUserJwt) invalid('no NATS user JWT');
  // The chain the cloud sent, plus the CA we already trust for the cloud's endpoints (the installer's fleet
  // CA, or the stored chain on renewal): Renew must keep reaching a cloud whose server certificate comes from
  // it, even when the issuing chain is another one. Deduplicated by fingerprint.
  const seen = new Set<string>();
  const caPem = [...res.caChainPem.flatMap(splitPemCerts), ...splitPemCerts(trustedCaPem)]
    .filter((pem) => {
      const fp = new X509Certificate(pem).fingerprint256;
      return seen.has(fp) ? false : (seen.add(fp), true);
    })
    .join('\n');
  const material: IdentityMaterial = {
    keyPem: keys.keyPem,
    certPem: res.certificatePem,
    caPem: `${caPem}\n`,
    natsJwt: res.natsUserJwt,
    natsSeed: keys.natsSeed,
  };
  const names = { key: 'our key', cert: 'certificate_pem', ca: 'ca_chain_pem', creds: 'nats_user_jwt' };
  let checked;
  try {
    checked = checkMaterial(material, info.deviceId, names, 'CLOUD_RESPONSE_INVALID');
  } catch (err) {
    invalid((err as Error).message);
  }
  if (checked.natsPublicKey !== keys.natsPublicKey) invalid('a NATS JWT for another key');
  if (checked.notAfter.getTime() <= now.getTime())
    invalid(`a certificate that expired at ${checked.notAfter.toISOString()}`);
  return { info, material, notAfter: checked.notAfter, configJwks: res.configSigningJwks ?? '' };
}

type Op = 'enroll' | 'renew';
interface CallParts<R> {
  metadata: Metadata;
  options: { deadline: Date };
  done: (err: ServiceError | null, res: R) => void;
}

async function call<R>(
  op: Op,
  endpoint: string,
  creds: ChannelCredentials,
  opts: { deadlineMs?: number; signal?: AbortSignal },
  start: (client: DeviceServiceClient, parts: CallParts<R>) => { cancel(): void },
): Promise<R> {
  const client = new DeviceServiceClient(endpoint, creds);
  try {
    return await new Promise<R>((resolve, reject) => {
      const deadline = new Date(Date.now() + (opts.deadlineMs ?? DEFAULT_DEADLINE_MS));
      const onAbort = (): void => handle.cancel();
      const handle = start(client, {
        metadata: new Metadata(),
        options: { deadline },
        done: (err, res) => {
          opts.signal?.removeEventListener('abort', onAbort);
          if (err) reject(mapError(op, endpoint, err));
          else resolve(res);
        },
      });
      if (opts.signal?.aborted) handle.cancel();
      else opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  } finally {
    client.close();
  }
}

const HINTS: Record<Op, Partial<Record<status, [IdentityErrorCode, string]>>> = {
  enroll: {
    [status.UNAUTHENTICATED]: [
      'ENROLL_TOKEN_INVALID',
      'the cloud refused the enrollment token (unknown, expired or already used). Ask an admin for a new ' +
        'one (pnpm vigil enroll-token create --site <site>) and run enroll again with it',
    ],
    [status.INVALID_ARGUMENT]: [
      'ENROLL_REJECTED',
      'the cloud rejected the enrollment request. Check --device-id; if it is valid, the agent and the ' +
        'cloud disagree on the contract: upgrade the agent',
    ],
    [status.ALREADY_EXISTS]: [
      'DEVICE_EXISTS',
      'this device id is already enrolled in the tenant. Choose another --device-id, or have an admin ' +
        'remove the old device; the token was not used up',
    ],
  },
  renew: {
    [status.PERMISSION_DENIED]: [
      'DEVICE_REVOKED',
      'the cloud says this device is revoked, so its certificate cannot be renewed. If that is a mistake, ' +
        'ask an admin; to bring the box back, enroll it again with a new token (vigil-agent enroll --force)',
    ],
    [status.UNAUTHENTICATED]: [
      'CERT_REJECTED',
      'the cloud did not accept the device certificate (expired, or not from the fleet CA). Enroll again ' +
        'with a new token: vigil-agent enroll --force',
    ],
    [status.INVALID_ARGUMENT]: [
      'RENEW_REJECTED',
      'the cloud rejected the renewal request: the agent and the cloud disagree on the contract; upgrade the agent',
    ],
  },
};

function mapError(op: Op, endpoint: string, err: ServiceError): IdentityError {
  // grpc-js appends an empty "Resolution note:" to connection errors; it only adds noise to the message.
  const details = (err.details || err.message).replace(/\s*Resolution note:\s*$/, '');
  const hint = HINTS[op][err.code];
  // Messages say what failed and what to do, once; the caller adds the context (enroll, renewal).
  if (hint) return new IdentityError(hint[0], hint[1], { cause: err, cloudSaid: details });
  if (
    err.code === status.UNAVAILABLE ||
    err.code === status.DEADLINE_EXCEEDED ||
    err.code === status.CANCELLED
  ) {
    // A certificate the CA does not vouch for is no outage: say which trust anchor to check.
    const tls = /certificate|self[- ]signed|SSL|TLS|handshake/i.test(details);
    const what = tls
      ? `the TLS handshake with ${endpoint} failed (${details}). Check that ` +
        (op === 'enroll'
          ? "--ca-file is the fleet CA that the cloud endpoint's certificate is issued by"
          : "the cloud endpoint's certificate is issued by the CA chain stored with the identity (ca.pem)")
      : `cannot reach the cloud at ${endpoint} (${status[err.code]}: ${details}). Check the address and ` +
        'the network, then try again';
    return new IdentityError('CLOUD_UNAVAILABLE', what, { cause: err });
  }
  return new IdentityError(
    'CLOUD_ERROR',
    `the cloud failed the call (${status[err.code] ?? err.code}: ${details}); try again later`,
    { cause: err },
  );
}
