/**
 * ffmpeg's copy of each frame at the model's content size (RgbFrame.scaled, ingest/ffmpeg-args.ts): the
 * convert-only path gives the resize path's tensor bit for bit where both see the same pixels, and on real clip
 * frames delivered by the agent's own ffmpeg arguments the real models find the same people as with the JS
 * resize (the two scalers differ by a grey level here and there, so scores move a little; nothing else may).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { asset } from '@vigil/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createResizer,
  loadModel,
  loadModelPool,
  resizeToTensor,
  type Detection,
  type LoadedModel,
  type ResizeOptions,
  type RgbFrame,
} from '../src/detect/index.js';
import { frameLayout, outputOptions, withModelScale, type CameraSource } from '../src/ingest/ffmpeg-args.js';
import { iou } from '../src/lib/geometry.js';

const run = promisify(execFile);

/** Deterministic noise, so a failure reproduces. */
function noise(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

const yoloxLike: ResizeOptions = {
  width: 416,
  height: 416,
  mode: 'letterbox-tl',
  padValue: 114,
  channelOrder: 'bgr',
  scale: 1,
  mean: 0,
};
const centred: ResizeOptions = { ...yoloxLike, mode: 'letterbox-center', scale: 1 / 255 };
const stretch: ResizeOptions = { ...yoloxLike, width: 352, height: 352, mode: 'stretch', scale: 1 / 255 };

describe('the convert-only path (RgbFrame.scaled)', () => {
  it('a frame already at the content size converts to exactly what the sampling loop gives', () => {
    // 416x234 is the letterbox content of a 640x360 frame in 416x416: scale 1, every weight 0.
    const frame = { data: noise(416 * 234 * 3, 7), width: 416, height: 234 };
    for (const opts of [yoloxLike, centred]) {
      const want = resizeToTensor(frame, opts).tensor;
      const got = createResizer(opts)(frame).tensor;
      expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
    }
  });

  it('reads the scaled copy (rows of any stride) and maps boxes to the full frame', () => {
    for (const [opts, cw, ch] of [
      [yoloxLike, 416, 234],
      [centred, 416, 234],
      [stretch, 352, 352],
    ] as const) {
      const content = noise(cw * ch * 3, cw + ch);
      const stride = 640 * 3;
      const strip = new Uint8Array(stride * ch).fill(99);
      for (let y = 0; y < ch; y++) strip.set(content.subarray(y * cw * 3, (y + 1) * cw * 3), y * stride);
      const frame: RgbFrame = {
        data: noise(640 * 360 * 3, 3),
        width: 640,
        height: 360,
        scaled: { data: strip, width: cw, height: ch, stride },
      };
      const resizer = createResizer(opts);
      const { tensor, meta } = resizer(frame);
      // The content image resized at scale 1 by the sampling loop: same values, same padding.
      const want = resizeToTensor({ data: content, width: cw, height: ch }, opts).tensor;
      expect(Buffer.from(tensor.buffer).equals(Buffer.from(want.buffer))).toBe(true);
      expect(meta).toEqual(resizer.geometry(640, 360));
      expect([meta.frameWidth, meta.frameHeight, meta.contentWidth, meta.contentHeight]).toEqual([
        640,
        360,
        cw,
        ch,
      ]);
    }
  });

  it('ignores a scaled copy of another size (another model shares the frame) and resizes the frame', () => {
    const data = noise(640 * 360 * 3, 11);
    const other = { data: new Uint8Array(300 * 200 * 3), width: 300, height: 200, stride: 900 };
    const got = createResizer(yoloxLike)({ data, width: 640, height: 360, scaled: other }).tensor;
    const want = resizeToTensor({ data, width: 640, height: 360 }, yoloxLike).tensor;
    expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
  });

  it('rejects a scaled copy too short for its size', () => {
    const short = { data: new Uint8Array(10), width: 416, height: 234, stride: 416 * 3 };
    expect(() =>
      createResizer(yoloxLike)({ data: new Uint8Array(0), width: 640, height: 360, scaled: short }),
    ).toThrow(/does not hold 416x234/);
  });
});

const source = (scaled?: { width: number; height: number }): CameraSource => ({
  id: 'c',
  url: '/v.mp4',
  transport: 'tcp',
  width: 640,
  height: 360,
  fps: 5,
  ioTimeoutMs: 5000,
  realtime: false,
  loop: false,
  ...(scaled ? { scaled } : {}),
});

describe('ffmpeg frame layout with the model copy', () => {
  it('stacks the copy below the frame, padded to its width, and says where it is', () => {
    const l = frameLayout(source({ width: 416, height: 234 }));
    expect(l).toEqual({
      frameBytes: 640 * 360 * 3 + 640 * 234 * 3,
      frameSize: 640 * 360 * 3,
      scaled: { offset: 640 * 360 * 3, width: 416, height: 234, stride: 640 * 3 },
    });
    const vf = outputOptions(source({ width: 416, height: 234 }))[6]!;
    expect(vf).toBe(
      'fps=5,scale=640:360:flags=fast_bilinear,split=2[f][m];[m]scale=416:234:flags=bilinear,format=rgb24,pad=640:234:0:0[mo];[f]format=rgb24[fo];[fo][mo]vstack',
    );
  });
  it('makes no copy without a model, for the frame size itself, or when wider than the frame', () => {
    for (const s of [undefined, { width: 640, height: 360 }, { width: 800, height: 450 }]) {
      expect(frameLayout(source(s))).toEqual({ frameBytes: 640 * 360 * 3, frameSize: 640 * 360 * 3 });
      expect(outputOptions(source(s))[6]).toBe('fps=5,scale=640:360:flags=fast_bilinear');
    }
  });
});

const paths = {
  yolox: asset('models/yolox_nano.onnx'),
  fastestdet: asset('models/FastestDet.onnx'),
  people: asset('videos/one-by-one-person-detection.mp4'),
};

/** Frames as a camera with this model gets them: the agent's ffmpeg output arguments, one frame at `t`. */
async function grab(clip: string, t: number, model: LoadedModel): Promise<RgbFrame> {
  const src = withModelScale({ ...source(), url: clip }, model.plugin);
  const layout = frameLayout(src);
  const { stdout } = await run(
    'ffmpeg',
    ['-v', 'error', '-ss', String(t), '-i', clip, '-frames:v', '1', ...outputOptions(src), 'pipe:1'],
    { encoding: 'buffer', maxBuffer: 64 << 20 },
  );
  expect(stdout.length).toBe(layout.frameBytes);
  const s = layout.scaled!;
  return {
    data: stdout.subarray(0, layout.frameSize),
    width: 640,
    height: 360,
    scaled: { data: stdout.subarray(s.offset), width: s.width, height: s.height, stride: s.stride },
  };
}

const people = (d: Detection[]): Detection[] => d.filter((x) => x.label === 'person');

describe.skipIf(!paths.yolox || !paths.fastestdet || !paths.people)(
  'real models on ffmpeg-scaled frames of one-by-one-person-detection.mp4',
  () => {
    // Empty room, people at the table, walking in and out (contact sheet of the clip).
    const TIMES = [3, 10, 20, 32, 46, 60, 80, 100, 112, 130];
    const open: LoadedModel[] = [];
    afterAll(async () => {
      await Promise.allSettled(open.map((m) => m.dispose()));
    });
    let frames: Record<'yolox' | 'fastestdet', RgbFrame[]>;
    let models: Record<'yolox' | 'fastestdet', LoadedModel>;
    beforeAll(async () => {
      const [yolox, fastestdet] = await Promise.all(
        (['yolox', 'fastestdet'] as const).map((type) => loadModel({ name: type, type, path: paths[type]! })),
      );
      models = { yolox: yolox!, fastestdet: fastestdet! };
      open.push(yolox!, fastestdet!);
      frames = { yolox: [], fastestdet: [] };
      for (const type of ['yolox', 'fastestdet'] as const)
        for (const t of TIMES) frames[type].push(await grab(paths.people!, t, models[type]));
    }, 120_000);

    it('find the same people as the JS resize: same count, IoU > 0.9, score within 0.03', async () => {
      const lines: string[] = [];
      for (const type of ['yolox', 'fastestdet'] as const) {
        const model = models[type];
        for (const [i, f] of frames[type].entries()) {
          const scaled = people((await model.detect(f)).detections);
          const resized = people(
            (await model.detect({ data: f.data, width: f.width, height: f.height })).detections,
          );
          lines.push(
            `${type} t=${TIMES[i]}: resize ${resized.map((d) => d.score.toFixed(3)).join(',') || '-'} | scaled ${scaled.map((d) => d.score.toFixed(3)).join(',') || '-'}`,
          );
          expect(scaled.length, `${type} at ${TIMES[i]} s`).toBe(resized.length);
          for (const [j, d] of scaled.entries()) {
            expect(iou(d.box, resized[j]!.box), `${type} at ${TIMES[i]} s`).toBeGreaterThan(0.9);
            expect(Math.abs(d.score - resized[j]!.score), `${type} at ${TIMES[i]} s`).toBeLessThan(0.03);
          }
        }
      }
      console.log(`[prescale] person scores, JS resize | ffmpeg copy:\n${lines.join('\n')}`);
      // The clip has people in it: the comparison was not vacuous.
      expect(lines.filter((l) => !l.endsWith('| scaled -')).length).toBeGreaterThan(8);
    }, 120_000);

    it('worker threads get only the copy and give the main thread’s detections on it', async () => {
      for (const type of ['yolox', 'fastestdet'] as const) {
        const pool = await loadModelPool({ name: type, type, path: paths[type]! }, 1);
        open.push(pool);
        for (const f of frames[type]) {
          const [a, b] = await Promise.all([models[type].detect(f), pool.detect(f)]);
          expect(b.detections).toEqual(a.detections);
        }
      }
    }, 120_000);
  },
);
