/**
 * Where to run onnxruntime (issue 18): the main thread with 1 or 2 intra-op threads (onnxruntime-node's run is
 * synchronous: intra-op threads shorten it but the event loop waits throughout), or worker threads
 * (detect/worker-pool.ts). Each mode runs LoadedModel.detect() on one real frame from 1 or 2 concurrent callers
 * for a fixed time; the event-loop delay (perf_hooks.monitorEventLoopDelay) says how long the main thread was
 * held, i.e. what ffmpeg pipes, tracking and the uplink would have waited.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { loadModel, loadModelPool, type LoadedModel, type ModelSpec } from '../src/detect/index.js';
import { round, summarize } from './bench-proc.js';

export interface ModeResult {
  mode: string;
  callers: number;
  runs: number;
  runsPerSec: number;
  preprocessMedianMs: number | null;
  inferenceMedianMs: number | null;
  detectWallMedianMs: number | null;
  eventLoopDelayP99Ms: number;
  eventLoopDelayMaxMs: number;
}

const MODES: { mode: string; callers: number; load: (spec: ModelSpec) => Promise<LoadedModel> }[] = [
  { mode: 'main thread, 1 intra-op thread', callers: 1, load: (s) => loadModel(s) },
  { mode: 'main thread, 2 intra-op threads', callers: 1, load: (s) => loadModel({ ...s, threads: 2 }) },
  { mode: 'main thread, 1 intra-op thread', callers: 2, load: (s) => loadModel(s) },
  { mode: '1 worker thread', callers: 1, load: (s) => loadModelPool(s, 1) },
  { mode: '2 worker threads', callers: 2, load: (s) => loadModelPool(s, 2) },
];

export async function inferenceModes(
  spec: ModelSpec,
  frame: { data: Uint8Array; width: number; height: number },
  durationS: number,
): Promise<ModeResult[]> {
  const out: ModeResult[] = [];
  for (const m of MODES) {
    const model = await m.load(spec);
    for (let i = 0; i < 5; i++) await model.detect(frame);
    const loop = monitorEventLoopDelay({ resolution: 5 });
    const pre: number[] = [];
    const inf: number[] = [];
    const wall: number[] = [];
    loop.enable();
    const t0 = performance.now();
    const end = t0 + durationS * 1000;
    await Promise.all(
      Array.from({ length: m.callers }, async () => {
        while (performance.now() < end) {
          const s = performance.now();
          const r = await model.detect(frame);
          wall.push(performance.now() - s);
          pre.push(r.preprocessMs);
          inf.push(r.inferenceMs);
        }
      }),
    );
    const elapsed = (performance.now() - t0) / 1000;
    loop.disable();
    await model.dispose();
    out.push({
      mode: m.mode,
      callers: m.callers,
      runs: wall.length,
      runsPerSec: round(wall.length / elapsed, 1),
      preprocessMedianMs: summarize(pre)?.p50 ?? null,
      inferenceMedianMs: summarize(inf)?.p50 ?? null,
      detectWallMedianMs: summarize(wall)?.p50 ?? null,
      eventLoopDelayP99Ms: round(loop.percentile(99) / 1e6),
      eventLoopDelayMaxMs: round(loop.max / 1e6),
    });
  }
  return out;
}
