/** Helpers shared by the decoders. Pure. */
import { canonicalLabel } from '../coco.js';
import { ModelError } from '../errors.js';
import { nms } from '../nms.js';
import type { DecodeOptions, Detection, TensorMap } from '../types.js';

/**
 * An output by name, checked to hold at least `minLength` values. A decoder must never read past the end:
 * with noUncheckedIndexedAccess a short array would silently yield NaN boxes instead of failing.
 */
export function requireOutput(
  outputs: TensorMap,
  name: string,
  minLength: number,
): { data: Float32Array; dims: readonly number[] } {
  const t = outputs[name];
  if (!t) throw new ModelError('MODEL_SHAPE', `model output "${name}" is missing`);
  if (t.data.length < minLength)
    throw new ModelError(
      'MODEL_SHAPE',
      `model output "${name}" has ${t.data.length} values [${t.dims.join(',')}], expected at least ${minLength}`,
    );
  return t;
}

/** The event labels of a model's classes (see coco.ts). */
export function labelsOf(classNames: readonly string[]): readonly string[] {
  return Object.freeze(classNames.map(canonicalLabel));
}

/** Greedy class-aware NMS with the per-call cap. */
export function suppress(candidates: Detection[], opts: DecodeOptions): Detection[] {
  return nms(candidates, { iouThreshold: opts.nmsIou, maxDetections: opts.maxDetections });
}

/** Index and score of the best class among `count` scores starting at `start`, read every `step` values. */
export function argmax(data: Float32Array, start: number, count: number, step: number): [number, number] {
  let best = 0;
  let bestScore = -Infinity;
  for (let c = 0, i = start; c < count; c++, i += step) {
    const v = data[i]!;
    if (v > bestScore) {
      bestScore = v;
      best = c;
    }
  }
  return [best, bestScore];
}

export function sigmoid(v: number): number {
  return 1 / (1 + Math.exp(-v));
}

export function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  return v;
}
