import { randomBytes } from 'node:crypto';
import type { Box, Polygon } from '../lib/geometry.js';

export interface RawRgb {
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * How a face is made unrecognisable. `fill` paints the region one constant colour: nothing of the original
 * pixels survives, so nothing can be recovered or re-detected. `blocks` keeps a hint of the scene (at most
 * `blocks` x `blocks` flat colours per region, each its block's mean plus a fresh random offset), so no face
 * model finds the face again (a plain mean-colour pixelation of 3 blocks still scored 0.83 with YuNet once the
 * region was cropped; see edge-agent/test/privacy-redaction.test.ts).
 */
export type RedactionStyle =
  | { mode: 'fill'; color: readonly [number, number, number] }
  | { mode: 'blocks'; blocks: number; noise: number };

export interface RedactOptions {
  /** Grow each box by this fraction of its size (hair, ears, a detector's tight box). */
  expand: number;
  /** Noise source (tests pass a seeded one); default crypto random bytes, so noise cannot be predicted. */
  random?: (n: number) => Uint8Array;
}

/** The pixel rectangle a redaction of `b` covers: the box grown by `expand`, clamped to the image. */
export function redactionRect(
  b: Box,
  width: number,
  height: number,
  expand: number,
): { x0: number; y0: number; x1: number; y1: number } {
  return {
    x0: clampInt((b.x - (b.w * expand) / 2) * width, width),
    y0: clampInt((b.y - (b.h * expand) / 2) * height, height),
    x1: clampInt((b.x + b.w + (b.w * expand) / 2) * width, width),
    y1: clampInt((b.y + b.h + (b.h * expand) / 2) * height, height),
  };
}

/** Redacts the boxes of an rgb24 image in the given style. Returns a copy; the input is untouched. */
export function redactRegions(
  img: RawRgb,
  boxes: readonly Box[],
  style: RedactionStyle,
  opts: RedactOptions,
): RawRgb {
  const out = Buffer.from(img.data);
  const random = opts.random ?? ((n: number) => randomBytes(n));
  for (const b of boxes) {
    const r = redactionRect(b, img.width, img.height, opts.expand);
    if (r.x1 <= r.x0 || r.y1 <= r.y0) continue;
    if (style.mode === 'fill') fillRect(out, img.width, r, style.color);
    else noisyBlocks(out, img.width, r, style, random);
  }
  return { data: out, width: img.width, height: img.height };
}

function fillRect(
  out: Uint8Array,
  width: number,
  r: { x0: number; y0: number; x1: number; y1: number },
  color: readonly [number, number, number],
): void {
  for (let y = r.y0; y < r.y1; y++)
    for (let x = r.x0, i = (y * width + r.x0) * 3; x < r.x1; x++, i += 3) {
      out[i] = color[0];
      out[i + 1] = color[1];
      out[i + 2] = color[2];
    }
}

function noisyBlocks(
  out: Uint8Array,
  width: number,
  r: { x0: number; y0: number; x1: number; y1: number },
  style: { blocks: number; noise: number },
  random: (n: number) => Uint8Array,
): void {
  const across = Math.max(1, Math.round(style.blocks));
  // Square blocks sized by the larger side: a tall face gets no more blocks than a wide one.
  const block = Math.max(2, Math.ceil(Math.max(r.x1 - r.x0, r.y1 - r.y0) / across));
  const amp = Math.max(0, Math.min(255, style.noise));
  for (let by = r.y0; by < r.y1; by += block) {
    for (let bx = r.x0; bx < r.x1; bx += block) {
      const ex = Math.min(bx + block, r.x1);
      const ey = Math.min(by + block, r.y1);
      const mean = [0, 0, 0];
      const n = (ex - bx) * (ey - by);
      for (let y = by; y < ey; y++)
        for (let x = bx, i = (y * width + bx) * 3; x < ex; x++, i += 3) {
          mean[0]! += out[i]!;
          mean[1]! += out[i + 1]!;
          mean[2]! += out[i + 2]!;
        }
      // One random offset per block and channel: the block stays flat (texture noise is what face models
      // latch onto: per-pixel noise scored up to 0.99 with UltraFace) and its colour no longer says the mean.
      const noise = random(3);
      const color = [0, 1, 2].map((c) => clampByte(mean[c]! / n + ((noise[c]! / 255) * 2 - 1) * amp));
      for (let y = by; y < ey; y++)
        for (let x = bx, i = (y * width + bx) * 3; x < ex; x++, i += 3) {
          out[i] = color[0]!;
          out[i + 1] = color[1]!;
          out[i + 2] = color[2]!;
        }
    }
  }
}

/**
 * Paints every pixel whose centre lies inside one of the polygons (normalised coordinates, even-odd rule)
 * with `color`: privacy masks on stored media. Scanline fill, so the cost is the masked area, not the
 * image times the polygon count. Returns a copy; the input is untouched.
 */
export function fillPolygons(
  img: RawRgb,
  polygons: readonly Polygon[],
  color: readonly [number, number, number] = [0, 0, 0],
): RawRgb {
  const out = Buffer.from(img.data);
  const { width, height } = img;
  for (const poly of polygons) {
    if (poly.length < 3) continue;
    for (let y = 0; y < height; y++) {
      const py = (y + 0.5) / height;
      const xs: number[] = [];
      for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
        const a = poly[i]!;
        const b = poly[j]!;
        if (a.y > py !== b.y > py) xs.push(((b.x - a.x) * (py - a.y)) / (b.y - a.y) + a.x);
      }
      xs.sort((p, q) => p - q);
      for (let k = 0; k + 1 < xs.length; k += 2) {
        // Pixels whose centre (x + 0.5) / width lies in [xs[k], xs[k+1]).
        const from = Math.max(0, Math.ceil(xs[k]! * width - 0.5));
        const to = Math.min(width, Math.ceil(xs[k + 1]! * width - 0.5));
        for (let x = from, i = (y * width + from) * 3; x < to; x++, i += 3) {
          out[i] = color[0];
          out[i + 1] = color[1];
          out[i + 2] = color[2];
        }
      }
    }
  }
  return { data: out, width, height };
}

function clampByte(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

function clampInt(v: number, max: number): number {
  return Math.min(max, Math.max(0, Math.round(v)));
}
