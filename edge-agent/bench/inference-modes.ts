/**
 * Where to run onnxruntime (issue 18): the main thread with 1 or 2 intra-op threads (onnxruntime-node's run is
 * synchronous: intra-op threads shorten it but the event loop waits throughout), or worker threads
 * (detect/worker-pool.ts). Each mode runs LoadedModel.detect() on one real frame from 1 or 2 concurrent callers;
 * the event-loop delay (perf_hooks.monitorEventLoopDelay) says how long the main thread was held, i.e. what
 * ffmpeg pipes, tracking and the uplink would have waited. Raw session.run on the same input is one of the
 * modes, and the modes take turns in short slices, so that a machine whose load changes by the minute loads
 * every mode alike and the ratios hold.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import { loadModel, loadModelPool, type ModelSpec, type RgbFrame } from '../src/detect/index.js';
import { round, summarize } from './bench-proc.js';

export interface ModeResult {
  mode: string;
  callers: number;
  runs: number;
  runsPerSec: number;
  /** runs/s over raw session.run's runs/s (1 intra-op thread, same input, measured in the same slices). */
  vsRawOnnxRuns: number | null;
  preprocessMedianMs: number | null;
  inferenceMedianMs: number | null;
  callMedianMs: number | null;
  eventLoopDelayP99Ms: number;
  eventLoopDelayMaxMs: number;
}

type Call = () => Promise<{ preprocessMs?: number; inferenceMs?: number }>;

interface Mode {
  mode: string;
  callers: number;
  open: (spec: ModelSpec, frame: RgbFrame) => Promise<{ call: Call; close: () => Promise<void> }>;
}

const detectMode =
  (load: (s: ModelSpec) => ReturnType<typeof loadModel> | ReturnType<typeof loadModelPool>) =>
  async (spec: ModelSpec, frame: RgbFrame) => {
    const m = await load(spec);
    return { call: () => m.detect(frame), close: () => m.dispose() };
  };

const MODES: Mode[] = [
  {
    mode: 'raw session.run, 1 intra-op thread',
    callers: 1,
    open: async (spec, frame) => {
      // The model's own input for this frame, then session.run alone (no preprocess, no decode).
      const local = await loadModel(spec);
      const { tensor } = local.plugin.preprocess(frame);
      await local.dispose();
      const session = await ort.InferenceSession.create(spec.path, {
        executionProviders: ['cpu'],
        intraOpNumThreads: 1,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
        logSeverityLevel: 3,
      });
      const feeds = {
        [local.plugin.inputName]: new ort.Tensor('float32', tensor, [
          1,
          3,
          local.plugin.inputHeight,
          local.plugin.inputWidth,
        ]),
      };
      return {
        call: async () => {
          const s = performance.now();
          await session.run(feeds);
          return { inferenceMs: performance.now() - s };
        },
        close: () => session.release(),
      };
    },
  },
  { mode: 'main thread, 1 intra-op thread', callers: 1, open: detectMode((s) => loadModel(s)) },
  {
    mode: 'main thread, 2 intra-op threads',
    callers: 1,
    open: detectMode((s) => loadModel({ ...s, threads: 2 })),
  },
  { mode: 'main thread, 1 intra-op thread', callers: 2, open: detectMode((s) => loadModel(s)) },
  { mode: '1 worker thread', callers: 1, open: detectMode((s) => loadModelPool(s, 1)) },
  { mode: '2 worker threads', callers: 2, open: detectMode((s) => loadModelPool(s, 2)) },
];

interface Acc {
  runs: number;
  seconds: number;
  pre: number[];
  inf: number[];
  call: number[];
  loopP99: number[];
  loopMax: number;
}

export async function inferenceModes(
  spec: ModelSpec,
  frame: RgbFrame,
  durationS: number,
  slices = 5,
): Promise<ModeResult[]> {
  const opened = [];
  for (const m of MODES) opened.push({ m, ...(await m.open(spec, frame)) });
  const acc: Acc[] = MODES.map(() => ({
    runs: 0,
    seconds: 0,
    pre: [],
    inf: [],
    call: [],
    loopP99: [],
    loopMax: 0,
  }));
  try {
    for (const o of opened) for (let i = 0; i < 5; i++) await o.call();
    const sliceMs = (durationS * 1000) / slices;
    for (let s = 0; s < slices; s++) {
      for (const [i, o] of opened.entries()) {
        const a = acc[i]!;
        const loop = monitorEventLoopDelay({ resolution: 5 });
        loop.enable();
        const t0 = performance.now();
        const end = t0 + sliceMs;
        await Promise.all(
          Array.from({ length: o.m.callers }, async () => {
            while (performance.now() < end) {
              const c = performance.now();
              const r = await o.call();
              a.call.push(performance.now() - c);
              if (r.preprocessMs !== undefined) a.pre.push(r.preprocessMs);
              if (r.inferenceMs !== undefined) a.inf.push(r.inferenceMs);
              a.runs++;
            }
          }),
        );
        a.seconds += (performance.now() - t0) / 1000;
        loop.disable();
        a.loopP99.push(loop.percentile(99) / 1e6);
        a.loopMax = Math.max(a.loopMax, loop.max / 1e6);
      }
    }
  } finally {
    for (const o of opened) await o.close();
  }
  const rawRate = acc[0]!.runs / acc[0]!.seconds;
  return MODES.map((m, i) => {
    const a = acc[i]!;
    const rate = a.runs / a.seconds;
    return {
      mode: m.mode,
      callers: m.callers,
      runs: a.runs,
      runsPerSec: round(rate, 1),
      vsRawOnnxRuns: rawRate > 0 ? round(rate / rawRate, 3) : null,
      preprocessMedianMs: summarize(a.pre)?.p50 ?? null,
      inferenceMedianMs: summarize(a.inf)?.p50 ?? null,
      callMedianMs: summarize(a.call)?.p50 ?? null,
      eventLoopDelayP99Ms: round(summarize(a.loopP99)?.p50 ?? 0),
      eventLoopDelayMaxMs: round(a.loopMax),
    };
  });
}
