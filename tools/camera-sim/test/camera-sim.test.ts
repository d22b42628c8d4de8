import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { CameraSim, checkCameraSimPrerequisites } from '../src/index.js';
import type { CameraSimMount } from '../src/index.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const assetsDir = process.env.VIGIL_ASSETS_DIR ?? resolve(repoRoot, '../shared/assets');
const clip = join(assetsDir, 'videos/person-bicycle-car.mp4'); // 480x270, 12 fps, 41 frames, 3.4 s
const CLIP_FRAMES = 41;

const pre = checkCameraSimPrerequisites();
const haveFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0;
const canRun = pre.ok && haveFfmpeg;
const haveClip = existsSync(clip);
if (!pre.ok) console.warn(`[camera-sim] skipping: ${pre.message}`);
if (!haveFfmpeg) console.warn('[camera-sim] skipping: ffmpeg not on PATH (apt-get install ffmpeg)');
if (canRun && !haveClip)
  console.warn(`[camera-sim] skipping file tests: ${clip} absent (set VIGIL_ASSETS_DIR)`);

const FRAME_BYTES = 320 * 180 * 3;
const children = new Set<ChildProcess>();
const sims: CameraSim[] = [];

function alive(c: ChildProcess): boolean {
  return c.exitCode === null && c.signalCode === null;
}

async function newSim(mounts: CameraSimMount[], extra: { loopSeconds?: number } = {}): Promise<CameraSim> {
  const sim = new CameraSim({ mounts, ...extra, onSpawn: (c) => children.add(c) });
  sims.push(sim);
  await sim.start();
  return sim;
}

interface Reader {
  child: ChildProcess;
  frames: () => number;
  firstFrameMs: () => number | undefined;
  /** performance.now() at which each whole frame completed. */
  frameTimes: number[];
  exited: Promise<{ code: number | null; signal: string | null; at: number }>;
  waitFrames: (n: number, timeoutMs: number) => Promise<void>;
  stderr: () => string;
}

/** ffmpeg as a real RTSP client; counts whole 320x180 rgb24 frames on its stdout. */
function startReader(url: string, timeoutUs = 5_000_000): Reader {
  const t0 = performance.now();
  // -threads 1: a frame-threaded decoder flushes one delayed frame per further (timed-out) read at EOF,
  // which multiplies the time ffmpeg takes to give up on a hung camera.
  const args = ['-nostdin', '-v', 'error', '-rtsp_transport', 'tcp', '-timeout', String(timeoutUs)];
  args.push('-probesize', '32', '-analyzeduration', '0', '-threads', '1', '-i', url);
  args.push('-vf', 'scale=320:180', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');
  const child = spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let bytes = 0;
  let first: number | undefined;
  const frameTimes: number[] = [];
  let err = '';
  const waiters: Array<() => void> = [];
  child.stdout.on('data', (b: Buffer) => {
    bytes += b.length;
    while (frameTimes.length < Math.floor(bytes / FRAME_BYTES)) frameTimes.push(performance.now());
    if (bytes >= FRAME_BYTES) first ??= performance.now() - t0;
    waiters.forEach((w) => w());
  });
  child.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
  const exited = new Promise<{ code: number | null; signal: string | null; at: number }>((res) =>
    child.once('close', (code, signal) => res({ code, signal, at: performance.now() })),
  );
  const frames = (): number => Math.floor(bytes / FRAME_BYTES);
  const waitFrames = (n: number, timeoutMs: number): Promise<void> =>
    new Promise((res, rej) => {
      const timer = setTimeout(
        () => rej(new Error(`only ${frames()} of ${n} frames in ${timeoutMs} ms: ${err}`)),
        timeoutMs,
      );
      const check = (): void => {
        if (frames() >= n) {
          clearTimeout(timer);
          res();
        }
      };
      waiters.push(check);
      check();
      void exited.then(() => {
        if (frames() < n) rej(new Error(`ffmpeg exited after ${frames()} of ${n} frames: ${err}`));
      });
    });
  return { child, frames, firstFrameMs: () => first, frameTimes, exited, waitFrames, stderr: () => err };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`${what}: not within ${ms} ms`)), ms)),
  ]);
}

afterEach(async () => {
  for (const sim of sims.splice(0)) await sim.stop().catch(() => undefined);
  // Anything still alive (a failed test, a sim that could not stop) is killed hard: nothing may leak.
  for (const c of children) {
    if (alive(c)) {
      c.kill('SIGCONT');
      c.kill('SIGKILL');
    }
  }
  children.clear();
});

describe.skipIf(!canRun)('camera-sim (real RTSP server + ffmpeg client)', () => {
  it('serves a live test pattern', async () => {
    const sim = await newSim([{ name: 'cam', source: { kind: 'pattern' } }]);
    expect(sim.url('cam')).toBe(`rtsp://127.0.0.1:${sim.port}/cam`);
    expect(() => sim.url('nope')).toThrow(/unknown mount/);
    const r = startReader(sim.url('cam'));
    await r.waitFrames(10, 10_000);
    console.log(`[camera-sim] pattern: time to first frame ${r.firstFrameMs()?.toFixed(0)} ms`);
  });

  it.skipIf(!haveClip)('plays a file from its first frame at real time, then ends', async () => {
    const sim = await newSim([{ name: 'clip', source: { kind: 'file', path: clip } }]);
    const r = startReader(sim.url('clip'));
    const t0 = performance.now();
    const end = await withTimeout(r.exited, 15_000, 'ffmpeg exit at end of clip');
    const secs = (end.at - t0) / 1000;
    console.log(
      `[camera-sim] file: ${r.frames()} frames, ffmpeg exit ${end.code} after ${secs.toFixed(2)} s, first frame ${r.firstFrameMs()?.toFixed(0)} ms`,
    );
    expect(r.frames()).toBeGreaterThanOrEqual(Math.floor(CLIP_FRAMES * 0.8));
    expect(r.frames()).toBeLessThanOrEqual(Math.ceil(CLIP_FRAMES * 1.2));
    expect(secs).toBeGreaterThan(2.5); // served at real time, not as fast as the disk allows
  });

  it.skipIf(!haveClip)('loops a file', async () => {
    const sim = await newSim([{ name: 'clip', source: { kind: 'file', path: clip, loop: true } }], {
      loopSeconds: 30,
    });
    const r = startReader(sim.url('clip'));
    await r.waitFrames(CLIP_FRAMES + 6, 15_000); // past the end of the first pass
  });

  it('stop() ends a reading client', async () => {
    const sim = await newSim([{ name: 'cam', source: { kind: 'pattern' } }]);
    const r = startReader(sim.url('cam'));
    await r.waitFrames(5, 10_000);
    const t0 = performance.now();
    await sim.stop();
    expect(sim.running).toBe(false);
    const end = await withTimeout(r.exited, 10_000, 'ffmpeg exit after stop()');
    console.log(
      `[camera-sim] stop: ffmpeg exit code ${end.code} signal ${end.signal} after ${(end.at - t0).toFixed(0)} ms`,
    );
    await sim.stop(); // idempotent
  });

  it('freeze() hangs the camera: ffmpeg times out; unfreeze() recovers', async () => {
    const sim = await newSim([{ name: 'cam', source: { kind: 'pattern' } }]);
    const r = startReader(sim.url('cam'), 2_000_000);
    await r.waitFrames(10, 10_000);
    const t0 = performance.now();
    sim.freeze();
    const end = await withTimeout(r.exited, 20_000, 'ffmpeg exit on a frozen camera');
    const after = r.frameTimes.filter((t) => t > t0).map((t) => Math.round(t - t0));
    console.log(
      `[camera-sim] freeze: ffmpeg exit code ${end.code} after ${(end.at - t0).toFixed(0)} ms; ` +
        `frames after freeze at +ms: [${after.join(', ')}]`,
    );
    // No data flows: the only frames after the freeze are ones ffmpeg already held, released one
    // per timed-out read while it flushes (seen: one at +2.1 s, one at +4.2 s, exit at +4.2 s), or ones
    // already on their way that a CPU-starved ffmpeg reads late (half a second of them at 15 fps). A live
    // camera would have sent ~60 by the exit. Not checked by when they came: on a loaded machine a frame
    // sent before the freeze can arrive seconds later.
    expect(after.length).toBeLessThanOrEqual(3 + 8);
    expect(end.at - t0).toBeGreaterThan(1500); // -timeout 2 s, not an instant error
    sim.unfreeze();
    await startReader(sim.url('cam')).waitFrames(5, 10_000);
  }, 45_000);

  it('stop() works on a frozen camera, cleanly (SIGCONT + SIGTERM, no SIGKILL)', async () => {
    const sim = await newSim([{ name: 'cam', source: { kind: 'pattern' } }]);
    const server = [...children].at(-1);
    sim.freeze();
    await sim.stop();
    // Exited through its SIGTERM handler (code 0), not the SIGKILL fallback that a stop hanging on the frozen
    // process would end in (so how long the stop took, which load decides, need not be checked).
    expect(server?.signalCode).not.toBe('SIGKILL');
    expect(server?.exitCode).toBe(0);
  });

  it('restart() serves the same URL again', async () => {
    const sim = await newSim([
      { name: 'cam', source: { kind: 'pattern', width: 320, height: 240, fps: 10 } },
    ]);
    const url = sim.url('cam');
    const r1 = startReader(url);
    await r1.waitFrames(3, 10_000);
    await sim.restart();
    expect(sim.url('cam')).toBe(url);
    const end = await withTimeout(r1.exited, 10_000, 'old client exit');
    console.log(`[camera-sim] restart: old ffmpeg exit code ${end.code}`);
    const r2 = startReader(url);
    await r2.waitFrames(5, 10_000);
  });

  it('start() rejects with the server output when the server fails', async () => {
    const sim = new CameraSim({
      mounts: [{ name: 'x', source: { kind: 'file', path: '/nonexistent/clip.mp4' } }],
      onSpawn: (c) => children.add(c),
    });
    sims.push(sim);
    await expect(sim.start()).rejects.toThrow(/exited before READY[\s\S]*not an absolute path to a file/);
  });
});

describe('checkCameraSimPrerequisites', () => {
  it.skipIf(!canRun)('is ok on a machine that runs the camera', () => {
    expect(checkCameraSimPrerequisites()).toEqual({ ok: true });
  });

  it('explains a missing python and a python without the bindings', () => {
    const missing = checkCameraSimPrerequisites('/nonexistent/python3');
    expect(missing.ok).toBe(false);
    if (!missing.ok) expect(missing.message).toMatch(/\/nonexistent\/python3/);
    const noGi = checkCameraSimPrerequisites('/bin/false');
    expect(noGi.ok).toBe(false);
    if (!noGi.ok) expect(noGi.message).toMatch(/gir1\.2-gst-rtsp-server-1\.0/);
  });
});
