import { generateKeyPairSync, randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { createCsr } from '@vigil/certs';
import { nkeyFromRawSeed } from '@vigil/cloud';
import { DeviceServiceClient, type EnrollRequest, type EnrollResponse } from '@vigil/proto';

/** What a simulated device holds after enrollment. */
export interface EnrolledDevice {
  deviceId: string;
  tenantId: string;
  siteId: string;
  keyPem: string;
  certificatePem: string;
  natsUserJwt: string;
  /** The device's own NATS nkey seed (never sent). */
  natsSeed: string;
  natsUrls: string[];
  configSigningJwks: string;
}

/** The role byte of a user nkey (`U...`, nkeys Prefix.User = 20 << 3). */
const NKEY_USER_PREFIX = 20 << 3;

/** One RSA key shared by every simulated device (each still gets its own CSR, certificate, nkey and JWT). */
export function sharedDeviceKey(): string {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}

export interface EnrollOptions {
  /** gRPC DeviceService address (host:port) and the CA that signed its certificate. */
  grpcAddress: string;
  caPem: string;
  /** A one-time enrollment token for the i-th device. */
  token: (i: number) => Promise<string>;
  /** Device ids. */
  deviceIds: string[];
  keyPem?: string | undefined;
  concurrency?: number | undefined;
  /** Called after each enrollment with how long its gRPC Enroll call took (ms), for progress and latencies. */
  onEnrolled?: ((i: number, enrollMs: number) => void) | undefined;
}

/** Enrolls every device through the real gRPC DeviceService (CSR with CN = device id, its own NATS nkey). */
export async function enrollDevices(opts: EnrollOptions): Promise<EnrolledDevice[]> {
  const keyPem = opts.keyPem ?? sharedDeviceKey();
  const client = new DeviceServiceClient(
    opts.grpcAddress,
    grpc.credentials.createSsl(Buffer.from(opts.caPem)),
  );
  const out: EnrolledDevice[] = new Array<EnrolledDevice>(opts.deviceIds.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      const deviceId = opts.deviceIds[i];
      if (deviceId === undefined) return;
      // The nkey with OpenSSL: nkeys' createUser + getPublicKey (tweetnacl) took ~10 ms of this process's
      // event loop per device, capping the sim near 100 enrollments/s whatever the cloud could do.
      const nkey = nkeyFromRawSeed(randomBytes(32), NKEY_USER_PREFIX);
      const req: EnrollRequest = {
        token: await opts.token(i),
        csrPem: createCsr({ privateKeyPem: keyPem, commonName: deviceId }),
        agentVersion: 'fleet-sim',
        hardwareId: `sim-${deviceId}`,
        natsPublicKey: nkey.publicKey,
      };
      const t0 = performance.now();
      const res = await new Promise<EnrollResponse>((resolve, reject) =>
        client.enroll(req, new grpc.Metadata(), { deadline: Date.now() + 60_000 }, (err, v) =>
          err ? reject(err) : resolve(v),
        ),
      );
      opts.onEnrolled?.(i, performance.now() - t0);
      out[i] = {
        deviceId: res.deviceId,
        tenantId: res.tenantId,
        siteId: res.siteId,
        keyPem,
        certificatePem: res.certificatePem,
        natsUserJwt: res.natsUserJwt,
        natsSeed: nkey.seed,
        natsUrls: res.natsUrls,
        configSigningJwks: res.configSigningJwks,
      };
    }
  };
  try {
    await Promise.all(Array.from({ length: opts.concurrency ?? 16 }, () => worker()));
  } finally {
    client.close();
  }
  return out;
}
