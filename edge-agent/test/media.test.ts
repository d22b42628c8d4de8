import { describe, expect, it } from 'vitest';
import { decodeJpeg, encodeSnapshot, SnapshotTooLargeError } from '../src/media/snapshot.js';
import { fillPolygons, redactRegions } from '../src/media/redact.js';

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

describe('redactRegions', () => {
  const px = (img: { data: Uint8Array }, x: number, y: number) => [
    ...img.data.subarray((y * 64 + x) * 3, (y * 64 + x) * 3 + 3),
  ];
  it('fill: paints the grown box one colour and leaves the rest untouched', () => {
    const img = gradient(64, 64);
    const out = redactRegions(
      img,
      [{ x: 0.25, y: 0.25, w: 0.25, h: 0.25 }],
      { mode: 'fill', color: [0, 0, 0] },
      {
        expand: 1,
      },
    );
    // The 16x16 box grown by its size: pixels 8..40 on both axes.
    for (const [x, y] of [
      [8, 8],
      [39, 39],
      [24, 30],
    ] as const)
      expect(px(out, x, y)).toEqual([0, 0, 0]);
    expect(px(out, 7, 7)).toEqual(px(img, 7, 7));
    expect(px(out, 40, 40)).toEqual(px(img, 40, 40));
    expect(img.data.equals(gradient(64, 64).data)).toBe(true);
  });
  it('blocks: flat blocks whose colour is the mean plus noise within the amplitude', () => {
    const img = gradient(64, 64);
    const noise = (n: number) => new Uint8Array(n).fill(255); // the largest positive offset
    const out = redactRegions(
      img,
      [{ x: 0.25, y: 0.25, w: 0.25, h: 0.25 }],
      { mode: 'blocks', blocks: 2, noise: 20 },
      {
        expand: 0,
        random: noise,
      },
    );
    // 2 blocks across a 16 px region: 8x8 blocks, each flat.
    expect(px(out, 16, 16)).toEqual(px(out, 23, 23));
    expect(px(out, 16, 16)).not.toEqual(px(out, 24, 16));
    let mean = 0;
    for (let y = 16; y < 24; y++) for (let x = 16; x < 24; x++) mean += px(img, x, y)[0]!;
    expect(px(out, 16, 16)[0]).toBe(Math.min(255, Math.round(mean / 64 + 20)));
    expect(Buffer.compare(out.data.subarray(0, 64 * 3 * 16), img.data.subarray(0, 64 * 3 * 16))).toBe(0);
  });
});

describe('fillPolygons', () => {
  it('blacks out exactly the pixels whose centre is inside the polygon', () => {
    const img = gradient(64, 64);
    // A triangle: left half of the diagonal.
    const tri = [
      { x: 0, y: 0 },
      { x: 1, y: 1 },
      { x: 0, y: 1 },
    ];
    const out = fillPolygons(img, [tri]);
    for (let y = 0; y < 64; y++)
      for (let x = 0; x < 64; x++) {
        const i = (y * 64 + x) * 3;
        const got = [...out.data.subarray(i, i + 3)];
        if (x < y) expect(got).toEqual([0, 0, 0]);
        else if (x > y) expect(got).toEqual([...img.data.subarray(i, i + 3)]);
      }
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
