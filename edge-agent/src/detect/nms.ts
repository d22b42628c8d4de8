/**
 * Greedy non-maximum suppression. Pure.
 *
 * Each candidate is compared only with the boxes already kept (at most `maxDetections`), so the cost is
 * O(n log n + n * maxDetections) however many candidates a low threshold lets through: bounded by the cap,
 * never quadratic in the candidates.
 */
import { iou, type Box } from '../lib/geometry.js';

export interface NmsCandidate {
  classId: number;
  score: number;
  box: Box;
}

export interface NmsOptions {
  /** Suppress a box whose IoU with a better kept box exceeds this. */
  iouThreshold: number;
  /** Stop once this many boxes are kept. */
  maxDetections: number;
  /**
   * true (default): boxes only suppress boxes of their own class, so a person on a bicycle keeps both.
   * false: one box per place whatever the class (useful for single-class models or class-confused heads).
   */
  classAware?: boolean;
}

/** Returns the kept candidates, best first. The input array is not modified. */
export function nms<T extends NmsCandidate>(candidates: readonly T[], opts: NmsOptions): T[] {
  const max = Math.max(0, Math.floor(opts.maxDetections));
  if (max === 0 || candidates.length === 0) return [];
  const classAware = opts.classAware ?? true;
  // NaN (a broken model) would poison the sort comparator, so it is dropped first. The sort is stable:
  // equal scores keep their decode order, which makes results deterministic.
  const order = candidates.filter((c) => !Number.isNaN(c.score)).sort((a, b) => b.score - a.score);
  const kept: T[] = [];
  for (const c of order) {
    let suppressed = false;
    for (const k of kept) {
      if (classAware && k.classId !== c.classId) continue;
      if (iou(k.box, c.box) > opts.iouThreshold) {
        suppressed = true;
        break;
      }
    }
    if (suppressed) continue;
    kept.push(c);
    if (kept.length >= max) break;
  }
  return kept;
}
