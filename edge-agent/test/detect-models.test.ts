/**
 * The real models in the shared assets on real frames (ffmpeg-extracted, 640x360 rgb24 like ingest delivers),
 * and every way loading can fail. Skips, with testkit's note, when the assets are absent.
 *
 * Frame times were found by scanning the clips: one-by-one-person-detection.mp4 has a person at the table
 * at 32 s and an empty room at 20 s; face-walking.mp4 shows both faces at 2.0 s.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { asset } from '@vigil/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelBusyError, ModelError, ModelRegistry, loadModel } from '../src/detect/index.js';
import type { Detection, LoadedModel, ModelSpec, RgbFrame } from '../src/detect/index.js';
import { iou } from '../src/lib/geometry.js';

const run = promisify(execFile);

const paths = {
  yolox: asset('models/yolox_nano.onnx'),
  fastestdet: asset('models/FastestDet.onnx'),
  ultraface: asset('models/version-RFB-320.onnx'),
  yunet: asset('models/yunet_n_320_320.onnx'),
  people: asset('videos/one-by-one-person-detection.mp4'),
  faces: asset('videos/face-walking.mp4'),
};
const YOLOX_SHA256 = '695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14';

/** One frame at `t` seconds, scaled like the ingest pipeline scales a camera for analysis. */
async function grab(clip: string, t: number): Promise<RgbFrame> {
  const args = ['-v', 'error', '-ss', String(t), '-i', clip, '-frames:v', '1', '-vf', 'scale=640:360'];
  const { stdout } = await run('ffmpeg', [...args, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], {
    encoding: 'buffer',
    maxBuffer: 64 << 20,
  });
  expect(stdout.length).toBe(640 * 360 * 3);
  return { data: stdout, width: 640, height: 360 };
}

const of = (dets: Detection[], label: string): Detection[] => dets.filter((d) => d.label === label);

async function expectModelError(p: Promise<unknown>, code: string): Promise<ModelError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelError);
  expect((err as ModelError).code).toBe(code);
  return err as ModelError;
}

describe.skipIf(!paths.yolox || !paths.fastestdet || !paths.people)(
  'people on one-by-one-person-detection.mp4',
  () => {
    let yolox: LoadedModel;
    let fastest: LoadedModel;
    let person: RgbFrame;
    let empty: RgbFrame;

    beforeAll(async () => {
      [yolox, fastest, person, empty] = await Promise.all([
        loadModel({ name: 'yolox', type: 'yolox', path: paths.yolox!, sha256: YOLOX_SHA256 }),
        loadModel({ name: 'fastestdet', type: 'fastestdet', path: paths.fastestdet! }),
        grab(paths.people!, 32),
        grab(paths.people!, 20),
      ]);
    });
    afterAll(async () => {
      await Promise.all([yolox?.dispose(), fastest?.dispose()]);
    });

    it('YOLOX-Nano finds the person at 32 s and no person in the empty room at 20 s', async () => {
      const hit = await yolox.detect(person);
      const people = of(hit.detections, 'person');
      expect(people).toHaveLength(1);
      expect(people[0]!.score).toBeGreaterThan(0.5);
      expect(people[0]!.classId).toBe(0);
      // A standing person at the table: tall box in the middle of the frame.
      expect(people[0]!.box.h).toBeGreaterThan(0.6);
      expect(people[0]!.box.x).toBeGreaterThan(0.3);
      expect(hit.inferenceMs).toBeGreaterThan(0);
      expect(of((await yolox.detect(empty)).detections, 'person')).toEqual([]);
    });

    it('FastestDet finds the person at 32 s (> 0.65) and no person at 20 s', async () => {
      const people = of((await fastest.detect(person)).detections, 'person');
      expect(people).toHaveLength(1);
      expect(people[0]!.score).toBeGreaterThan(0.65);
      expect(of((await fastest.detect(empty)).detections, 'person')).toEqual([]);
    });

    it('both agree on where the person is (letterbox and stretch mapped back alike)', async () => {
      const a = of((await yolox.detect(person)).detections, 'person')[0]!;
      const b = of((await fastest.detect(person)).detections, 'person')[0]!;
      expect(iou(a.box, b.box)).toBeGreaterThan(0.75);
    });

    it('gives identical results on the reused input buffer, whatever ran in between', async () => {
      const first = await yolox.detect(person);
      await yolox.detect(empty);
      const again = await yolox.detect(person);
      expect(again.detections).toEqual(first.detections);
    });
  },
);

describe.skipIf(!paths.yunet || !paths.ultraface || !paths.faces)('faces on face-walking.mp4', () => {
  let yunet: LoadedModel;
  let ultra: LoadedModel;
  let frame: RgbFrame;

  beforeAll(async () => {
    [yunet, ultra, frame] = await Promise.all([
      loadModel({ name: 'yunet', type: 'yunet', path: paths.yunet! }),
      loadModel({ name: 'ultraface', type: 'ultraface', path: paths.ultraface! }),
      grab(paths.faces!, 2.0),
    ]);
  });
  afterAll(async () => {
    await Promise.all([yunet?.dispose(), ultra?.dispose()]);
  });

  it('YuNet finds both faces with 5 landmarks each, near their box', async () => {
    const faces = (await yunet.detect(frame)).detections;
    expect(faces.length).toBeGreaterThanOrEqual(1);
    for (const f of faces) {
      expect(f.label).toBe('face');
      expect(f.score).toBeGreaterThan(0.7);
      expect(f.landmarks).toHaveLength(5);
      for (const p of f.landmarks!) {
        expect(p.x).toBeGreaterThan(f.box.x - f.box.w * 0.25);
        expect(p.x).toBeLessThan(f.box.x + f.box.w * 1.25);
        expect(p.y).toBeGreaterThan(f.box.y - f.box.h * 0.25);
        expect(p.y).toBeLessThan(f.box.y + f.box.h * 1.25);
      }
    }
  });

  it('UltraFace finds faces where YuNet does', async () => {
    const u = (await ultra.detect(frame)).detections;
    const y = (await yunet.detect(frame)).detections;
    expect(u.length).toBeGreaterThanOrEqual(1);
    expect(u.every((f) => f.label === 'face' && f.score > 0.7)).toBe(true);
    for (const f of u) expect(Math.max(...y.map((g) => iou(f.box, g.box)))).toBeGreaterThan(0.4);
  });
});

describe.skipIf(!paths.yolox || !paths.yunet)('loading failures', () => {
  let dir: string;
  let corrupt: string;
  let truncated: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-detect-'));
    corrupt = join(dir, 'corrupt.onnx');
    truncated = join(dir, 'truncated.onnx');
    const bytes = new Uint8Array(64 * 1024);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
    await writeFile(corrupt, bytes);
    const good = await readFile(paths.yolox!);
    await writeFile(truncated, good.subarray(0, good.length >> 1));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a file of random bytes is MODEL_INVALID naming the path', async () => {
    const err = await expectModelError(
      loadModel({ name: 'x', type: 'yolox', path: corrupt }),
      'MODEL_INVALID',
    );
    expect(err.message).toContain(corrupt);
    expect(err.retryable).toBe(false);
  });

  it('an unknown type is MODEL_INVALID before any I/O', async () => {
    const spec = { name: 'x', type: 'yolo9000', path: corrupt } as unknown as ModelSpec;
    const err = await expectModelError(loadModel(spec), 'MODEL_INVALID');
    expect(err.message).toContain('yolo9000');
  });

  it('a truncated model is MODEL_INVALID', async () => {
    await expectModelError(loadModel({ name: 'x', type: 'yolox', path: truncated }), 'MODEL_INVALID');
  });

  it('a missing file is MODEL_NOT_FOUND naming the path', async () => {
    const path = join(dir, 'nope.onnx');
    const err = await expectModelError(loadModel({ name: 'x', type: 'yolox', path }), 'MODEL_NOT_FOUND');
    expect(err.message).toContain(path);
  });

  it('a wrong sha256 is MODEL_CHECKSUM naming expected and actual; the right one (any case) loads', async () => {
    const wrong = '0'.repeat(64);
    const err = await expectModelError(
      loadModel({ name: 'x', type: 'yolox', path: paths.yolox!, sha256: wrong }),
      'MODEL_CHECKSUM',
    );
    expect(err.message).toContain(wrong);
    expect(err.message).toContain(YOLOX_SHA256);
    expect(err.message).toContain(paths.yolox!);
    const m = await loadModel({
      name: 'x',
      type: 'yolox',
      path: paths.yolox!,
      sha256: YOLOX_SHA256.toUpperCase(),
    });
    expect(m.sha256).toBe(YOLOX_SHA256);
    await m.dispose();
  });

  it('a model of another family is MODEL_SHAPE saying what was expected', async () => {
    const err = await expectModelError(
      loadModel({ name: 'x', type: 'yolox', path: paths.yunet! }),
      'MODEL_SHAPE',
    );
    expect(err.message).toMatch(/expected input "images"/);
    expect(err.message).toContain('input float32[1,3,320,320]');
    const err2 = await expectModelError(
      loadModel({ name: 'x', type: 'yunet', path: paths.yolox! }),
      'MODEL_SHAPE',
    );
    expect(err2.message).toContain('expected input "input"');
    // Same input name and size as YuNet, different outputs: the output check catches it.
    if (paths.ultraface) {
      const err3 = await expectModelError(
        loadModel({ name: 'x', type: 'yunet', path: paths.ultraface }),
        'MODEL_SHAPE',
      );
      expect(err3.message).toMatch(/cls_8/);
    }
  });

  it('a registry keeps the good model usable next to a corrupt and a missing one', async () => {
    const reg = new ModelRegistry();
    const specs: ModelSpec[] = [
      { name: 'good', type: 'yolox', path: paths.yolox! },
      { name: 'bad', type: 'yolox', path: corrupt },
      { name: 'gone', type: 'fastestdet', path: join(dir, 'missing.onnx') },
    ];
    await reg.load(specs);
    expect(reg.failures().map((f) => [f.name, f.error.code])).toEqual([
      ['bad', 'MODEL_INVALID'],
      ['gone', 'MODEL_NOT_FOUND'],
    ]);
    expect(reg.get('bad')).toBeUndefined();
    const good = reg.get('good')!;
    const frame: RgbFrame = { data: new Uint8Array(64 * 48 * 3).fill(128), width: 64, height: 48 };
    expect((await good.detect(frame)).detections).toEqual([]);

    // Reconciling: an unchanged model keeps its session, a removed one is disposed.
    await reg.load([specs[0]!]);
    expect(reg.get('good')).toBe(good);
    expect(reg.failures()).toEqual([]);
    await reg.load([]);
    expect(reg.get('good')).toBeUndefined();
    await expectModelError(good.detect(frame), 'MODEL_DISPOSED');
    await reg.dispose();
  });

  it('bounds the queue: calls beyond maxQueue waiting are rejected with MODEL_BUSY', async () => {
    const m = await loadModel({ name: 'q', type: 'yolox', path: paths.yolox! }, { maxQueue: 1 });
    const frame: RgbFrame = { data: new Uint8Array(640 * 360 * 3).fill(90), width: 640, height: 360 };
    const results = await Promise.allSettled([
      m.detect(frame),
      m.detect(frame),
      m.detect(frame),
      m.detect(frame),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'rejected']);
    const busy = (results[2] as PromiseRejectedResult).reason as ModelBusyError;
    expect(busy).toBeInstanceOf(ModelBusyError);
    expect(busy.code).toBe('MODEL_BUSY');
    expect(busy.retryable).toBe(true);

    // dispose() lets the running call finish and rejects the queued one.
    const running = m.detect(frame);
    const queued = expectModelError(m.detect(frame), 'MODEL_DISPOSED'); // handled before it rejects
    const disposed = m.dispose();
    await expect(running).resolves.toHaveProperty('detections');
    await queued;
    await disposed;
    await expectModelError(m.detect(frame), 'MODEL_DISPOSED');
  });
});
