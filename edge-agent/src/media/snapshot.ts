import { createHash } from 'node:crypto';
import sharp from 'sharp';
import type { Box } from '../lib/geometry.js';
import type { RawRgb } from './redact.js';

export interface SnapshotOptions {
  /** Hard cap on the JPEG size: quality steps down, then the image is halved, until it fits. */
  maxBytes: number;
  quality: number;
  /** Boxes to draw (e.g. the tracked object), normalised. */
  boxes?: ReadonlyArray<{ box: Box; label?: string }>;
}

export interface Snapshot {
  contentType: 'image/jpeg';
  data: Buffer;
  sha256: string;
  width: number;
  height: number;
}

export class SnapshotTooLargeError extends Error {
  readonly code = 'SNAPSHOT_TOO_LARGE';
  readonly retryable = false;
}

function overlay(width: number, height: number, boxes: NonNullable<SnapshotOptions['boxes']>): Buffer {
  const stroke = Math.max(2, Math.round(width / 320));
  const rects = boxes
    .map(({ box, label }) => {
      const x = (box.x * width).toFixed(1);
      const y = (box.y * height).toFixed(1);
      const text = label
        ? `<text x="${x}" y="${Math.max(12, box.y * height - 4).toFixed(1)}" font-size="${stroke * 6}" fill="#00ff66" font-family="sans-serif">${escapeXml(label)}</text>`
        : '';
      return `<rect x="${x}" y="${y}" width="${(box.w * width).toFixed(1)}" height="${(box.h * height).toFixed(1)}" fill="none" stroke="#00ff66" stroke-width="${stroke}"/>${text}`;
    })
    .join('');
  return Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${rects}</svg>`,
  );
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Encodes an rgb24 frame as a size-bounded JPEG (libvips through sharp). */
export async function encodeSnapshot(img: RawRgb, opts: SnapshotOptions): Promise<Snapshot> {
  let width = img.width;
  let height = img.height;
  for (let scale = 1; scale >= 0.25; scale /= 2) {
    width = Math.max(16, Math.round(img.width * scale));
    height = Math.max(16, Math.round(img.height * scale));
    for (const q of [opts.quality, opts.quality - 15, opts.quality - 30, 30].filter(
      (v, i, a) => v >= 30 && a.indexOf(v) === i,
    )) {
      let pipeline = sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } });
      if (scale !== 1) pipeline = pipeline.resize(width, height);
      if (opts.boxes && opts.boxes.length > 0)
        pipeline = pipeline.composite([{ input: overlay(width, height, opts.boxes) }]);
      const data = await pipeline.jpeg({ quality: q, mozjpeg: false }).toBuffer();
      if (data.length <= opts.maxBytes) {
        return {
          contentType: 'image/jpeg',
          data,
          sha256: createHash('sha256').update(data).digest('hex'),
          width,
          height,
        };
      }
    }
  }
  throw new SnapshotTooLargeError(
    `snapshot does not fit in ${opts.maxBytes} bytes even at quarter size and quality 30`,
  );
}

/** Decodes a JPEG back to rgb24 (tests, and re-checking redaction). */
export async function decodeJpeg(data: Buffer): Promise<RawRgb> {
  const { data: raw, info } = await sharp(data).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: raw, width: info.width, height: info.height };
}
