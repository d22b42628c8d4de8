/**
 * A model run by worker threads (detect-worker.ts): each worker has its own onnxruntime session and does
 * preprocess, run and decode, so the main thread only copies the frame into the worker's shared input buffer
 * (one memcpy, no allocation; only the ffmpeg-scaled copy when the frame has one for this model) and receives
 * the detections. Same contract as loadModel()'s LoadedModel: FIFO,
 * a bounded line of waiting calls (MODEL_BUSY past it), dispose() lets running frames finish.
 *
 * Why workers and not onnxruntime's own threads: onnxruntime-node's session.run is synchronous (the binding
 * only defers it with setImmediate), so intra-op threads shorten a run but the main thread still waits through
 * all of it; measured in edge-agent/bench/pipeline.bench.ts (inferenceModes).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ModelBusyError, ModelError, type ModelErrorCode } from './errors.js';
import type { DetectResult, LoadedModel, LoadModelOptions, ModelSpec } from './model.js';
import { loadModel } from './model.js';
import { createPlugin } from './plugins/index.js';
import type { DecodeOptions, DetectorPlugin, RgbFrame, ScaledImage } from './types.js';
import type { FromWorker, ToWorker } from './worker-protocol.js';

/** Worker count when the spec says nothing: the cores, at most 2 (ffmpeg needs the rest). */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(2, availableParallelism()));
}

/** loadModel() on the calling thread when spec.workers is 0, else a pool of that many workers. */
export function loadDetector(spec: ModelSpec, options: LoadModelOptions = {}): Promise<LoadedModel> {
  const workers = spec.workers ?? defaultWorkers();
  return workers > 0 ? loadModelPool(spec, workers, options) : loadModel(spec, options);
}

const MODEL_CODES: readonly string[] = [
  'MODEL_NOT_FOUND',
  'MODEL_CHECKSUM',
  'MODEL_INVALID',
  'MODEL_SHAPE',
  'MODEL_DISPOSED',
  'MODEL_WORKER',
];

function toError(m: { code: string | undefined; message: string }): Error {
  if (m.code && MODEL_CODES.includes(m.code)) return new ModelError(m.code as ModelErrorCode, m.message);
  const err = new Error(m.message) as Error & { code?: string };
  if (m.code) err.code = m.code;
  return err;
}

/**
 * Starts a detect worker: the .ts source through tsx (how the agent runs from a checkout), or the built module
 * next to this one: `.js` from tsc, `.mjs` in a release bundle (tools/release builds it as a second entry beside
 * `main.mjs`, whose URL this module then has).
 */
function startWorker(): Worker {
  const ext = /\.(ts|mjs|js)$/.exec(import.meta.url)?.[1] ?? 'js';
  const ts = ext === 'ts';
  const target = new URL(`./detect-worker.${ext}`, import.meta.url);
  if (!ts) return new Worker(target);
  const api = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(target.href)}); })`;
  return new Worker(boot, { eval: true });
}

interface Job {
  frame: RgbFrame;
  opts: Partial<DecodeOptions> | undefined;
  resolve: (r: DetectResult) => void;
  reject: (err: Error) => void;
}

class Slot {
  job: Job | undefined;
  input: SharedArrayBuffer | undefined;
  ready = false;
  constructor(readonly worker: Worker) {}
}

/** Waits for the worker's answer to 'init'. */
function initWorker(worker: Worker, spec: ModelSpec): Promise<Extract<FromWorker, { type: 'ready' }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: FromWorker): void => {
      off();
      if (m.type === 'ready') resolve(m);
      else reject(toError(m.type === 'failed' ? m : { code: 'MODEL_WORKER', message: 'unexpected message' }));
    };
    const onError = (err: Error): void => {
      off();
      reject(
        new ModelError(
          'MODEL_WORKER',
          `model "${spec.name}": detect worker failed to start: ${err.message}`,
          { cause: err },
        ),
      );
    };
    const onExit = (code: number): void => {
      off();
      reject(
        new ModelError('MODEL_WORKER', `model "${spec.name}": detect worker exited (${code}) while loading`),
      );
    };
    const off = (): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
    worker.postMessage({ type: 'init', spec } satisfies ToWorker);
  });
}

export async function loadModelPool(
  spec: ModelSpec,
  workers: number,
  options: LoadModelOptions = {},
): Promise<LoadedModel> {
  const n = Math.max(1, Math.floor(workers));
  const started = Array.from({ length: n }, () => startWorker());
  const inits = await Promise.allSettled(started.map((w) => initWorker(w, spec)));
  const failed = inits.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.allSettled(started.map((w) => w.terminate()));
    throw failed.reason;
  }
  const first = (inits[0] as PromiseFulfilledResult<Extract<FromWorker, { type: 'ready' }>>).value;
  return new Pool(spec, createPlugin(spec.type, first.pluginOptions), first.sha256, started, options);
}

/** Restart pause after a worker died, so a crash loop does not spin the CPU. */
const RESPAWN_DELAY_MS = 1000;

class Pool implements LoadedModel {
  private readonly slots: Slot[] = [];
  private readonly waiting: Job[] = [];
  private readonly maxQueue: number;
  private nextId = 1;
  private disposed = false;
  private disposing: Promise<void> | undefined;
  private readonly inFlight = new Map<number, { slot: Slot; job: Job }>();

  constructor(
    readonly spec: ModelSpec,
    readonly plugin: DetectorPlugin,
    readonly sha256: string,
    workers: Worker[],
    options: LoadModelOptions,
  ) {
    this.maxQueue = Math.max(0, options.maxQueue ?? 4);
    for (const w of workers) this.attach(w, true);
  }

  private attach(worker: Worker, ready: boolean): Slot {
    const slot = new Slot(worker);
    slot.ready = ready;
    this.slots.push(slot);
    worker.on('message', (m: FromWorker) => this.onMessage(slot, m));
    // An uncaught error ends the worker; 'exit' follows and does the clean-up.
    worker.on('error', () => undefined);
    worker.on('exit', (code) => this.onExit(slot, code));
    return slot;
  }

  detect(frame: RgbFrame, opts?: Partial<DecodeOptions>): Promise<DetectResult> {
    if (this.disposed) return Promise.reject(this.disposedError());
    return new Promise<DetectResult>((resolve, reject) => {
      const job: Job = { frame, opts, resolve, reject };
      const idle = this.slots.find((s) => s.ready && !s.job);
      if (idle) return this.dispatch(idle, job);
      if (this.waiting.length >= this.maxQueue)
        return reject(new ModelBusyError(this.spec.name, this.maxQueue));
      this.waiting.push(job);
    });
  }

  /** The frame's pre-scaled copy when it is this model's content size (then the worker needs nothing else). */
  private scaledFor(frame: RgbFrame): ScaledImage | undefined {
    const s = frame.scaled;
    if (!s || !(frame.width > 0 && frame.height > 0)) return undefined;
    const g = this.plugin.geometry(frame.width, frame.height);
    return s.width === g.contentWidth && s.height === g.contentHeight ? s : undefined;
  }

  private dispatch(slot: Slot, job: Job): void {
    const { data, width, height } = job.frame;
    const scaled = this.scaledFor(job.frame);
    const rowBytes = scaled ? scaled.width * 3 : width * height * 3;
    const rows = scaled ? scaled.height : 1;
    const bytes = rowBytes * rows;
    const short = scaled
      ? scaled.stride < rowBytes || scaled.data.length < (rows - 1) * scaled.stride + rowBytes
      : !(width > 0 && height > 0) || data.length < bytes;
    if (short) {
      job.reject(
        scaled
          ? new RangeError(`scaled image ${scaled.width}x${scaled.height} has ${scaled.data.length} bytes`)
          : new RangeError(`frame data has ${data.length} bytes, ${width}x${height} rgb24 needs ${bytes}`),
      );
      return this.pump();
    }
    let fresh: SharedArrayBuffer | undefined;
    if (!slot.input || slot.input.byteLength < bytes) slot.input = fresh = new SharedArrayBuffer(bytes);
    const into = new Uint8Array(slot.input, 0, bytes);
    // Only the scaled copy travels when the model can use it: rows packed, a fraction of the frame's bytes.
    if (!scaled) into.set(data.subarray(0, bytes));
    else if (scaled.stride === rowBytes) into.set(scaled.data.subarray(0, bytes));
    else
      for (let y = 0; y < rows; y++)
        into.set(scaled.data.subarray(y * scaled.stride, y * scaled.stride + rowBytes), y * rowBytes);
    const id = this.nextId++;
    slot.job = job;
    this.inFlight.set(id, { slot, job });
    const msg: ToWorker = {
      type: 'detect',
      id,
      width,
      height,
      opts: job.opts,
      ...(scaled ? { scaled: { width: scaled.width, height: scaled.height } } : {}),
      ...(fresh ? { input: fresh } : {}),
    };
    slot.worker.postMessage(msg);
  }

  private onMessage(slot: Slot, m: FromWorker): void {
    if (m.type === 'ready') {
      slot.ready = true;
      return this.pump();
    }
    if (m.id === null) {
      // A respawned worker could not load the model: end it, its exit schedules the next try.
      void slot.worker.terminate();
      return;
    }
    const entry = this.inFlight.get(m.id);
    if (!entry) return;
    this.inFlight.delete(m.id);
    slot.job = undefined;
    if (m.type === 'result') entry.job.resolve(m.result);
    else entry.job.reject(toError(m));
    this.pump();
  }

  private onExit(slot: Slot, code: number): void {
    this.slots.splice(this.slots.indexOf(slot), 1);
    for (const [id, e] of this.inFlight)
      if (e.slot === slot) {
        this.inFlight.delete(id);
        e.job.reject(
          new ModelError(
            'MODEL_WORKER',
            `model "${this.spec.name}": detect worker exited (${code}) mid-frame`,
          ),
        );
      }
    slot.job = undefined;
    if (this.disposed) return this.pump();
    // Replace it after a pause; frames queue behind the remaining workers (or fail MODEL_BUSY) meanwhile.
    setTimeout(() => {
      if (this.disposed) return;
      const w = startWorker();
      this.attach(w, false);
      w.postMessage({ type: 'init', spec: this.spec } satisfies ToWorker);
    }, RESPAWN_DELAY_MS).unref();
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (this.waiting.length === 0) return;
      if (slot.ready && !slot.job) this.dispatch(slot, this.waiting.shift()!);
    }
  }

  private disposedError(): ModelError {
    return new ModelError('MODEL_DISPOSED', `model "${this.spec.name}" was unloaded`);
  }

  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      this.disposed = true;
      for (const j of this.waiting.splice(0)) j.reject(this.disposedError());
      // Running frames finish; then each worker releases its session and exits.
      await Promise.all(
        this.slots.map(
          (s) =>
            new Promise<void>((resolve) => {
              const done = (): void => resolve();
              s.worker.once('exit', done);
              const bye = (): void => s.worker.postMessage({ type: 'dispose' } satisfies ToWorker);
              if (!s.job) bye();
              else {
                const check = setInterval(() => {
                  if (!s.job) {
                    clearInterval(check);
                    bye();
                  }
                }, 5);
              }
              setTimeout(() => void s.worker.terminate(), 10_000).unref();
            }),
        ),
      );
    })();
    return this.disposing;
  }
}
