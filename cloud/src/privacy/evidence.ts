import { createHash, createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CompactSign, compactVerify, decodeProtectedHeader } from 'jose';
import { z } from 'zod';
import { EvidenceError } from './evidence-errors.js';
import { readTar } from './tar.js';

/*
 * Evidence archives (issue 19): a tar of
 *
 *   events.json           the events of the scope as the API shows them (erased ones as their tombstones)
 *   media.json            the media index rows of the scope (ids, event, capture time, recorded SHA-256)
 *   media/<id>.jpg        each stored media object's bytes
 *   manifest.json         every file above with its SHA-256 and size, the scope, who exported it and when
 *   manifest.jws          a JWS (compact, EdDSA / Ed25519) whose payload is exactly the bytes of manifest.json
 *
 * Verification needs nothing but the archive and the cloud's export public key (GET /v1/exports/public-key,
 * `vigil export public-key`): the signature over the manifest, then every file's digest and size against it,
 * and no file that the manifest does not list.
 */

export const EVIDENCE_FORMAT = 'vigil.evidence.v1';
export const MANIFEST_FILE = 'manifest.json';
export const SIGNATURE_FILE = 'manifest.jws';
export const JWS_TYPE = 'vigil-evidence+jws';
/** Files a verifier accepts in one archive (bounds the work on a hostile one). */
export const MAX_ARCHIVE_ENTRIES = 200_000;

export const manifestSchema = z.strictObject({
  format: z.literal(EVIDENCE_FORMAT),
  export_id: z.uuid(),
  tenant: z.string(),
  created_at: z.string(),
  created_by: z.string(),
  key_id: z.string(),
  scope: z.record(z.string(), z.unknown()),
  counts: z.strictObject({
    events: z.number().int(),
    media: z.number().int(),
    media_unavailable: z.number().int(),
  }),
  files: z.array(
    z.strictObject({
      path: z.string(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      bytes: z.number().int().min(0),
    }),
  ),
});
export type EvidenceManifest = z.infer<typeof manifestSchema>;

export const sha256Hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** The key id of an Ed25519 public key: SHA-256 of its SPKI DER, hex, first 32 digits. */
export function exportKeyId(publicKey: KeyObject): string {
  return sha256Hex(publicKey.export({ format: 'der', type: 'spki' })).slice(0, 32);
}

export interface ExportKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  keyId: string;
  publicPem: string;
}

/** Loads the export signing key (a PKCS#8 PEM Ed25519 private key, a mounted file); precise errors. */
export function loadExportKey(path: string): ExportKey {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new EvidenceError(
      'EXPORT_KEY_INVALID',
      `privacy.export.signingKeyFile ${path}: cannot be read`,
      [],
      { cause },
    );
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(text);
  } catch (cause) {
    throw new EvidenceError(
      'EXPORT_KEY_INVALID',
      `privacy.export.signingKeyFile ${path}: not a PEM private key`,
      [],
      {
        cause,
      },
    );
  }
  if (privateKey.asymmetricKeyType !== 'ed25519')
    throw new EvidenceError(
      'EXPORT_KEY_INVALID',
      `privacy.export.signingKeyFile ${path}: an ${privateKey.asymmetricKeyType ?? 'unknown'} key; Ed25519 is required`,
    );
  const publicKey = createPublicKey(privateKey);
  return {
    privateKey,
    publicKey,
    keyId: exportKeyId(publicKey),
    publicPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

/**
 * A public key as a verifier is handed it: SPKI PEM, a JWK (OKP, Ed25519), or the JSON of GET
 * /v1/exports/public-key (its `pem`).
 */
export function parseExportPublicKey(text: string, where: string): KeyObject {
  let key: KeyObject;
  try {
    const trimmed = text.trim();
    if (trimmed.startsWith('{')) {
      const json = JSON.parse(trimmed) as { pem?: unknown; kty?: unknown };
      key =
        typeof json.pem === 'string'
          ? createPublicKey(json.pem)
          : createPublicKey({ key: json as JsonWebKey, format: 'jwk' });
    } else key = createPublicKey(trimmed);
  } catch (cause) {
    throw new EvidenceError(
      'EXPORT_KEY_INVALID',
      `${where}: not a public key (PEM, JWK or the API's JSON)`,
      [],
      {
        cause,
      },
    );
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new EvidenceError(
      'EXPORT_KEY_INVALID',
      `${where}: an ${key.asymmetricKeyType ?? 'unknown'} key; Ed25519 expected`,
    );
  return key;
}

/** The manifest's JWS: compact, payload = the manifest bytes exactly. */
export async function signManifest(manifest: Uint8Array, key: ExportKey): Promise<string> {
  return new CompactSign(manifest)
    .setProtectedHeader({ alg: 'EdDSA', kid: key.keyId, typ: JWS_TYPE })
    .sign(key.privateKey);
}

export interface VerifiedEvidence {
  manifest: EvidenceManifest;
  /** Files checked against the manifest (manifest and signature not counted). */
  files: number;
  bytes: number;
}

/**
 * Verifies an archive held in memory against `publicKey`. Throws EvidenceError: ARCHIVE_INVALID (not a
 * well-formed archive), MANIFEST_MISSING, SIGNATURE_INVALID (wrong key, or a changed signature),
 * MANIFEST_TAMPERED (manifest.json is not what was signed), MANIFEST_INVALID, or EVIDENCE_MISMATCH with every
 * file that was changed, is missing, or is extra.
 */
export async function verifyEvidence(archive: Buffer, publicKey: KeyObject): Promise<VerifiedEvidence> {
  const files = readTar(archive, MAX_ARCHIVE_ENTRIES);
  const byName = new Map(files.map((f) => [f.name, f.data]));
  const manifestBytes = byName.get(MANIFEST_FILE);
  const jws = byName.get(SIGNATURE_FILE);
  if (!manifestBytes || !jws)
    throw new EvidenceError(
      'MANIFEST_MISSING',
      `the archive has no ${!manifestBytes ? MANIFEST_FILE : SIGNATURE_FILE}: not a complete Vigil evidence archive`,
    );
  const token = jws.toString('utf8').trim();
  let signedKid = '?';
  try {
    signedKid = String(decodeProtectedHeader(token).kid ?? '?');
  } catch {
    // reported below as a signature that does not verify
  }
  let payload: Uint8Array;
  try {
    const verified = await compactVerify(token, publicKey, { algorithms: ['EdDSA'] });
    if (verified.protectedHeader.typ !== JWS_TYPE)
      throw new Error(`typ ${String(verified.protectedHeader.typ)}`);
    payload = verified.payload;
  } catch (cause) {
    const kid = exportKeyId(publicKey);
    throw new EvidenceError(
      'SIGNATURE_INVALID',
      signedKid !== kid
        ? `the manifest signature does not verify with this public key (key id ${kid}); the archive says it was signed by key id ${signedKid}: wrong key, or a forged signature`
        : `the manifest signature does not verify with the public key ${kid}: ${SIGNATURE_FILE} was changed`,
      [],
      { cause },
    );
  }
  if (!Buffer.from(payload).equals(manifestBytes))
    throw new EvidenceError(
      'MANIFEST_TAMPERED',
      `${MANIFEST_FILE} is not the manifest that was signed (it was changed after export)`,
    );
  let manifest: EvidenceManifest;
  try {
    manifest = manifestSchema.parse(JSON.parse(manifestBytes.toString('utf8')));
  } catch (cause) {
    throw new EvidenceError(
      'MANIFEST_INVALID',
      `${MANIFEST_FILE} is signed but not a ${EVIDENCE_FORMAT} manifest`,
      [],
      {
        cause,
      },
    );
  }
  const problems: string[] = [];
  const listed = new Set<string>();
  let bytes = 0;
  for (const f of manifest.files) {
    listed.add(f.path);
    const data = byName.get(f.path);
    if (data === undefined) {
      problems.push(`missing: ${f.path} (listed in the manifest, not in the archive)`);
      continue;
    }
    const digest = sha256Hex(data);
    if (digest !== f.sha256 || data.length !== f.bytes)
      problems.push(
        `tampered: ${f.path} (sha256 ${digest}, ${data.length} bytes; the manifest says ${f.sha256}, ${f.bytes} bytes)`,
      );
    bytes += data.length;
  }
  for (const f of files)
    if (!listed.has(f.name) && f.name !== MANIFEST_FILE && f.name !== SIGNATURE_FILE)
      problems.push(`extra: ${f.name} (in the archive, not in the manifest)`);
  if (problems.length > 0)
    throw new EvidenceError(
      'EVIDENCE_MISMATCH',
      `the archive does not match its signed manifest (${problems.length} problem${problems.length === 1 ? '' : 's'})`,
      problems,
    );
  return { manifest, files: manifest.files.length, bytes };
}
