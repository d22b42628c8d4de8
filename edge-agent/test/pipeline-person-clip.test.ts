import { afterAll, describe, expect, it } from 'vitest';
import { asset, useCameraSim } from '@vigil/testkit';
import { outboxDepth, phaseName, runAgent, summarize, type CollectedEvent } from './helpers/agent-harness.js';

const clip = asset('videos/one-by-one-person-detection.mp4');
const model = asset('models/yolox_nano.onnx');

// Ground truth, read off the clip (contact sheet every 2 s): six people walk up to the table one at a
// time. Visits in clip seconds; between them the room is empty.
const VISITS: Array<[number, number]> = [
  [5, 19],
  [22, 44],
  [49, 68],
  [73, 86],
  [92, 118],
  [123, 135],
];

describe.skipIf(!clip || !model)('one-by-one-person-detection.mp4 through the camera-sim, YOLOX-nano', () => {
  const sim = useCameraSim([{ name: 'lobby', source: { kind: 'file', path: clip!, loop: false } }]);
  let run: Awaited<ReturnType<typeof runAgent>> | undefined;
  afterAll(() => run?.dispose());

  it('turns each visit into exactly one person track and fires nothing while the room is empty', async () => {
    run = await runAgent({
      models: [{ name: 'yolox', type: 'yolox', path: model! }],
      cameras: [
        {
          id: 'lobby',
          url: sim().url('lobby'),
          width: 640,
          height: 360,
          fps: 5,
          detect: { model: 'yolox', labels: ['person'], defaultThreshold: 0.5 },
        },
      ],
    });
    // The clip plays at real time (139 s); the RTSP session ends at its end.
    await expect
      .poll(() => run!.agent.cameraStatus()[0]?.framesDecoded ?? 0, { timeout: 15_000 })
      .toBeGreaterThan(0);
    await expect
      .poll(() => run!.agent.cameraStatus()[0]?.restarts ?? 0, { timeout: 160_000, interval: 500 })
      .toBeGreaterThan(0);
    await run.agent.stop(); // ends open tracks
    const events: CollectedEvent[] = run.events.filter((e) => e.camera === 'lobby');
    console.log(`[person clip] events:\n${summarize(events)}`);

    const starts = events.filter((e) => phaseName[e.event.phase] === 'start');
    const ends = events.filter((e) => phaseName[e.event.phase] === 'end');
    expect(starts.every((e) => e.event.label === 'person')).toBe(true);
    // One track per visit, in order, each starting inside its visit. Times are stream positions (frames
    // decoded / fps), not the wall clock: a loaded machine reads the camera late, by seconds.
    expect(starts).toHaveLength(VISITS.length);
    starts.forEach((s, i) => {
      const [from, to] = VISITS[i]!;
      expect(s.streamT, `track ${i + 1} start`).toBeGreaterThanOrEqual(from - 1.5);
      expect(s.streamT, `track ${i + 1} start`).toBeLessThanOrEqual(to);
    });
    // Every track that started also ended, and no track events fall in the empty stretches.
    expect(new Set(ends.map((e) => e.event.trackId))).toEqual(new Set(starts.map((e) => e.event.trackId)));
    for (const e of starts)
      expect(VISITS.some(([a, b]) => e.streamT >= a - 1.5 && e.streamT <= b + 1)).toBe(true);
    console.log(
      `[person clip] wall clock minus stream position at each start: ${starts.map((e) => (e.t - e.streamT).toFixed(2)).join(', ')} s`,
    );
    // Start and end events carry a JPEG snapshot referenced from the event.
    for (const e of [...starts, ...ends]) {
      expect(e.snapshot?.subarray(0, 2).toString('hex')).toBe('ffd8');
      expect(e.event.snapshot?.$case).toBe('snapshotRef');
    }
    // Every event is durable: reopening the outbox file finds each one.
    expect(outboxDepth(run.dataDir)).toBe(events.length);
  }, 200_000);
});
