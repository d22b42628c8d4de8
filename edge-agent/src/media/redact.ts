import type { Box } from '../lib/geometry.js';

export interface RawRgb {
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * Pixelates regions of an rgb24 image into coarse blocks (each block becomes its mean colour). Unlike a
 * light blur this cannot be undone or re-detected, and it is a cheap pure function on the raw frame, so it
 * runs before anything is encoded or stored. Returns a copy; the input is untouched.
 */
export function pixelateRegions(
  img: RawRgb,
  boxes: readonly Box[],
  opts: { expand?: number; blocks?: number } = {},
): RawRgb {
  const out = Buffer.from(img.data);
  const expand = opts.expand ?? 0.5;
  const blocksAcross = Math.max(1, opts.blocks ?? 3);
  for (const b of boxes) {
    const x0 = clampInt((b.x - (b.w * expand) / 2) * img.width, img.width);
    const y0 = clampInt((b.y - (b.h * expand) / 2) * img.height, img.height);
    const x1 = clampInt((b.x + b.w + (b.w * expand) / 2) * img.width, img.width);
    const y1 = clampInt((b.y + b.h + (b.h * expand) / 2) * img.height, img.height);
    if (x1 <= x0 || y1 <= y0) continue;
    const block = Math.max(2, Math.ceil((x1 - x0) / blocksAcross));
    for (let by = y0; by < y1; by += block) {
      for (let bx = x0; bx < x1; bx += block) {
        const ex = Math.min(bx + block, x1);
        const ey = Math.min(by + block, y1);
        let r = 0;
        let g = 0;
        let bl = 0;
        const n = (ex - bx) * (ey - by);
        for (let y = by; y < ey; y++) {
          for (let x = bx, i = (y * img.width + bx) * 3; x < ex; x++, i += 3) {
            r += out[i]!;
            g += out[i + 1]!;
            bl += out[i + 2]!;
          }
        }
        r = Math.round(r / n);
        g = Math.round(g / n);
        bl = Math.round(bl / n);
        for (let y = by; y < ey; y++) {
          for (let x = bx, i = (y * img.width + bx) * 3; x < ex; x++, i += 3) {
            out[i] = r;
            out[i + 1] = g;
            out[i + 2] = bl;
          }
        }
      }
    }
  }
  return { data: out, width: img.width, height: img.height };
}

function clampInt(v: number, max: number): number {
  return Math.min(max, Math.max(0, Math.round(v)));
}
