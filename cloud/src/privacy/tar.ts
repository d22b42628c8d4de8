import { EvidenceError } from './evidence-errors.js';

/*
 * The small part of POSIX ustar that evidence archives use: regular files only, names under 100 bytes, sizes
 * under 8 GiB (11 octal digits). Written by the export route, read by `vigil export verify`, which treats the
 * archive as hostile: every header's checksum, type, name and size is checked, and anything else (links,
 * directories, pax or GNU extensions, a name that climbs out, a second entry of one name, data after the end)
 * is refused with the entry it concerns.
 */

export const TAR_BLOCK = 512;
/** Two zero blocks end an archive. */
export const TAR_END = Buffer.alloc(TAR_BLOCK * 2);
/** What a name in an evidence archive may look like (relative, no `..`, no leading `/`). */
export const ENTRY_NAME = /^(?:[a-z0-9_-]+\/)?[A-Za-z0-9_.-]{1,80}$/;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/** The 512-byte header of a regular file (mode 0600, owner 0, the given mtime in seconds). */
export function tarHeader(name: string, size: number, mtimeSeconds: number): Buffer {
  if (!ENTRY_NAME.test(name) || name.includes('..'))
    throw new Error(`tar: bad entry name ${JSON.stringify(name)}`);
  if (!Number.isSafeInteger(size) || size < 0 || size >= 8 ** 11) throw new Error(`tar: bad size ${size}`);
  const h = Buffer.alloc(TAR_BLOCK);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(0o600, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(Math.max(0, Math.floor(mtimeSeconds)), 12), 136, 'ascii');
  h.write('        ', 148, 'ascii'); // checksum field counts as spaces
  h.write('0', 156, 'ascii');
  h.write('ustar\u000000', 257, 'binary');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

/** Zero bytes that pad `size` bytes of data to a whole block. */
export function tarPadding(size: number): Buffer {
  const rest = size % TAR_BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : TAR_BLOCK - rest);
}

/** A whole file entry (header, data, padding): for small files built in memory. */
export function tarEntry(name: string, data: Uint8Array, mtimeSeconds: number): Buffer {
  return Buffer.concat([tarHeader(name, data.length, mtimeSeconds), data, tarPadding(data.length)]);
}

function field(h: Buffer, offset: number, length: number): string {
  const raw = h.subarray(offset, offset + length);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul === -1 ? length : nul).toString('latin1');
}

function parseOctal(h: Buffer, offset: number, length: number, what: string, entry: string): number {
  const text = field(h, offset, length).trim();
  if (!/^[0-7]{1,11}$/.test(text))
    throw new EvidenceError('ARCHIVE_INVALID', `${entry}: ${what} is not an octal number`);
  return parseInt(text, 8);
}

export interface TarFile {
  name: string;
  data: Buffer;
}

/**
 * Every file of an archive held in memory (the caller bounds its size), in order. Refuses anything but plain
 * ustar regular files with valid checksums and names, and duplicate names.
 */
export function readTar(archive: Buffer, maxEntries: number): TarFile[] {
  const files: TarFile[] = [];
  const seen = new Set<string>();
  let off = 0;
  for (;;) {
    if (off + TAR_BLOCK > archive.length)
      throw new EvidenceError(
        'ARCHIVE_INVALID',
        `the archive ends inside a header at byte ${off} (truncated?)`,
      );
    const h = archive.subarray(off, off + TAR_BLOCK);
    if (h.every((b) => b === 0)) {
      const rest = archive.subarray(off);
      if (!rest.every((b) => b === 0))
        throw new EvidenceError('ARCHIVE_INVALID', `data after the end-of-archive marker at byte ${off}`);
      return files;
    }
    const name = field(h, 0, 100);
    const entry = `entry ${files.length + 1} (${JSON.stringify(name.slice(0, 100))})`;
    const stored = parseOctal(h, 148, 8, 'checksum', entry);
    let sum = 0;
    for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
    if (sum !== stored)
      throw new EvidenceError('ARCHIVE_INVALID', `${entry}: header checksum does not match`);
    if (field(h, 257, 6) !== 'ustar')
      throw new EvidenceError('ARCHIVE_INVALID', `${entry}: not a ustar header`);
    const type = String.fromCharCode(h[156]!);
    if (type !== '0' && type !== '\0')
      throw new EvidenceError(
        'ARCHIVE_INVALID',
        `${entry}: type ${JSON.stringify(type)} (only regular files are allowed)`,
      );
    if (field(h, 345, 155) !== '')
      throw new EvidenceError(
        'ARCHIVE_INVALID',
        `${entry}: uses the ustar name prefix (not written by Vigil)`,
      );
    if (!ENTRY_NAME.test(name) || name.includes('..'))
      throw new EvidenceError('ARCHIVE_INVALID', `${entry}: file name not allowed in an evidence archive`);
    if (seen.has(name)) throw new EvidenceError('ARCHIVE_INVALID', `${entry}: a second file named ${name}`);
    seen.add(name);
    const size = parseOctal(h, 124, 12, 'size', entry);
    const start = off + TAR_BLOCK;
    if (start + size > archive.length)
      throw new EvidenceError(
        'ARCHIVE_INVALID',
        `${entry}: ${size} bytes announced, the archive ends first (truncated?)`,
      );
    files.push({ name, data: archive.subarray(start, start + size) });
    if (files.length > maxEntries)
      throw new EvidenceError('ARCHIVE_INVALID', `more than ${maxEntries} files in the archive`);
    off = start + size + tarPadding(size).length;
  }
}
