import { describe, expect, it } from 'vitest';
import {
  createResizer,
  inputBoxToFrame,
  letterboxMeta,
  resizeToTensor,
  type ResizeOptions,
} from '../src/detect/preprocess.js';
import type { RgbFrame } from '../src/detect/types.js';

/** A frame from [r,g,b] triples, row-major. */
function frame(
  width: number,
  height: number,
  px: (x: number, y: number) => [number, number, number],
): RgbFrame {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(px(x, y), (y * width + x) * 3);
  return { data, width, height };
}

/** Plane c of an NCHW tensor as rows. */
function planeRows(t: Float32Array, w: number, h: number, c: number): number[][] {
  return Array.from({ length: h }, (_, y) =>
    Array.from(t.subarray(c * w * h + y * w, c * w * h + (y + 1) * w)),
  );
}

/** Rows of expected values to 5 decimals (float32 tensors). */
const close = (rows: number[][]): unknown[][] => rows.map((r) => r.map((v): unknown => expect.closeTo(v, 5)));

const base: ResizeOptions = {
  width: 2,
  height: 2,
  mode: 'stretch',
  padValue: 0,
  channelOrder: 'rgb',
  scale: 1,
  mean: 0,
};

// 4x2 frame: R = 10*x + 100*y, G = 1, B = 200 - 10*x.
const f42 = frame(4, 2, (x, y) => [10 * x + 100 * y, 1, 200 - 10 * x]);

describe('resizeToTensor', () => {
  it('stretches 4x2 -> 2x2 with half-pixel bilinear (each output averages a column pair)', () => {
    const { tensor, meta } = resizeToTensor(f42, base);
    expect(tensor.length).toBe(12);
    expect(planeRows(tensor, 2, 2, 0)).toEqual(
      close([
        [5, 25],
        [105, 125],
      ]),
    );
    expect(planeRows(tensor, 2, 2, 1)).toEqual(
      close([
        [1, 1],
        [1, 1],
      ]),
    );
    expect(planeRows(tensor, 2, 2, 2)).toEqual(
      close([
        [195, 175],
        [195, 175],
      ]),
    );
    expect(meta).toMatchObject({
      contentWidth: 2,
      contentHeight: 2,
      padLeft: 0,
      padTop: 0,
      scaleX: 0.5,
      scaleY: 1,
    });
  });

  it('puts blue in plane 0 for bgr and applies (v - mean) * scale', () => {
    const { tensor } = resizeToTensor(f42, { ...base, channelOrder: 'bgr', mean: 127, scale: 1 / 128 });
    expect(planeRows(tensor, 2, 2, 0)).toEqual(
      close([
        [(195 - 127) / 128, (175 - 127) / 128],
        [(195 - 127) / 128, (175 - 127) / 128],
      ]),
    );
    expect(planeRows(tensor, 2, 2, 2)[1]).toEqual(close([[(105 - 127) / 128, (125 - 127) / 128]])[0]);
  });

  it('clamps at the edges when upscaling, like OpenCV INTER_LINEAR', () => {
    const f = frame(2, 1, (x) => [x === 0 ? 0 : 100, 0, 0]);
    const { tensor } = resizeToTensor(f, { ...base, width: 4, height: 1 });
    expect(planeRows(tensor, 4, 1, 0)).toEqual(close([[0, 25, 75, 100]]));
  });

  it('letterboxes top-left: identity scale, padding below in raw pixel units normalised', () => {
    const { tensor, meta } = resizeToTensor(f42, {
      ...base,
      width: 4,
      height: 4,
      mode: 'letterbox-tl',
      padValue: 114,
      scale: 1 / 255,
    });
    expect(meta).toMatchObject({
      contentWidth: 4,
      contentHeight: 2,
      padLeft: 0,
      padTop: 0,
      padRight: 0,
      padBottom: 2,
    });
    const p = 114 / 255;
    // Compared in tensor units: float32 keeps ~7 significant digits of v/255.
    const expected = [
      [0, 10, 20, 30],
      [100, 110, 120, 130],
      [114, 114, 114, 114],
      [114, 114, 114, 114],
    ].map((row) => row.map((v) => v / 255));
    expect(planeRows(tensor, 4, 4, 0)).toEqual(close(expected));
    expect(tensor[2 * 16 + 15]).toBeCloseTo(p, 6);
  });

  it('letterboxes top-left when shrinking: 4x2 -> 2x2 gives one row of 2x2 block means and a pad row', () => {
    const { tensor, meta } = resizeToTensor(f42, { ...base, mode: 'letterbox-tl', padValue: 7 });
    expect(meta).toMatchObject({ contentWidth: 2, contentHeight: 1, padBottom: 1, padRight: 0 });
    expect(planeRows(tensor, 2, 2, 0)).toEqual(
      close([
        [55, 75],
        [7, 7],
      ]),
    );
  });

  it('letterboxes centred (ultralytics): a tall frame gets padding on both sides', () => {
    const tall = frame(2, 4, (x, y) => [x + 10 * y, 0, 0]);
    const { tensor, meta } = resizeToTensor(tall, {
      ...base,
      width: 4,
      height: 4,
      mode: 'letterbox-center',
      padValue: 99,
    });
    expect(meta).toMatchObject({ contentWidth: 2, contentHeight: 4, padLeft: 1, padRight: 1, padTop: 0 });
    expect(planeRows(tensor, 4, 4, 0)).toEqual(
      close([
        [99, 0, 1, 99],
        [99, 10, 11, 99],
        [99, 20, 21, 99],
        [99, 30, 31, 99],
      ]),
    );
    // Odd remainder: the extra pixel goes right, like ultralytics' round(dw - 0.1).
    expect(letterboxMeta(2, 4, { ...base, width: 5, height: 4, mode: 'letterbox-center' })).toMatchObject({
      padLeft: 1,
      padRight: 2,
    });
  });

  it('writes into a given tensor (reused across frames) and rejects wrong sizes', () => {
    const into = new Float32Array(12).fill(-1);
    const resize = createResizer(base);
    expect(resize(f42, into).tensor).toBe(into);
    expect(into[0]).toBe(5);
    expect(() => resize(f42, new Float32Array(11))).toThrow(RangeError);
    expect(() => resize({ data: new Uint8Array(5), width: 4, height: 2 })).toThrow(/needs 24/);
    // A new frame size rebuilds the tables.
    expect(
      resize(
        frame(2, 2, () => [50, 50, 50]),
        into,
      ).tensor[3],
    ).toBe(50);
  });
});

describe('letterbox geometry', () => {
  it('maps a 640x360 frame into 416x416 at 416x234 and boxes back to normalised frame coordinates', () => {
    const meta = letterboxMeta(640, 360, { ...base, width: 416, height: 416, mode: 'letterbox-tl' });
    expect(meta).toMatchObject({ contentWidth: 416, contentHeight: 234, padBottom: 182, padRight: 0 });
    const b = inputBoxToFrame(meta, 104, 58.5, 312, 175.5);
    expect(b.x).toBeCloseTo(0.25, 9);
    expect(b.y).toBeCloseTo(0.25, 9);
    expect(b.w).toBeCloseTo(0.5, 9);
    expect(b.h).toBeCloseTo(0.5, 9);
    // A box reaching into the padding is clamped to the frame.
    const c = inputBoxToFrame(meta, -10, 200, 100, 300);
    expect(c.x).toBe(0);
    expect(c.y + c.h).toBe(1);
  });

  it('centres 640x360 in 640x640 with 140 rows above', () => {
    const meta = letterboxMeta(640, 360, { ...base, width: 640, height: 640, mode: 'letterbox-center' });
    expect(meta).toMatchObject({ contentWidth: 640, contentHeight: 360, padTop: 140, padBottom: 140 });
  });
});
