import { afterEach, describe, expect, it } from 'vitest';
import { registry, useCameraSim } from '@vigil/testkit';
import { CameraSupervisor, type CameraState } from '../src/ingest/supervisor.js';
import type { CameraSource } from '../src/ingest/ffmpeg-args.js';

// The camera supervisor against a real RTSP server: a dropped camera (ffmpeg exits 0) and a frozen one
// (TCP open, no data) must both be noticed and recovered within the backoff bound, with the gap reported.
describe('camera supervisor with a real RTSP camera', () => {
  const sim = useCameraSim([{ name: 'cam', source: { kind: 'pattern', width: 640, height: 360, fps: 10 } }]);
  const backoff = { initialMs: 200, maxMs: 2_000, jitter: 0.5 };
  let sup: CameraSupervisor | undefined;
  afterEach(async () => {
    await sup?.stop();
    if (!sim().running) await sim().start();
  });

  function start(overrides: Partial<CameraSource> = {}): { states: CameraState[]; frames: () => number } {
    const states: CameraState[] = [];
    let frames = 0;
    sup = new CameraSupervisor({
      source: {
        id: 'cam',
        url: sim().url('cam'),
        transport: 'tcp',
        width: 160,
        height: 90,
        fps: 5,
        ioTimeoutMs: 2_000,
        realtime: true,
        loop: true,
        ...overrides,
      },
      onFrame: (f) => {
        expect(f.data.length).toBe(160 * 90 * 3);
        frames++;
      },
      onState: (s) => states.push(s),
      stallTimeoutMs: 3_000,
      backoff,
      onSpawn: (c) => registry.track(c, 'ffmpeg'),
    });
    sup.start();
    return { states, frames: () => frames };
  }

  it('streams, survives the camera being killed and restarted, and reports the gap', async () => {
    const run = start();
    await expect.poll(() => run.frames(), { timeout: 10_000 }).toBeGreaterThan(3);
    expect(sup!.status.state).toBe('streaming');

    const downAt = Date.now();
    await sim().stop();
    await expect.poll(() => sup!.status.state, { timeout: 5_000 }).not.toBe('streaming');
    await new Promise((r) => setTimeout(r, 2_500)); // camera stays down for a while: several respawns fail
    await sim().start();
    const upAt = Date.now();
    const before = run.frames();
    await expect.poll(() => run.frames(), { timeout: 15_000, interval: 50 }).toBeGreaterThan(before);
    const recoveredAfterMs = Date.now() - upAt;
    // Recovery is bounded by the backoff cap plus the time an RTSP connect takes (generous: CI machines are
    // loaded), not by luck.
    expect(recoveredAfterMs).toBeLessThan(backoff.maxMs + 4_000);
    await expect.poll(() => run.frames(), { timeout: 10_000 }).toBeGreaterThan(before + 3);
    const st = sup!.status;
    expect(st.state).toBe('streaming');
    expect(st.gaps).toBe(1);
    expect(st.lastGapMs).toBeGreaterThanOrEqual(2_000);
    expect(st.lastGapMs).toBeLessThan(Date.now() - downAt + 1_000);
    expect(st.restarts).toBeGreaterThanOrEqual(2);
    expect(run.states).toContain('backing_off');
    console.log(
      `[supervisor] camera down ${upAt - downAt} ms, frames again ${recoveredAfterMs} ms after it came back, gap ${st.lastGapMs} ms, restarts ${st.restarts}`,
    );
  }, 40_000);

  it('notices a frozen camera and recovers after it thaws', async () => {
    const run = start();
    await expect.poll(() => run.frames(), { timeout: 10_000 }).toBeGreaterThan(3);
    sim().freeze();
    const frozenAt = Date.now();
    await expect.poll(() => sup!.status.state, { timeout: 10_000, interval: 50 }).not.toBe('streaming');
    const noticedMs = Date.now() - frozenAt;
    expect(noticedMs).toBeLessThan(8_000);
    sim().unfreeze();
    const before = run.frames();
    await expect.poll(() => run.frames(), { timeout: 15_000 }).toBeGreaterThan(before + 3);
    expect(sup!.status.gaps).toBe(1);
    console.log(
      `[supervisor] freeze noticed after ${noticedMs} ms (${sup!.status.lastError}); gap ${sup!.status.lastGapMs} ms`,
    );
  }, 40_000);

  it('reports a camera that never answers without stopping', async () => {
    const run = start({ url: 'rtsp://127.0.0.1:1/nothing' });
    await expect.poll(() => sup!.status.restarts, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    expect(run.frames()).toBe(0);
    expect(sup!.status.lastError).toMatch(/Connection refused|stream ended/i);
  }, 20_000);
});
