/**
 * The generic yolov8 type end to end through onnxruntime. No YOLOv8 weights ship with the assets, so the test
 * writes a tiny ONNX graph by hand (a few protobuf fields): output0 = K + 0 * mean(images), i.e. a fixed head
 * [1,4+C,N] that still depends on the input. What is under test is the loading path: input name and size read
 * from the model's metadata (or from the spec when dynamic), class count from the output, letterbox mapping.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError, loadModel } from '../src/detect/index.js';
import type { RgbFrame } from '../src/detect/index.js';

// --- a minimal protobuf writer, enough for onnx.proto's ModelProto ---
type Field = Uint8Array;
const cat = (parts: Field[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
function varint(v: number): Uint8Array {
  const b: number[] = [];
  do {
    let byte = v % 128;
    v = Math.floor(v / 128);
    if (v > 0) byte |= 0x80;
    b.push(byte);
  } while (v > 0);
  return Uint8Array.from(b);
}
const int = (field: number, v: number): Field => cat([varint(field << 3), varint(v)]);
const bytes = (field: number, v: Uint8Array): Field => cat([varint((field << 3) | 2), varint(v.length), v]);
const str = (field: number, s: string): Field => bytes(field, new TextEncoder().encode(s));
const msg = (field: number, ...parts: Field[]): Field => bytes(field, cat(parts));

/** ValueInfoProto of a float tensor; a string dim is symbolic. */
const valueInfo = (field: number, name: string, dims: (number | string)[]): Field =>
  msg(
    field,
    str(1, name),
    msg(
      2,
      msg(1, int(1, 1), msg(2, ...dims.map((d) => msg(1, typeof d === 'number' ? int(1, d) : str(2, d))))),
    ),
  );
const floatInit = (name: string, dims: number[], values: number[]): Field =>
  msg(
    5,
    ...dims.map((d) => int(1, d)),
    int(2, 1),
    str(8, name),
    bytes(9, new Uint8Array(Float32Array.from(values).buffer)),
  );
const node = (op: string, inputs: string[], output: string, ...attrs: Field[]): Field =>
  msg(1, ...inputs.map((i) => str(1, i)), str(2, output), str(3, `${op}_${output}`), str(4, op), ...attrs);

function tinyHead(
  inputDims: (number | string)[],
  head: number[][],
  outputDims?: (number | string)[],
): Uint8Array {
  const channels = head.length;
  const n = head[0]!.length;
  const graph = msg(
    7,
    node('ReduceMean', ['images'], 'm', msg(5, str(1, 'keepdims'), int(3, 0), int(20, 2))),
    node('Mul', ['m', 'zero'], 'z'),
    node('Add', ['k', 'z'], 'output0'),
    str(2, 'tiny'),
    floatInit('k', [1, channels, n], head.flat()),
    floatInit('zero', [], [0]),
    valueInfo(11, 'images', inputDims),
    valueInfo(12, 'output0', outputDims ?? [1, channels, n]),
  );
  return cat([int(1, 8), str(2, 'vigil-test'), graph, msg(8, str(1, ''), int(2, 13))]);
}

// Two classes, eight anchors (a real head has far more anchors than channels); anchor 1 is a class-1 box
// centred in a 64x64 input, the others score low.
const HEAD = [
  [5, 32, 60, 5, 5, 5, 5, 5],
  [5, 32, 60, 5, 5, 5, 5, 5],
  [4, 16, 4, 4, 4, 4, 4, 4],
  [4, 8, 4, 4, 4, 4, 4, 4],
  [0.1, 0.1, 0.05, 0, 0, 0, 0, 0],
  [0.2, 0.9, 0.1, 0, 0, 0, 0, 0],
];

describe('yolov8 type on a hand-made ONNX head', () => {
  let dir: string;
  const frame: RgbFrame = { data: new Uint8Array(640 * 360 * 3).fill(60), width: 640, height: 360 };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-yolov8-'));
    await writeFile(join(dir, 'fixed.onnx'), tinyHead([1, 3, 64, 64], HEAD));
    await writeFile(join(dir, 'dynamic.onnx'), tinyHead(['batch', 3, 'h', 'w'], HEAD, [1, 6, 'anchors']));
    // The same head transposed, so that onnxruntime really produces [1,N,4+C].
    await writeFile(
      join(dir, 'transposed.onnx'),
      tinyHead(
        [1, 3, 64, 64],
        HEAD[0]!.map((_, i) => HEAD.map((row) => row[i]!)),
      ),
    );
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reads input size and class count from the model and maps the centred letterbox back', async () => {
    const m = await loadModel({
      name: 'u',
      type: 'yolov8',
      path: join(dir, 'fixed.onnx'),
      classNames: ['cat', 'Forklift'],
    });
    expect([m.plugin.inputName, m.plugin.inputWidth, m.plugin.inputHeight]).toEqual(['images', 64, 64]);
    const { detections } = await m.detect(frame, { scoreThreshold: 0.5 });
    expect(detections).toHaveLength(1);
    const d = detections[0]!;
    expect([d.label, d.classId]).toEqual(['forklift', 1]);
    expect(d.score).toBeCloseTo(0.9, 5);
    // 640x360 -> 64x36 content, 14 rows of padding above; box (24,28)-(40,36) in input pixels.
    expect(d.box.x).toBeCloseTo(24 / 64, 4);
    expect(d.box.y).toBeCloseTo((28 - 14) / 36, 4);
    expect(d.box.w).toBeCloseTo(16 / 64, 4);
    expect(d.box.h).toBeCloseTo(8 / 36, 4);
    await m.dispose();
  });

  it('takes the size from the spec when the model input is dynamic, and names classes it cannot know', async () => {
    const m = await loadModel({
      name: 'u',
      type: 'yolov8',
      path: join(dir, 'dynamic.onnx'),
      inputWidth: 64,
      inputHeight: 64,
      letterbox: 'tl',
    });
    expect(m.plugin.classNames).toEqual(['class0', 'class1']);
    const d = (await m.detect(frame, { scoreThreshold: 0.5 })).detections[0]!;
    expect(d.label).toBe('class1');
    expect(d.box.y).toBeCloseTo(28 / 36, 4); // top-left letterbox: no padding above
    await m.dispose();
  });

  it('rejects a transposed head and a size that contradicts the model', async () => {
    const t = loadModel({ name: 'u', type: 'yolov8', path: join(dir, 'transposed.onnx') });
    await expect(t).rejects.toThrow(ModelError);
    await expect(t).rejects.toThrow(/looks like \[1,N,4\+C\]/);
    const s = loadModel({ name: 'u', type: 'yolov8', path: join(dir, 'fixed.onnx'), inputWidth: 640 });
    await expect(s).rejects.toMatchObject({ code: 'MODEL_SHAPE' });
  });
});
