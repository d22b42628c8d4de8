/**
 * The agent's models: one session per model name, shared by every camera that names it (a session holds the
 * weights and the thread pool; one per camera would multiply memory and fight over the cores).
 *
 * `load(specs)` reconciles to the given list: unchanged models are kept (sessions survive a config change
 * that does not touch them), changed ones are reloaded, removed ones disposed. Each model loads on its own:
 * a missing or corrupt file is recorded in `failures()` and the others still serve (cameras bound to a failed
 * model report it in health instead of taking the agent down).
 */
import { ModelError } from './errors.js';
import type { LoadedModel, LoadModelOptions, ModelSpec } from './model.js';
import { loadDetector } from './worker-pool.js';

export interface ModelFailure {
  name: string;
  error: ModelError;
}

export interface ModelRegistryOptions extends LoadModelOptions {
  /** Injected for tests; defaults to loadDetector (worker threads, or the main thread with workers: 0). */
  loader?: (spec: ModelSpec, options: LoadModelOptions) => Promise<LoadedModel>;
}

/** The fields that make a loaded session reusable as is. */
function specKey(s: ModelSpec): string {
  return JSON.stringify([
    s.type,
    s.path,
    s.sha256?.trim().toLowerCase(),
    s.classNames,
    s.inputWidth,
    s.inputHeight,
    s.threads,
    s.letterbox,
    s.workers,
  ]);
}

function asModelError(spec: ModelSpec, err: unknown): ModelError {
  if (err instanceof ModelError) return err;
  return new ModelError('MODEL_INVALID', `model "${spec.name}" (${spec.path}): ${String(err)}`, {
    cause: err,
  });
}

export class ModelRegistry {
  private readonly models = new Map<string, { key: string; model: LoadedModel }>();
  private failed: ModelFailure[] = [];
  /** load() and dispose() run one at a time, so a config change cannot race another. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: ModelRegistryOptions = {}) {}

  /** Reconciles to `specs`; never rejects for a model's own failure (see failures()). */
  load(specs: readonly ModelSpec[]): Promise<void> {
    return this.serial(() => this.reconcile(specs));
  }

  /** The loaded model of that name, or undefined when it is not configured or failed to load. */
  get(name: string): LoadedModel | undefined {
    return this.models.get(name)?.model;
  }

  names(): string[] {
    return [...this.models.keys()];
  }

  /** Failures of the last load(). */
  failures(): readonly ModelFailure[] {
    return this.failed;
  }

  dispose(): Promise<void> {
    return this.serial(async () => {
      const all = [...this.models.values()];
      this.models.clear();
      this.failed = [];
      await Promise.allSettled(all.map((m) => m.model.dispose()));
    });
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async reconcile(specs: readonly ModelSpec[]): Promise<void> {
    const loader = this.options.loader ?? loadDetector;
    const { maxQueue, now } = this.options;
    const failures: ModelFailure[] = [];
    const wanted = new Map<string, ModelSpec>();
    for (const spec of specs) {
      if (wanted.has(spec.name))
        failures.push({
          name: spec.name,
          error: new ModelError(
            'MODEL_INVALID',
            `model name "${spec.name}" is configured twice; the first is used`,
          ),
        });
      else wanted.set(spec.name, spec);
    }

    const retired: LoadedModel[] = [];
    for (const [name, entry] of this.models) {
      const spec = wanted.get(name);
      if (!spec || specKey(spec) !== entry.key) {
        this.models.delete(name);
        retired.push(entry.model);
      }
    }
    const toLoad = [...wanted.values()].filter((s) => !this.models.has(s.name));
    // Loads run side by side: each settles on its own, one failure never cancels another.
    const settled = await Promise.allSettled(toLoad.map((s) => loader(s, { maxQueue, now })));
    settled.forEach((r, i) => {
      const spec = toLoad[i]!;
      if (r.status === 'fulfilled') this.models.set(spec.name, { key: specKey(spec), model: r.value });
      else failures.push({ name: spec.name, error: asModelError(spec, r.reason) });
    });
    this.failed = failures;
    // Retired sessions go last: detect() calls already running on them finish first.
    await Promise.allSettled(retired.map((m) => m.dispose()));
  }
}
