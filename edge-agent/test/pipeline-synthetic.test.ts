import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { asset } from '@vigil/testkit';
import { phaseName, runAgent, summarize } from './helpers/agent-harness.js';

const source = asset('videos/one-by-one-person-detection.mp4');
const model = asset('models/yolox_nano.onnx');

/**
 * A synthetic clip with known motion: a real person (cut from the clip at 32 s, 80x160 px) pasted twice on
 * a grey 640x360 background at 10 fps for 8 s. A walks right along the top lane, x = -80 + 100 t; B walks
 * left along the bottom lane, x = 640 - 100 t. Each one's ground point (x + 40) crosses the frame's middle
 * at t = 3.6 s, so with zones "left" (x < 0.5) and "right" (x > 0.5) the expected events are exact.
 */
function makeClip(dir: string): string {
  const out = join(dir, 'two-walkers.mp4');
  execFileSync('ffmpeg', [
    '-v',
    'error',
    '-y',
    '-ss',
    '32',
    '-i',
    source!,
    '-f',
    'lavfi',
    '-i',
    'color=c=0xc8c8c8:s=640x360:r=10:d=8',
    '-filter_complex',
    "[0:v]crop=190:380:370:0,scale=80:160,split[a][b];[1:v][a]overlay=x='-80+100*t':y=20[bg];[bg][b]overlay=x='640-100*t':y=190:shortest=1,format=yuv420p",
    '-r',
    '10',
    '-t',
    '8',
    '-c:v',
    'libx264',
    '-preset',
    'veryfast',
    '-g',
    '10',
    out,
  ]);
  return out;
}

const CROSSING_S = 3.6;

describe.skipIf(!source || !model)('synthetic clip with two walkers: tracks and zone crossings', () => {
  let dir: string;
  let clip: string;
  let run: Awaited<ReturnType<typeof runAgent>> | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-synth-'));
    clip = makeClip(dir);
  });
  afterAll(async () => {
    await run?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives one track per walker and one exit/enter pair each at the crossing', async () => {
    const logs: Array<Record<string, unknown>> = [];
    const logger = pino(
      { level: 'info' },
      { write: (l: string) => void logs.push(JSON.parse(l) as Record<string, unknown>) },
    );
    run = await runAgent(
      {
        models: [{ name: 'yolox', type: 'yolox', path: model! }],
        snapshots: { enabled: false },
        cameras: [
          {
            id: 'synth',
            url: clip,
            realtime: true,
            loop: false,
            width: 640,
            height: 360,
            fps: 10,
            detect: {
              model: 'yolox',
              labels: ['person'],
              zones: [
                {
                  id: 'left',
                  polygon: [
                    [0, 0],
                    [0.5, 0],
                    [0.5, 1],
                    [0, 1],
                  ],
                },
                {
                  id: 'right',
                  polygon: [
                    [0.5, 0],
                    [1, 0],
                    [1, 1],
                    [0.5, 1],
                  ],
                },
              ],
            },
          },
        ],
      },
      { logger },
    );
    // One pass of the 8 s clip (loop: false): the camera ends at the end of the file.
    await expect
      .poll(() => run!.agent.cameraStatus()[0]?.state, { timeout: 30_000, interval: 200 })
      .toBe('ended');
    await run.agent.stop();
    const events = run.events;
    console.log(`[synthetic] events:\n${summarize(events)}`);

    const tracks = [...new Set(events.map((e) => e.event.trackId))];
    expect(tracks).toHaveLength(2);
    // At info, the log shows what the camera saw: each track's start and end (ids, label, duration).
    const trackLines = logs.filter((l) => l['msg'] === 'track started' || l['msg'] === 'track ended');
    expect(trackLines.map((l) => `${String(l['msg'])} ${String(l['trackId'])}`).sort()).toEqual(
      tracks.flatMap((t) => [`track ended ${t}`, `track started ${t}`]).sort(),
    );
    for (const l of trackLines) {
      expect(l).toMatchObject({ level: 30, camera: 'synth', label: 'person' });
      expect(typeof l['score']).toBe('number');
    }
    for (const l of trackLines.filter((x) => x['msg'] === 'track ended'))
      expect(l['durationMs']).toBeGreaterThan(3_000);
    const byTrack = tracks.map((id) => events.filter((e) => e.event.trackId === id));
    // A is the track whose first zone is "left" (it walks in from the left edge).
    const sequence = (evs: typeof events) =>
      evs.map((e) => `${phaseName[e.event.phase]}${e.event.triggerZone ? `:${e.event.triggerZone}` : ''}`);
    const a = byTrack.find((evs) =>
      evs.some(
        (e) =>
          phaseName[e.event.phase] === 'zone_enter' && e.event.triggerZone === 'left' && e.t < CROSSING_S,
      ),
    )!;
    const b = byTrack.find((evs) => evs !== a)!;
    expect(sequence(a)).toEqual(['start', 'zone_enter:left', 'zone_exit:left', 'zone_enter:right', 'end']);
    expect(sequence(b)).toEqual(['start', 'zone_enter:right', 'zone_exit:right', 'zone_enter:left', 'end']);
    for (const evs of [a, b]) {
      const crossing = evs.filter(
        (e) =>
          phaseName[e.event.phase] === 'zone_exit' || (phaseName[e.event.phase] === 'zone_enter' && e.t > 2),
      );
      for (const e of crossing) expect(Math.abs(e.t - CROSSING_S), `crossing at ${e.t}`).toBeLessThan(0.8);
      expect(evs[0]!.t).toBeLessThan(2.5); // confirmed soon after it walks in
    }
  }, 60_000);
});
