import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asset } from '@vigil/testkit';
import { loadModel, type LoadedModel } from '../src/detect/index.js';
import { decodeJpeg } from '../src/media/snapshot.js';
import { runAgent, type CollectedEvent } from './helpers/agent-harness.js';

const clip = asset('videos/face-walking.mp4');
const yolox = asset('models/yolox_nano.onnx');
const yunet = asset('models/yunet_n_320_320.onnx');
const ultraface = asset('models/version-RFB-320.onnx');

async function snapshotsOf(redactFaces: boolean): Promise<CollectedEvent[]> {
  const run = await runAgent({
    models: [
      { name: 'yolox', type: 'yolox', path: yolox! },
      { name: 'faces', type: 'yunet', path: yunet! },
    ],
    privacy: { redactFaces, faceModel: 'faces', faceThreshold: 0.5 },
    cameras: [
      {
        id: 'walk',
        url: clip!,
        realtime: true,
        loop: false,
        width: 480,
        height: 270,
        fps: 10,
        detect: { model: 'yolox', labels: ['person'] },
      },
    ],
  });
  try {
    // loop: false: one pass of the clip, then the camera ends.
    await expect
      .poll(() => run.agent.cameraStatus()[0]?.state, { timeout: 20_000, interval: 100 })
      .toBe('ended');
    await run.agent.stop();
    return run.events.filter((e) => e.snapshot);
  } finally {
    await run.dispose();
  }
}

// face-walking.mp4: a man and a woman walk toward the camera, faces visible. Person snapshots must not
// show a face that a face detector can find once redaction is on; with it off, they do.
describe.skipIf(!clip || !yolox || !yunet || !ultraface)('face redaction in snapshots', () => {
  let checkers: LoadedModel[] = [];
  beforeAll(async () => {
    checkers = [
      await loadModel({ name: 'yunet-check', type: 'yunet', path: yunet! }),
      await loadModel({ name: 'ultraface-check', type: 'ultraface', path: ultraface! }),
    ];
  });
  afterAll(async () => {
    for (const m of checkers) await m.dispose();
  });

  async function facesIn(jpeg: Buffer): Promise<number[]> {
    const img = await decodeJpeg(jpeg);
    const counts: number[] = [];
    for (const m of checkers) counts.push((await m.detect(img, { scoreThreshold: 0.5 })).detections.length);
    return counts;
  }

  // One snapshot at a time: the checkers' queues are bounded (4 waiting), and a loaded machine makes more
  // snapshots than that (Promise.all over them failed with MODEL_BUSY).
  async function facesInEach(snaps: CollectedEvent[]): Promise<number[][]> {
    const out: number[][] = [];
    for (const s of snaps) out.push(await facesIn(s.snapshot!));
    return out;
  }

  it('finds faces in snapshots when redaction is off', async () => {
    const snaps = await snapshotsOf(false);
    expect(snaps.length).toBeGreaterThanOrEqual(2);
    const counts = await facesInEach(snaps);
    console.log(`[redaction off] faces per snapshot [yunet, ultraface]: ${JSON.stringify(counts)}`);
    expect(counts.some(([y, u]) => y! > 0 && u! > 0)).toBe(true);
    // No face model ran: nothing claims redaction.
    expect(snaps.map((s) => s.event.attributes['redacted'])).toEqual(snaps.map(() => undefined));
  }, 60_000);

  it('finds no face in any stored snapshot when redaction is on', async () => {
    const snaps = await snapshotsOf(true);
    expect(snaps.length).toBeGreaterThanOrEqual(2);
    const counts = await facesInEach(snaps);
    console.log(`[redaction on] faces per snapshot [yunet, ultraface]: ${JSON.stringify(counts)}`);
    expect(counts.flat().every((n) => n === 0)).toBe(true);
    // The face model ran on every snapshot (faces found or not): each event says so, for its MediaObject.
    expect(snaps.map((s) => s.event.attributes['redacted'])).toEqual(snaps.map(() => 'true'));
  }, 60_000);
});
