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

type Walker = 'A' | 'B';

/**
 * The clip time at which a walker stood where an event's box puts it, from the clip's known motion (ground
 * point x + 40 px: A's is 100 t - 40, B's is 680 - 100 t, in a 640 px frame). An event's own time is the
 * wall clock when its frame was read, which a loaded machine delays by seconds (ffmpeg and the pipeline
 * starved of CPU); where the walker was is what the frame shows whenever it was processed.
 */
function clipTimeOf(walker: Walker, box: { x: number; w: number } | undefined): number {
  const ground = ((box?.x ?? NaN) + (box?.w ?? NaN) / 2) * 640;
  return walker === 'A' ? (ground + 40) / 100 : (680 - ground) / 100;
}

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
              // The walkers stay in view until the clip ends; a CPU-starved ffmpeg can deliver no frame for
              // over the default 2 s, which would end a track early and count a third one.
              tracker: { maxAgeMs: 10_000 },
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
    // A is the track in the top lane (box above the middle), B the one in the bottom lane.
    const sequence = (evs: typeof events) =>
      evs.map((e) => `${phaseName[e.event.phase]}${e.event.triggerZone ? `:${e.event.triggerZone}` : ''}`);
    const a = byTrack.find((evs) => (evs[0]?.event.box?.y ?? 1) < 0.25)!;
    const b = byTrack.find((evs) => evs !== a)!;
    expect(sequence(a)).toEqual(['start', 'zone_enter:left', 'zone_exit:left', 'zone_enter:right', 'end']);
    expect(sequence(b)).toEqual(['start', 'zone_enter:right', 'zone_exit:right', 'zone_enter:left', 'end']);
    for (const [walker, evs] of [['A', a] as const, ['B', b] as const]) {
      // The exit and the enter of the crossing: index 2 and 3 of the sequence above.
      for (const e of evs.slice(2, 4)) {
        const t = clipTimeOf(walker, e.event.box);
        expect(
          Math.abs(t - CROSSING_S),
          `${walker} crossing where it stood at ${t.toFixed(2)} s`,
        ).toBeLessThan(0.8);
      }
      // Confirmed soon after it walks in (A's box enters at 0 s, B's at 0 s from the other side).
      expect(clipTimeOf(walker, evs[0]!.event.box), `${walker} start`).toBeLessThan(2.5);
    }
    console.log(
      `[synthetic] wall-clock lag at the crossing: A ${(a[2]!.t - clipTimeOf('A', a[2]!.event.box)).toFixed(2)} s, ` +
        `B ${(b[2]!.t - clipTimeOf('B', b[2]!.event.box)).toFixed(2)} s`,
    );
  }, 60_000);
});
