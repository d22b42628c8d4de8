/**
 * Each decoder on a synthetic output tensor holding known boxes at known cells: the decoded box (normalised to
 * a 640x360 frame, letterbox undone) and score must match the hand-computed values.
 */
import { describe, expect, it } from 'vitest';
import { ModelError } from '../src/detect/errors.js';
import {
  createFastestDetPlugin,
  createUltraFacePlugin,
  createYoloV8Plugin,
  createYoloxPlugin,
  createYuNetPlugin,
  ultraFacePriors,
} from '../src/detect/plugins/index.js';
import { letterboxMeta, type ResizeMode, type ResizeOptions } from '../src/detect/preprocess.js';
import type {
  DecodeOptions,
  Detection,
  DetectorPlugin,
  LetterboxMeta,
  TensorMap,
} from '../src/detect/types.js';
import type { Box } from '../src/lib/geometry.js';

const opts: DecodeOptions = { scoreThreshold: 0.5, nmsIou: 0.45, maxDetections: 100 };

function metaFor(p: DetectorPlugin, mode: ResizeMode): LetterboxMeta {
  const o: ResizeOptions = {
    width: p.inputWidth,
    height: p.inputHeight,
    mode,
    padValue: 0,
    channelOrder: 'rgb',
    scale: 1,
    mean: 0,
  };
  return letterboxMeta(640, 360, o);
}

function expectBox(actual: Box, expected: Box): void {
  expect(actual.x).toBeCloseTo(expected.x, 4);
  expect(actual.y).toBeCloseTo(expected.y, 4);
  expect(actual.w).toBeCloseTo(expected.w, 4);
  expect(actual.h).toBeCloseTo(expected.h, 4);
}

const logit = (p: number): number => Math.log(p / (1 - p));

describe('yolox decode', () => {
  const p = createYoloxPlugin();
  const meta = metaFor(p, 'letterbox-tl'); // 640x360 -> 416x234 content, scale 0.65
  const rows = 3549;
  const put = (data: Float32Array, i: number, v: number[]): void => data.set(v, i * 85);

  it('decodes a box at stride 16, cell (10,5), score = obj * cls, undoing the letterbox', () => {
    const data = new Float32Array(rows * 85);
    const i = 52 * 52 + 5 * 26 + 10;
    const row = new Array<number>(85).fill(0);
    row.splice(0, 5, 0.5, 0.25, Math.log(4), Math.log(6), 0.9);
    row[5 + 2] = 0.8; // car
    row[5 + 0] = 0.1;
    put(data, i, row);
    // A weaker car box one cell to the right overlapping a lot: NMS removes it.
    const dup = [...row];
    dup[0] = -0.5;
    dup[4] = 0.7;
    put(data, i + 1, dup);
    // A person at the same place survives: NMS is per class.
    const person = [...row];
    person[5 + 2] = 0;
    person[5 + 0] = 0.75;
    put(data, i + 2, person);
    // Below threshold: ignored.
    const weak = [...row];
    weak[4] = 0.4;
    put(data, 100, weak);
    const out = p.decode({ output: { data, dims: [1, rows, 85] } }, meta, opts);
    expect(out.map((d) => [d.label, d.classId])).toEqual([
      ['car', 2],
      ['person', 0],
    ]);
    const car = out[0]!;
    expect(car.score).toBeCloseTo(0.72, 5);
    // cx = 10.5*16 = 168, cy = 5.25*16 = 84, w = 64, h = 96 (input pixels); frame = input / content size.
    expectBox(car.box, { x: (168 - 32) / 416, y: (84 - 48) / 234, w: 64 / 416, h: 96 / 234 });
  });

  it('caps the number of detections and skips boxes entirely in the padding', () => {
    const data = new Float32Array(rows * 85);
    for (let gx = 0; gx < 52; gx += 4) {
      const row = new Array<number>(85).fill(0);
      row.splice(0, 5, 0, 0, 0, 0, 0.9);
      row[5] = 0.9;
      put(data, 2 * 52 + gx, row);
    }
    const inPad = new Array<number>(85).fill(0);
    inPad.splice(0, 5, 0, 0, 0, 0, 0.99);
    inPad[5] = 0.99;
    put(data, 45 * 52 + 3, inPad); // y = 45*8 = 360 > 234: below the image
    const out = p.decode({ output: { data, dims: [1, rows, 85] } }, meta, { ...opts, maxDetections: 3 });
    expect(out).toHaveLength(3);
    expect(out.every((d) => d.box.y < 1)).toBe(true);
    const all = p.decode({ output: { data, dims: [1, rows, 85] } }, meta, opts);
    expect(all).toHaveLength(13);
  });

  it('fails with MODEL_SHAPE on a missing or short output', () => {
    expect(() => p.decode({}, meta, opts)).toThrow(ModelError);
    const short: TensorMap = { output: { data: new Float32Array(10), dims: [1, 10] } };
    expect(() => p.decode(short, meta, opts)).toThrow(/expected at least/);
  });
});

describe('fastestdet decode', () => {
  const p = createFastestDetPlugin();
  const meta = metaFor(p, 'stretch');
  const plane = 22 * 22;

  it('decodes cell (7,3) with tanh/sigmoid and obj^0.6 * cls^0.4, darknet name mapped', () => {
    const data = new Float32Array(85 * plane);
    const cell = 3 * 22 + 7;
    data[cell] = 0.9;
    data[plane + cell] = Math.atanh(0.5);
    data[2 * plane + cell] = Math.atanh(-0.25);
    data[3 * plane + cell] = logit(0.25);
    data[4 * plane + cell] = logit(0.2);
    data[(5 + 3) * plane + cell] = 0.8; // motorbike
    data[(5 + 0) * plane + cell] = 0.15;
    // Objectness too low for any class to pass.
    data[cell + 1] = 0.3;
    data[(5 + 0) * plane + cell + 1] = 1;
    const out = p.decode({ '758': { data, dims: [1, 85, 22, 22] } }, meta, { ...opts, scoreThreshold: 0.65 });
    expect(out).toHaveLength(1);
    const d = out[0]!;
    expect(p.classNames[d.classId]).toBe('motorbike');
    expect(d.label).toBe('motorcycle');
    expect(d.score).toBeCloseTo(0.9 ** 0.6 * 0.8 ** 0.4, 5);
    const cx = 7.5 / 22;
    const cy = 2.75 / 22;
    expectBox(d.box, { x: cx - 0.125, y: cy - 0.1, w: 0.25, h: 0.2 });
  });
});

describe('ultraface decode', () => {
  const p = createUltraFacePlugin();
  const meta = metaFor(p, 'stretch');
  const n = 4420;

  it('reads face scores (index 1) and normalised corners, NMS at the given IoU', () => {
    expect(ultraFacePriors(320, 240)).toBe(n);
    const scores = new Float32Array(n * 2);
    const boxes = new Float32Array(n * 4);
    scores[100 * 2 + 1] = 0.95;
    boxes.set([0.1, 0.2, 0.3, 0.5], 100 * 4);
    scores[101 * 2 + 1] = 0.8;
    boxes.set([0.11, 0.21, 0.31, 0.51], 101 * 4);
    scores[200 * 2 + 1] = 0.6; // below 0.7
    boxes.set([0.6, 0.6, 0.7, 0.7], 200 * 4);
    scores[300 * 2] = 0.99; // background column: not a face
    const out = p.decode(
      { scores: { data: scores, dims: [1, n, 2] }, boxes: { data: boxes, dims: [1, n, 4] } },
      meta,
      { scoreThreshold: 0.7, nmsIou: 0.3, maxDetections: 10 },
    );
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ label: 'face', classId: 0 });
    expect(out[0]!.score).toBeCloseTo(0.95, 5);
    expectBox(out[0]!.box, { x: 0.1, y: 0.2, w: 0.2, h: 0.3 });
  });
});

describe('yunet decode', () => {
  const p = createYuNetPlugin();
  const meta = metaFor(p, 'letterbox-tl'); // 640x360 -> 320x180 content

  function outputs(): TensorMap {
    const o: TensorMap = {};
    for (const s of [8, 16, 32]) {
      const n = (320 / s) ** 2;
      o[`cls_${s}`] = { data: new Float32Array(n), dims: [1, n, 1] };
      o[`obj_${s}`] = { data: new Float32Array(n), dims: [1, n, 1] };
      o[`bbox_${s}`] = { data: new Float32Array(n * 4), dims: [1, n, 4] };
      o[`kps_${s}`] = { data: new Float32Array(n * 10), dims: [1, n, 10] };
    }
    return o;
  }

  it('decodes stride 32 cell (3,2): score sqrt(cls*obj), box and 5 landmarks in frame coordinates', () => {
    const o = outputs();
    const i = 2 * 10 + 3;
    o.cls_32!.data[i] = 0.81;
    o.obj_32!.data[i] = 1.2; // clamped to 1 like OpenCV
    o.bbox_32!.data.set([0.5, 0.5, Math.log(2), Math.log(3)], i * 4);
    o.kps_32!.data.set([0.1, 0.2, 0.9, 0.2, 0.5, 0.5, 0.2, 0.8, 0.8, 0.8], i * 10);
    // Stride 8: a face below threshold (sqrt(0.25*1) = 0.5).
    o.cls_8!.data[5] = 0.25;
    o.obj_8!.data[5] = 1;
    const out = p.decode(o, meta, { scoreThreshold: 0.7, nmsIou: 0.3, maxDetections: 10 });
    expect(out).toHaveLength(1);
    const d: Detection = out[0]!;
    expect(d.score).toBeCloseTo(0.9, 5);
    // cx = 3.5*32 = 112, cy = 2.5*32 = 80, w = 64, h = 96 (input px); content 320x180.
    expectBox(d.box, { x: 80 / 320, y: 32 / 180, w: 64 / 320, h: 96 / 180 });
    expect(d.landmarks).toHaveLength(5);
    expect(d.landmarks![0]!.x).toBeCloseTo((3.1 * 32) / 320, 4);
    expect(d.landmarks![0]!.y).toBeCloseTo((2.2 * 32) / 180, 4);
    expect(d.landmarks![4]!.x).toBeCloseTo((3.8 * 32) / 320, 4);
  });

  it('lists the 12 outputs it needs, for the load-time shape check', () => {
    expect(p.outputs.map((o) => o.name)).toContain('kps_16');
    expect(p.outputs.find((o) => o.name === 'bbox_8')?.dims).toEqual([null, 1600, 4]);
  });
});

describe('yolov8 decode', () => {
  const names = ['Forklift', 'person', 'Motorbike'];
  const n = 10;

  it('decodes [1,4+C,N] channel-major with a centred letterbox and user class names', () => {
    const p = createYoloV8Plugin({ classNames: names, outputName: 'output0' });
    const meta = metaFor(p, 'letterbox-center'); // 640x360 in 640x640, 140 rows above
    const data = new Float32Array((4 + 3) * n);
    const set = (ch: number, i: number, v: number): void => void (data[ch * n + i] = v);
    [320, 320, 100, 50].forEach((v, ch) => set(ch, 4, v));
    set(4 + 2, 4, 0.9);
    set(4 + 0, 4, 0.3);
    [100, 200, 20, 20].forEach((v, ch) => set(ch, 7, v));
    set(4 + 0, 7, 0.6);
    const out = p.decode({ output0: { data, dims: [1, 7, n] } }, meta, opts);
    expect(out.map((d) => d.label)).toEqual(['motorcycle', 'forklift']);
    expect(out[0]!.score).toBeCloseTo(0.9, 5);
    expectBox(out[0]!.box, { x: 270 / 640, y: (295 - 140) / 360, w: 100 / 640, h: 50 / 360 });
  });

  it('supports a top-left letterbox and rejects a head of the wrong width', () => {
    const p = createYoloV8Plugin({ numClasses: 3, letterbox: 'tl' });
    expect(p.classNames).toEqual(['class0', 'class1', 'class2']);
    const meta = metaFor(p, 'letterbox-tl');
    const data = new Float32Array(7 * n);
    data.set([320], 0);
    data[n] = 100;
    data[2 * n] = 64;
    data[3 * n] = 64;
    data[4 * n] = 0.8;
    const out = p.decode({ output0: { data, dims: [1, 7, n] } }, meta, opts);
    expectBox(out[0]!.box, { x: 288 / 640, y: 68 / 360, w: 64 / 640, h: 64 / 360 });
    expect(() => p.decode({ output0: { data, dims: [1, n, 7] } }, meta, opts)).toThrow(/expected \[1,7,N\]/);
  });

  it('defaults to COCO names for an 80-class head', () => {
    expect(createYoloV8Plugin().classNames[0]).toBe('person');
  });
});
