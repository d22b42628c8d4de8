import { gzipSync } from 'node:zlib';

/*
 * Writes tar archives no honest build makes (links, devices, "..", absolute paths), for the refusal tests: the
 * release build refuses to produce them, so they are made entry by entry here.
 */
export interface RawEntry {
  name: string;
  /** tar typeflag: '0' file, '5' directory, '1' hard link, '2' symlink, '3'/'4' devices, '6' fifo, 'L' long name. */
  type?: string;
  data?: Buffer | string;
  linkname?: string;
  /** Size field written; defaults to the data length (a lie here makes a truncated or padded entry). */
  size?: number;
}

function field(buf: Buffer, off: number, len: number, value: string): void {
  buf.write(value, off, Math.min(len, Buffer.byteLength(value)), 'utf8');
}

function header(e: RawEntry, size: number): Buffer {
  const h = Buffer.alloc(512);
  field(h, 0, 100, e.name);
  field(h, 100, 8, e.type === '5' ? '0000755\0' : '0000644\0');
  field(h, 108, 8, '0000000\0');
  field(h, 116, 8, '0000000\0');
  field(h, 124, 12, `${size.toString(8).padStart(11, '0')}\0`);
  field(h, 136, 12, '00000000000\0');
  h.fill(0x20, 148, 156);
  field(h, 156, 1, e.type ?? '0');
  if (e.linkname) field(h, 157, 100, e.linkname);
  field(h, 257, 8, 'ustar  \0');
  let sum = 0;
  for (const b of h) sum += b;
  field(h, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return h;
}

export function rawTar(entries: readonly RawEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = Buffer.from(e.data ?? '');
    parts.push(header(e, e.size ?? data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export const rawTarGz = (entries: readonly RawEntry[]): Buffer => gzipSync(rawTar(entries));
