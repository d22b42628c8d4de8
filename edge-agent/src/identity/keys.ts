import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { nkeys } from '@nats-io/transport-node';
import { createCsr } from '@vigil/certs';

/**
 * The device's key material, generated on the device and never sent anywhere: the cloud only sees the CSR and
 * the NATS public key. `@nats-io/nkeys` comes through nats.js's `nkeys` re-export (the exact version nats.js
 * itself signs nonces with), so it is no extra dependency.
 */
export interface DeviceKeys {
  /** RSA-2048 private key, unencrypted PKCS#8 PEM (Node, OpenSSL and nats-server's Go TLS read it). */
  keyPem: string;
  /** PKCS#10 CSR for keyPem, subject exactly CN=<deviceId>. */
  csrPem: string;
  /** NATS user public nkey ("U..."), sent to the cloud so it can bind the user JWT to it. */
  natsPublicKey: string;
  /** NATS user seed (secret), written only to nats.creds. */
  natsSeed: string;
}

export const DEVICE_RSA_BITS = 2048;

export function generateDeviceKey(): string {
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: DEVICE_RSA_BITS,
    publicExponent: 0x10001,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return privateKey;
}

export function generateNatsUser(): { publicKey: string; seed: string } {
  const kp = nkeys.createUser();
  const seed = new TextDecoder().decode(kp.getSeed());
  return { publicKey: kp.getPublicKey(), seed };
}

/** The public nkey that a user seed signs as (validates the seed on the way). */
export function natsPublicKeyOf(seed: string): string {
  return nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey();
}

/** Fresh TLS key + CSR and NATS user key pair, for enrollment and for every renewal (keys rotate). */
export function generateDeviceKeys(deviceId: string): DeviceKeys {
  const keyPem = generateDeviceKey();
  const nats = generateNatsUser();
  return {
    keyPem,
    csrPem: createCsr({ privateKeyPem: keyPem, commonName: deviceId }),
    natsPublicKey: nats.publicKey,
    natsSeed: nats.seed,
  };
}

/**
 * A stable hardware id, so the cloud can tell a re-enrolled box from a new one: systemd's /etc/machine-id
 * (per installation, not secret). Empty when there is none (containers, other init systems).
 */
export function readHardwareId(path = '/etc/machine-id'): string {
  try {
    const id = readFileSync(path, 'utf8').trim();
    return /^[0-9a-f]{32}$/i.test(id) ? id.toLowerCase() : '';
  } catch {
    return '';
  }
}
