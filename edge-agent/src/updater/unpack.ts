import { createHash, type Hash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { BundleRefusedError } from './errors.js';
import { fsyncPath } from './durable.js';
import { checkEntryPath, parseBundleManifest, type BundleManifestV1 } from './manifest.js';

/*
 * Unpacks a release bundle (gzip'd GNU tar, format 1) into a staging directory, refusing anything the format
 * does not allow rather than trusting tar: links (symbolic or hard), devices, fifos, pax headers, absolute
 * paths and "..", files the manifest does not list or whose size or SHA-256 differ from it, duplicate entries,
 * and more bytes or entries than the limits. Everything streams (bounded memory); every file and directory is
 * fsynced before the caller renames the staging directory into place. The archive was verified against TUF
 * before this runs: these checks hold even against a bundle the release keys signed by mistake.
 */

export interface UnpackLimits {
  maxUnpackedBytes: number;
  maxEntries: number;
}

const BLOCK = 512;
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
const MAX_LONGNAME_BYTES = 4096;

interface Header {
  name: string;
  type: string;
  size: number;
}

function cstr(b: Buffer, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const nul = s.indexOf(0);
  return s.subarray(0, nul === -1 ? len : nul).toString('utf8');
}

function octal(b: Buffer, off: number, len: number, what: string): number {
  if ((b[off] ?? 0) & 0x80)
    throw new BundleRefusedError('oversized', `tar ${what} in base-256: larger than any bundle file may be`);
  const s = cstr(b, off, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new BundleRefusedError('corrupt', `tar header ${what} is not octal`);
  return parseInt(s, 8);
}

function parseHeader(b: Buffer): Header | null {
  if (b.every((x) => x === 0)) return null;
  const stored = octal(b, 148, 8, 'checksum');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (b[i] ?? 0);
  if (sum !== stored) throw new BundleRefusedError('corrupt', 'tar header checksum mismatch');
  const magic = b.subarray(257, 263).toString('latin1');
  const prefix = magic === 'ustar\0' ? cstr(b, 345, 155) : '';
  const name = cstr(b, 0, 100);
  return {
    name: prefix ? `${prefix}/${name}` : name,
    type: String.fromCharCode(b[156] ?? 0),
    size: octal(b, 124, 12, 'size'),
  };
}

interface Sink {
  write(data: Buffer): void;
  end(): void;
}

/** Unpacks `archive` into `stagingDir` (made empty first) and returns its verified manifest. */
export async function unpackBundle(
  archive: string,
  stagingDir: string,
  expectVersion: string,
  limits: UnpackLimits,
): Promise<BundleManifestV1> {
  rmSync(stagingDir, { recursive: true, force: true });
  mkdirSync(stagingDir, { recursive: true, mode: 0o755 });
  const dirs = new Set<string>([stagingDir]);
  let manifest: BundleManifestV1 | undefined;
  let expected = new Map<string, BundleManifestV1['files'][number]>();
  const seen = new Set<string>();
  let entries = 0;
  let bytes = 0;
  let longName: string | undefined;

  const ensureDir = (rel: string): void => {
    const abs = join(stagingDir, rel);
    mkdirSync(abs, { recursive: true, mode: 0o755 });
    for (let d = abs; d.length > stagingDir.length; d = dirname(d)) dirs.add(d);
  };

  const onEntry = (h: Header): Sink | null => {
    if (++entries > limits.maxEntries)
      throw new BundleRefusedError('oversized', `the bundle has more than ${limits.maxEntries} entries`);
    if (h.type === 'L') {
      if (h.size > MAX_LONGNAME_BYTES)
        throw new BundleRefusedError('traversal', `a tar long name of ${h.size} bytes`);
      const parts: Buffer[] = [];
      return {
        write: (d) => parts.push(d),
        end: () => (longName = cstr(Buffer.concat(parts), 0, h.size)),
      };
    }
    const rawName = longName ?? h.name;
    longName = undefined;
    if (h.type === '1' || h.type === '2' || h.type === 'K')
      throw new BundleRefusedError(
        'link',
        `bundle entry ${JSON.stringify(rawName)} is a ${h.type === '1' ? 'hard' : 'symbolic'} link: a bundle holds only files and directories`,
      );
    if (h.type !== '0' && h.type !== '\0' && h.type !== '5')
      throw new BundleRefusedError(
        'special_file',
        `bundle entry ${JSON.stringify(rawName)} has tar type ${JSON.stringify(h.type)}: only files and directories are allowed`,
      );
    const path = checkEntryPath(rawName);
    if (!manifest) {
      if (path !== 'manifest.json' || h.type === '5')
        throw new BundleRefusedError('bad_manifest', 'the first bundle entry must be manifest.json');
      if (h.size > MAX_MANIFEST_BYTES)
        throw new BundleRefusedError('oversized', `manifest.json is ${h.size} bytes`);
      const parts: Buffer[] = [];
      return {
        write: (d) => parts.push(d),
        end: () => {
          const m = parseBundleManifest(Buffer.concat(parts).toString('utf8'), expectVersion);
          const total = m.files.reduce((s, f) => s + f.size, 0);
          if (total > limits.maxUnpackedBytes)
            throw new BundleRefusedError(
              'oversized',
              `the bundle unpacks to ${total} bytes, more than the ${limits.maxUnpackedBytes} allowed`,
            );
          expected = new Map(m.files.map((f) => [f.path, f]));
          manifest = m;
          writeManifest(stagingDir, Buffer.concat(parts));
        },
      };
    }
    if (h.type === '5') {
      ensureDir(path);
      return null;
    }
    const want = expected.get(path);
    if (!want)
      throw new BundleRefusedError('unexpected_file', `bundle file ${path} is not listed in manifest.json`);
    if (seen.has(path)) throw new BundleRefusedError('unexpected_file', `bundle file ${path} appears twice`);
    seen.add(path);
    if (h.size !== want.size)
      throw new BundleRefusedError(
        'digest_mismatch',
        `bundle file ${path} is ${h.size} bytes, manifest.json says ${want.size}`,
      );
    bytes += h.size;
    if (bytes > limits.maxUnpackedBytes)
      throw new BundleRefusedError(
        'oversized',
        `the bundle unpacks to more than ${limits.maxUnpackedBytes} bytes`,
      );
    ensureDir(dirname(path) === '.' ? '' : dirname(path));
    const mode = want.mode === '0755' ? 0o755 : 0o644;
    const fd = openSync(join(stagingDir, path), 'wx', mode);
    const hash: Hash = createHash('sha256');
    return {
      write: (d) => {
        hash.update(d);
        writeSync(fd, d);
      },
      end: () => {
        fchmodSync(fd, mode);
        fsyncSync(fd);
        closeSync(fd);
        const got = hash.digest('hex');
        if (got !== want.sha256)
          throw new BundleRefusedError(
            'digest_mismatch',
            `bundle file ${path} hashes to ${got}, manifest.json says ${want.sha256}`,
          );
      },
    };
  };

  // Decompressed bytes are bounded too: a gzip bomb of tar padding never reaches a file entry.
  const maxStream = limits.maxUnpackedBytes + (limits.maxEntries + 2) * 2 * BLOCK + MAX_MANIFEST_BYTES;
  let streamed = 0;
  let pending: Buffer = Buffer.alloc(0);
  let sink: Sink | null = null;
  let remaining = 0; // data bytes of the current entry
  let skip = 0; // padding after it
  let ended = false;
  const gunzip = createGunzip();
  const input = createReadStream(archive).pipe(gunzip);
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      streamed += chunk.length;
      if (streamed > maxStream)
        throw new BundleRefusedError('oversized', 'the bundle decompresses to more than the limits allow');
      if (ended) continue;
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let off = 0;
      while (off < pending.length && !ended) {
        if (remaining > 0) {
          const n = Math.min(remaining, pending.length - off);
          sink?.write(pending.subarray(off, off + n));
          off += n;
          remaining -= n;
          if (remaining === 0) sink?.end();
          continue;
        }
        if (skip > 0) {
          const n = Math.min(skip, pending.length - off);
          off += n;
          skip -= n;
          continue;
        }
        if (pending.length - off < BLOCK) break;
        const h = parseHeader(pending.subarray(off, off + BLOCK));
        off += BLOCK;
        if (!h) {
          ended = true;
          break;
        }
        sink = onEntry(h);
        if (h.type === '5' && h.size !== 0)
          throw new BundleRefusedError('corrupt', `directory entry ${h.name} carries data`);
        remaining = h.size;
        skip = (BLOCK - (h.size % BLOCK)) % BLOCK;
        if (remaining === 0) sink?.end();
      }
      pending = pending.subarray(off);
    }
  } catch (err) {
    input.destroy();
    if (err instanceof BundleRefusedError) throw err;
    throw new BundleRefusedError(
      'corrupt',
      `the bundle is not a readable gzip'd tar: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  if (!ended || remaining > 0 || !manifest)
    throw new BundleRefusedError('corrupt', 'the bundle ends in the middle of an entry (truncated)');
  const missing = [...expected.keys()].filter((p) => !seen.has(p));
  if (missing.length > 0)
    throw new BundleRefusedError(
      'missing_file',
      `the bundle lacks ${missing.length} file(s) its manifest lists, e.g. ${missing[0]}`,
    );
  // Deepest first, so each directory's entries are durable before its parent's.
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) fsyncPath(d);
  return manifest;
}

function writeManifest(stagingDir: string, data: Buffer): void {
  const fd = openSync(join(stagingDir, 'manifest.json'), 'wx', 0o644);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
