import { describe, expect, it } from 'vitest';
import { decodeJpeg, encodeSnapshot, SnapshotTooLargeError } from '../src/media/snapshot.js';
import { pixelateRegions } from '../src/media/redact.js';

function gradient(width: number, height: number): { data: Buffer; width: number; height: number } {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = (x * 7 + y * 3) % 256;
      data[i + 1] = (x ^ y) % 256;
      data[i + 2] = (y * 11) % 256;
    }
  return { data, width, height };
}

describe('pixelateRegions', () => {
  it('flattens the region into blocks and leaves the rest untouched', () => {
    const img = gradient(64, 64);
    const out = pixelateRegions(img, [{ x: 0.25, y: 0.25, w: 0.25, h: 0.25 }], { expand: 0, blocks: 2 });
    // Outside the region: identical.
    expect(Buffer.compare(out.data.subarray(0, 64 * 3 * 10), img.data.subarray(0, 64 * 3 * 10))).toBe(0);
    // Inside one 8x8 block (16..24): every pixel has the same colour.
    const px = (x: number, y: number) => [...out.data.subarray((y * 64 + x) * 3, (y * 64 + x) * 3 + 3)];
    expect(px(17, 17)).toEqual(px(23, 23));
    expect(px(17, 17)).not.toEqual([...img.data.subarray((17 * 64 + 17) * 3, (17 * 64 + 17) * 3 + 3)]);
    // The input was not modified.
    expect(img.data.equals(gradient(64, 64).data)).toBe(true);
  });
});

describe('encodeSnapshot', () => {
  it('encodes a JPEG that decodes to the same size', async () => {
    const snap = await encodeSnapshot(gradient(320, 180), {
      maxBytes: 200_000,
      quality: 85,
      boxes: [{ box: { x: 0.1, y: 0.1, w: 0.3, h: 0.5 }, label: 'person' }],
    });
    expect(snap.data.subarray(0, 2).toString('hex')).toBe('ffd8');
    expect(snap.sha256).toMatch(/^[0-9a-f]{64}$/);
    const back = await decodeJpeg(snap.data);
    expect([back.width, back.height]).toEqual([320, 180]);
  });
  it('steps quality and size down to respect the byte cap, or refuses', async () => {
    const noisy = {
      data: Buffer.from(Array.from({ length: 640 * 360 * 3 }, () => Math.floor(Math.random() * 256))),
      width: 640,
      height: 360,
    };
    const snap = await encodeSnapshot(noisy, { maxBytes: 40_000, quality: 90 });
    expect(snap.data.length).toBeLessThanOrEqual(40_000);
    expect(snap.width).toBeLessThan(640);
    await expect(encodeSnapshot(noisy, { maxBytes: 500, quality: 90 })).rejects.toBeInstanceOf(
      SnapshotTooLargeError,
    );
  });
});
