import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import {
  Key,
  Signature,
  type Metadata,
  type Root,
  type Snapshot,
  type Targets,
  type Timestamp,
} from '@tufjs/models';
import { z } from 'zod';
import { ReleaseError } from './errors.js';

/*
 * TUF signing keys (ed25519) as small JSON files, shared by the admin CLI (root and targets keys, kept offline)
 * and the cloud (the online key that signs timestamp and snapshot only). The public part is the TUF `keyval`
 * (hex, as the TUF spec has it for ed25519); the private part a PKCS#8 PEM that never leaves its file.
 */

export const TUF_SPEC_VERSION = '1.0.31';

export const keyFileSchema = z.strictObject({
  keyid: z.string().regex(/^[0-9a-f]{64}$/),
  keytype: z.literal('ed25519'),
  scheme: z.literal('ed25519'),
  public: z.string().regex(/^[0-9a-f]{64}$/),
  private: z.string().includes('PRIVATE KEY'),
});
export type TufKeyFile = z.infer<typeof keyFileSchema>;

/** The key id TUF derives: SHA-256 of the canonical JSON of the public key (fields sorted, no spaces). */
export function keyIdOf(publicHex: string): string {
  const canonical = `{"keytype":"ed25519","keyval":{"public":"${publicHex}"},"scheme":"ed25519"}`;
  return createHash('sha256').update(canonical).digest('hex');
}

export function generateKey(): TufKeyFile {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  // An ed25519 SPKI DER is a 12-byte header and the 32-byte key.
  const pub = publicKey.export({ format: 'der', type: 'spki' }).subarray(12).toString('hex');
  return {
    keyid: keyIdOf(pub),
    keytype: 'ed25519',
    scheme: 'ed25519',
    public: pub,
    private: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
}

/** Parses a key file's text; a bad file is a precise error naming it. */
export function parseKeyFile(text: string, where: string): TufKeyFile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (cause) {
    throw new ReleaseError('KEY_INVALID', `${where}: not JSON`, { cause });
  }
  const parsed = keyFileSchema.safeParse(data);
  if (!parsed.success) throw new ReleaseError('KEY_INVALID', `${where}: not a Vigil TUF key file`);
  // The public half must be the private key's own, or every signature would be refused later, far from here.
  const derived = createPublicKey(createPrivateKey(parsed.data.private))
    .export({ format: 'der', type: 'spki' })
    .subarray(12)
    .toString('hex');
  if (derived !== parsed.data.public || keyIdOf(derived) !== parsed.data.keyid)
    throw new ReleaseError(
      'KEY_INVALID',
      `${where}: the public key or key id does not match the private key`,
    );
  return parsed.data;
}

/** The TUF public key of a key file (what root lists). */
export function publicKeyOf(k: Pick<TufKeyFile, 'keyid' | 'public'>): Key {
  return new Key({ keyID: k.keyid, keyType: 'ed25519', scheme: 'ed25519', keyVal: { public: k.public } });
}

/** Adds this key's signature to the metadata (other signatures stay: root rotation needs old and new). */
export function signWith(
  metadata: Metadata<Root | Timestamp | Snapshot | Targets>,
  key: TufKeyFile,
  append = true,
): void {
  const pem = createPrivateKey(key.private);
  metadata.sign(
    (bytes) => new Signature({ keyID: key.keyid, sig: sign(null, bytes, pem).toString('hex') }),
    append,
  );
}
