/**
 * Models run by worker threads (detect/worker-pool.ts): the same detections as on the main thread for real
 * frames, the same errors, the bounded queue.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { asset } from '@vigil/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelBusyError, ModelError, loadDetector, loadModel, loadModelPool } from '../src/detect/index.js';
import type { LoadedModel, RgbFrame } from '../src/detect/index.js';

const run = promisify(execFile);
const paths = {
  yolox: asset('models/yolox_nano.onnx'),
  fastestdet: asset('models/FastestDet.onnx'),
  people: asset('videos/one-by-one-person-detection.mp4'),
};

async function grab(clip: string, t: number): Promise<RgbFrame> {
  const args = ['-v', 'error', '-ss', String(t), '-i', clip, '-frames:v', '1', '-vf', 'scale=640:360'];
  const { stdout } = await run('ffmpeg', [...args, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], {
    encoding: 'buffer',
    maxBuffer: 64 << 20,
  });
  return { data: stdout, width: 640, height: 360 };
}

describe.skipIf(!paths.yolox || !paths.fastestdet || !paths.people)('detect worker pool', () => {
  let person: RgbFrame;
  let empty: RgbFrame;
  const open: LoadedModel[] = [];
  beforeAll(async () => {
    person = await grab(paths.people!, 32);
    empty = await grab(paths.people!, 20);
  });
  afterAll(async () => {
    await Promise.allSettled(open.map((m) => m.dispose()));
  });

  it('gives the main thread’s detections for both models, frame after frame', async () => {
    for (const type of ['yolox', 'fastestdet'] as const) {
      const spec = { name: type, type, path: paths[type]! };
      const local = await loadModel(spec);
      const pool = await loadModelPool(spec, 2);
      open.push(pool);
      expect(pool.sha256).toBe(local.sha256);
      expect([pool.plugin.inputWidth, pool.plugin.inputHeight]).toEqual([
        local.plugin.inputWidth,
        local.plugin.inputHeight,
      ]);
      for (const f of [person, empty, person]) {
        const [a, b] = await Promise.all([local.detect(f), pool.detect(f)]);
        expect(b.detections).toEqual(a.detections);
      }
      expect((await pool.detect(person)).detections.some((d) => d.label === 'person')).toBe(true);
      // Two frames at once run on the two workers; both answer correctly.
      const both = await Promise.all([pool.detect(person), pool.detect(empty)]);
      expect(both[0].detections).toEqual((await local.detect(person)).detections);
      expect(both[1].detections).toEqual((await local.detect(empty)).detections);
      await local.dispose();
    }
  });

  it('bounds the waiting line (MODEL_BUSY past it) and rejects waiting calls on dispose', async () => {
    const pool = await loadModelPool({ name: 'y', type: 'yolox', path: paths.yolox! }, 1, { maxQueue: 1 });
    open.push(pool);
    const running = pool.detect(person);
    const waiting = pool.detect(person);
    await expect(pool.detect(person)).rejects.toBeInstanceOf(ModelBusyError);
    await expect(running).resolves.toBeTruthy();
    await expect(waiting).resolves.toBeTruthy();
    const a = pool.detect(person);
    const b = pool.detect(person);
    const bRejected = expect(b).rejects.toMatchObject({ code: 'MODEL_DISPOSED' });
    const disposed = pool.dispose();
    await expect(a).resolves.toBeTruthy(); // the running frame finishes
    await bRejected;
    await disposed;
    await expect(pool.detect(person)).rejects.toMatchObject({ code: 'MODEL_DISPOSED' });
  });

  it('reports load failures as ModelError with the same codes as the main thread', async () => {
    const err = await loadDetector({
      name: 'x',
      type: 'yolox',
      path: '/nonexistent/model.onnx',
      workers: 1,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as ModelError).code).toBe('MODEL_NOT_FOUND');
    const shape = await loadDetector({ name: 'x', type: 'yolox', path: paths.fastestdet!, workers: 1 }).catch(
      (e: unknown) => e,
    );
    expect((shape as ModelError).code).toBe('MODEL_SHAPE');
  });

  it('rejects a short frame without losing the worker', async () => {
    const pool = await loadModelPool({ name: 'f', type: 'fastestdet', path: paths.fastestdet! }, 1);
    open.push(pool);
    await expect(pool.detect({ data: new Uint8Array(10), width: 640, height: 360 })).rejects.toBeInstanceOf(
      RangeError,
    );
    expect((await pool.detect(person)).detections.length).toBeGreaterThan(0);
  });
});
