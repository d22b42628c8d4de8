/**
 * Loading a model and running it: file -> checksum -> onnxruntime session -> shape check against the plugin;
 * then detect() = preprocess into the model's one input buffer, run, decode, serialised per session.
 *
 * Every failure to load becomes a ModelError with a code and the path, never an unhandled rejection or a
 * native crash: onnxruntime parses the bytes we hand it (read once, hashed, then parsed), and a corrupt or
 * truncated file fails protobuf parsing with an ordinary Error.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import { ModelBusyError, ModelError } from './errors.js';
import { DETECTOR_TYPES, createPlugin, type PluginOptions } from './plugins/index.js';
import type { DecodeOptions, Detection, DetectorPlugin, DetectorType, RgbFrame, TensorMap } from './types.js';

export interface ModelSpec {
  /** Unique per agent; cameras refer to it. */
  name: string;
  type: DetectorType;
  path: string;
  /** When set, the file must hash to it (hex, any case) or loading fails with MODEL_CHECKSUM. */
  sha256?: string;
  /** The model's class names in output order (custom-trained YOLOX / YOLOv8); defaults per family. */
  classNames?: string[];
  /** Only for models whose input size is dynamic; a fixed size in the model wins (and must agree). */
  inputWidth?: number;
  inputHeight?: number;
  /** onnxruntime intra-op threads (default 1: cameras share the cores, one model must not take them all). */
  threads?: number;
  /** yolov8 only: where the letterbox puts the image (default 'center', as ultralytics does). */
  letterbox?: 'tl' | 'center';
  /**
   * Worker threads that run this model (each its own session, preprocess and decode included); 0 runs it on the
   * calling (main) thread, which onnxruntime-node blocks for the whole session.run. Used by loadDetector().
   */
  workers?: number;
}

export interface DetectResult {
  detections: Detection[];
  preprocessMs: number;
  inferenceMs: number;
  decodeMs: number;
}

export interface LoadedModel {
  readonly spec: ModelSpec;
  readonly plugin: DetectorPlugin;
  /** sha256 of the bytes actually loaded (reported upstream, compared on config changes). */
  readonly sha256: string;
  /** Runs one frame; opts default to the family's thresholds. Rejects with ModelBusyError when the queue is full. */
  detect(frame: RgbFrame, opts?: Partial<DecodeOptions>): Promise<DetectResult>;
  /** Rejects queued calls, lets the running one finish, releases the session. Idempotent. */
  dispose(): Promise<void>;
}

export interface LoadModelOptions {
  /** detect() calls allowed to wait behind the running one (default 4); more reject with MODEL_BUSY. */
  maxQueue?: number;
  /** Clock for the timings (injected so that tests can pin them). */
  now?: () => number;
}

type Meta = ort.InferenceSession.ValueMetadata;

const fmtDims = (dims: readonly (number | string | null)[]): string =>
  `[${dims.map((d) => (d === null ? '?' : d)).join(',')}]`;

function describeTensors(metas: readonly Meta[]): string {
  return metas
    .map((m) => (m.isTensor ? `${m.name} ${m.type}${fmtDims(m.shape)}` : `${m.name} (not a tensor)`))
    .join(', ');
}

async function readModelFile(spec: ModelSpec): Promise<Buffer> {
  try {
    return await readFile(spec.path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new ModelError('MODEL_NOT_FOUND', `model "${spec.name}": file not found: ${spec.path}`, {
        cause: err,
      });
    throw new ModelError('MODEL_INVALID', `model "${spec.name}": cannot read ${spec.path}: ${String(err)}`, {
      cause: err,
    });
  }
}

/** A numeric dim from metadata, or undefined when symbolic/absent. */
const fixed = (d: number | string | undefined): number | undefined =>
  typeof d === 'number' && d > 0 ? d : undefined;

/** The plugin options the model's metadata calls for (input size, names and class count of user models). */
function pluginFor(
  spec: ModelSpec,
  session: ort.InferenceSession,
): { plugin: DetectorPlugin; options: PluginOptions } {
  const where = `model "${spec.name}" (${spec.path}, type ${spec.type})`;
  const o: PluginOptions = { classNames: spec.classNames, letterbox: spec.letterbox };
  let input: Meta | undefined;
  if (spec.type === 'yolov8') {
    // User exports: take the first input/output whatever they are called.
    input = session.inputMetadata[0];
    const output = session.outputMetadata[0];
    if (!input || !output) throw new ModelError('MODEL_SHAPE', `${where}: needs one input and one output`);
    o.inputName = input.name;
    o.outputName = output.name;
    const channels = output.isTensor ? fixed(output.shape[1]) : undefined;
    const anchors = output.isTensor ? fixed(output.shape[2]) : undefined;
    // A [1,N,4+C] export (transposed) fits [1,4+C,N] by rank alone and would decode garbage; anchors always
    // outnumber channels in a real head, so the smaller middle dim tells them apart.
    if (channels !== undefined && anchors !== undefined && anchors < channels)
      throw new ModelError(
        'MODEL_SHAPE',
        `${where}: output ${describeTensors([output])} looks like [1,N,4+C]; the yolov8 type reads [1,4+C,N]`,
      );
    if (!spec.classNames) {
      if (channels === undefined || channels <= 4)
        throw new ModelError(
          'MODEL_SHAPE',
          `${where}: cannot tell the class count from output ${describeTensors([output])}; set classNames`,
        );
      o.numClasses = channels - 4;
    }
  } else {
    const expectedName = createPlugin(spec.type).inputName;
    input = session.inputMetadata.find((m) => m.name === expectedName);
    if (!input)
      throw new ModelError(
        'MODEL_SHAPE',
        `${where}: expected input "${expectedName}", the model has ${describeTensors(session.inputMetadata)}`,
      );
  }
  if (input.isTensor) {
    const h = fixed(input.shape[2]);
    const w = fixed(input.shape[3]);
    if ((spec.inputWidth && w && spec.inputWidth !== w) || (spec.inputHeight && h && spec.inputHeight !== h))
      throw new ModelError(
        'MODEL_SHAPE',
        `${where}: configured input ${spec.inputWidth}x${spec.inputHeight} but the model's is fixed at ${w}x${h}`,
      );
    o.inputWidth = w ?? spec.inputWidth;
    o.inputHeight = h ?? spec.inputHeight;
  }
  try {
    return { plugin: createPlugin(spec.type, o), options: o };
  } catch (err) {
    throw new ModelError('MODEL_SHAPE', `${where}: ${String(err)}`, { cause: err });
  }
}

/** The model's tensors must be what the plugin decodes: names, float32, rank and every fixed dim. */
function checkShapes(spec: ModelSpec, plugin: DetectorPlugin, session: ort.InferenceSession): void {
  const where = `model "${spec.name}" (${spec.path}, type ${spec.type})`;
  const problems: string[] = [];
  const check = (metas: readonly Meta[], name: string, dims: readonly (number | null)[]): void => {
    const m = metas.find((x) => x.name === name);
    const want = `"${name}" float32${fmtDims(dims)}`;
    if (!m) problems.push(`missing ${want}`);
    else if (!m.isTensor || m.type !== 'float32')
      problems.push(`expected ${want}, got ${describeTensors([m])}`);
    else if (
      // An empty shape means "not declared": the decoder checks the real tensor at run time instead.
      (m.shape.length > 0 && m.shape.length !== dims.length) ||
      dims.some((d, i) => d !== null && typeof m.shape[i] === 'number' && m.shape[i] !== d)
    )
      problems.push(`expected ${want}, got ${describeTensors([m])}`);
  };
  check(session.inputMetadata, plugin.inputName, [null, 3, plugin.inputHeight, plugin.inputWidth]);
  for (const o of plugin.outputs) check(session.outputMetadata, o.name, o.dims);
  if (problems.length > 0)
    throw new ModelError(
      'MODEL_SHAPE',
      `${where}: ${problems.join('; ')} (model inputs: ${describeTensors(session.inputMetadata)}; outputs: ${describeTensors(session.outputMetadata)})`,
    );
}

/** A model run on this thread; `pluginOptions` rebuild the same plugin elsewhere (a worker's owner). */
export interface LocalModel extends LoadedModel {
  readonly pluginOptions: PluginOptions;
}

export async function loadModel(spec: ModelSpec, options: LoadModelOptions = {}): Promise<LocalModel> {
  const maxQueue = Math.max(0, options.maxQueue ?? 4);
  const now = options.now ?? (() => performance.now());
  // Specs usually come from JSON config: an unknown family is refused before any I/O.
  if (!DETECTOR_TYPES.includes(spec.type))
    throw new ModelError(
      'MODEL_INVALID',
      `model "${spec.name}": unknown type "${String(spec.type)}" (one of ${DETECTOR_TYPES.join(', ')})`,
    );
  const bytes = await readModelFile(spec);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (spec.sha256 !== undefined && spec.sha256.trim().toLowerCase() !== sha256)
    throw new ModelError(
      'MODEL_CHECKSUM',
      `model "${spec.name}": sha256 mismatch for ${spec.path}: expected ${spec.sha256.trim().toLowerCase()}, actual ${sha256}`,
    );
  if (bytes.length === 0)
    throw new ModelError('MODEL_INVALID', `model "${spec.name}": ${spec.path} is empty`);

  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, {
      executionProviders: ['cpu'],
      intraOpNumThreads: spec.threads ?? 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      // Old-IR models (RFB-320) log hundreds of "Initializer appears in graph inputs" warnings otherwise.
      logSeverityLevel: 3,
    });
  } catch (err) {
    throw new ModelError(
      'MODEL_INVALID',
      `model "${spec.name}": onnxruntime cannot load ${spec.path}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }

  let plugin: DetectorPlugin;
  let pluginOptions: PluginOptions;
  try {
    ({ plugin, options: pluginOptions } = pluginFor(spec, session));
    checkShapes(spec, plugin, session);
  } catch (err) {
    await session.release().catch(() => undefined);
    throw err;
  }
  return new Runner(spec, plugin, pluginOptions, sha256, session, maxQueue, now);
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

/** One session, one input buffer, one call at a time; a bounded line of waiters behind it. */
class Runner implements LocalModel {
  private readonly input: Float32Array;
  private readonly tensor: ort.Tensor;
  private readonly waiting: Waiter[] = [];
  private busy = false;
  private disposed = false;
  private disposing: Promise<void> | undefined;
  private idle: Promise<void> = Promise.resolve();
  private markIdle: () => void = () => undefined;

  constructor(
    readonly spec: ModelSpec,
    readonly plugin: DetectorPlugin,
    readonly pluginOptions: PluginOptions,
    readonly sha256: string,
    private readonly session: ort.InferenceSession,
    private readonly maxQueue: number,
    private readonly now: () => number,
  ) {
    const { inputWidth: w, inputHeight: h } = plugin;
    this.input = new Float32Array(3 * w * h);
    // The tensor wraps the buffer (no copy), so it is made once and refilled in place for every frame.
    this.tensor = new ort.Tensor('float32', this.input, [1, 3, h, w]);
  }

  async detect(frame: RgbFrame, opts?: Partial<DecodeOptions>): Promise<DetectResult> {
    if (this.disposed) throw this.disposedError();
    if (this.busy) {
      if (this.waiting.length >= this.maxQueue) throw new ModelBusyError(this.spec.name, this.maxQueue);
      // The slot is handed over directly by the finishing call (busy stays true), so order is FIFO.
      await new Promise<void>((resolve, reject) => this.waiting.push({ resolve, reject }));
    } else {
      this.busy = true;
      this.idle = new Promise((r) => (this.markIdle = r));
    }
    try {
      return await this.runOnce(frame, { ...this.plugin.defaults, ...opts });
    } finally {
      const next = this.waiting.shift();
      if (next) next.resolve();
      else {
        this.busy = false;
        this.markIdle();
      }
    }
  }

  private async runOnce(frame: RgbFrame, opts: DecodeOptions): Promise<DetectResult> {
    const t0 = this.now();
    const { meta } = this.plugin.preprocess(frame, this.input);
    const t1 = this.now();
    const results = await this.session.run({ [this.plugin.inputName]: this.tensor });
    const t2 = this.now();
    const outputs: TensorMap = {};
    for (const [name, value] of Object.entries(results)) {
      if (value instanceof ort.Tensor && value.type === 'float32')
        outputs[name] = { data: value.data as Float32Array, dims: value.dims };
    }
    const detections = this.plugin.decode(outputs, meta, opts);
    const t3 = this.now();
    return { detections, preprocessMs: t1 - t0, inferenceMs: t2 - t1, decodeMs: t3 - t2 };
  }

  private disposedError(): ModelError {
    return new ModelError('MODEL_DISPOSED', `model "${this.spec.name}" was unloaded`);
  }

  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      this.disposed = true;
      for (const w of this.waiting.splice(0)) w.reject(this.disposedError());
      await this.idle;
      await this.session.release();
    })();
    return this.disposing;
  }
}
