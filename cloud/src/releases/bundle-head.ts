import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';

/**
 * The head of a release bundle (format 1, tools/release/README.md): `manifest.json` is its first tar entry. Read
 * here only to refuse what must never be published (a build marked `dirty`); the device checks everything else
 * after TUF. Shared by the cloud (upload) and `vigil release publish` (before anything is signed).
 */
export type BundleHead =
  | { kind: 'incomplete' }
  /** The first entry is not manifest.json: not a format-1 bundle (nothing to check here). */
  | { kind: 'no_manifest' }
  | { kind: 'manifest'; text: string };

const BLOCK = 512;
/** A manifest lists every file of the bundle: ~200 KB for the agent. Larger is not a manifest. */
export const MAX_MANIFEST_BYTES = 8 * 1024 * 1024;

/** Parses the first tar entry of decompressed bundle bytes (pure). */
export function parseBundleHead(head: Buffer): BundleHead {
  if (head.length < BLOCK) return { kind: 'incomplete' };
  const field = (from: number, len: number): string =>
    head
      .subarray(from, from + len)
      .toString('latin1')
      .replace(/\0.*$/s, '');
  const name = field(0, 100);
  const type = field(156, 1);
  const magic = field(257, 5);
  if (magic !== 'ustar' || name !== 'manifest.json' || (type !== '0' && type !== ''))
    return { kind: 'no_manifest' };
  const size = Number.parseInt(field(124, 12).trim() || 'x', 8);
  if (!Number.isSafeInteger(size) || size < 0 || size > MAX_MANIFEST_BYTES)
    return { kind: 'manifest', text: '' };
  if (head.length < BLOCK + size) return { kind: 'incomplete' };
  return { kind: 'manifest', text: head.subarray(BLOCK, BLOCK + size).toString('utf8') };
}

/** Why a bundle whose manifest is `text` must not be published, or undefined. */
export function publishRefusal(text: string): { reason: string; message: string } | undefined {
  let manifest: { dirty?: unknown; commit?: unknown; version?: unknown };
  try {
    manifest = JSON.parse(text) as typeof manifest;
  } catch {
    return {
      reason: 'bad_manifest',
      message: 'its manifest.json (the first entry) is not JSON: build the bundle with `pnpm release:build`',
    };
  }
  if (manifest === null || typeof manifest !== 'object')
    return { reason: 'bad_manifest', message: 'its manifest.json (the first entry) is not an object' };
  if (manifest.dirty === true)
    return {
      reason: 'dirty_build',
      message:
        `it was built from a work tree with uncommitted changes (manifest.json "dirty": true, commit ` +
        `${String(manifest.commit)}): such a build is never published. Commit the changes (or build from a ` +
        'clean clone) and run `pnpm release:build` again without --allow-dirty, then publish that bundle',
    };
  return undefined;
}

/**
 * Reads the manifest at the head of a gzip-compressed bundle file, decompressing only as far as it goes.
 * Not gzip, or not a format-1 bundle: `no_manifest`.
 */
export async function readBundleHead(path: string): Promise<BundleHead> {
  const input = createReadStream(path);
  const gunzip = createGunzip();
  const chunks: Buffer[] = [];
  let length = 0;
  let head: BundleHead = { kind: 'incomplete' };
  try {
    for await (const chunk of input.pipe(gunzip) as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      length += chunk.length;
      head = parseBundleHead(Buffer.concat(chunks, length));
      if (head.kind !== 'incomplete') break;
    }
  } catch {
    // Not gzip (or truncated): there is no manifest to read; whatever else is wrong is the device's to refuse.
    return { kind: 'no_manifest' };
  } finally {
    input.destroy();
    gunzip.destroy();
  }
  return head.kind === 'incomplete' ? { kind: 'no_manifest' } : head;
}

/** Why the bundle file at `path` must not be published, or undefined. */
export async function bundlePublishRefusal(
  path: string,
): Promise<{ reason: string; message: string } | undefined> {
  const head = await readBundleHead(path);
  return head.kind === 'manifest' ? publishRefusal(head.text) : undefined;
}
