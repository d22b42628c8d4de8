/**
 * Detection-to-track association for one frame. Greedy, two passes, labels never mix:
 * 1. pairs with IoU(predicted box, detection) >= iouThreshold, best IoU first;
 * 2. for what is left, pairs whose centres are within `gate` diagonals of the predicted box (and of a similar
 *    size), nearest first: fast small objects at low fps move further than their own size between frames.
 * Ties break on the lower track index, then the lower detection index, so the result is deterministic.
 */
import { iou, type Box } from '../lib/geometry.js';

export interface AssocTrack {
  label: string;
  /** The track's box predicted at the frame's time. */
  box: Box;
  /** Centre-distance gate in diagonals of `box`; 0 disables the fallback for this track. */
  gate: number;
}

export interface AssocDetection {
  label: string;
  box: Box;
}

export interface AssocOptions {
  iouThreshold: number;
  /** Fallback only: each side of the detection within this factor of the predicted box. */
  maxSizeRatio: number;
}

export interface Association {
  /** [track index, detection index] */
  matches: Array<[number, number]>;
  unmatchedTracks: number[];
  unmatchedDetections: number[];
}

interface Pair {
  t: number;
  d: number;
  cost: number;
}

/** Normalised centre distance (in diagonals of `ref`), or Infinity when `ref` is degenerate. */
export function centerDistance(ref: Box, b: Box): number {
  const diag = Math.hypot(ref.w, ref.h);
  if (!(diag > 0)) return Infinity;
  const dx = b.x + b.w / 2 - (ref.x + ref.w / 2);
  const dy = b.y + b.h / 2 - (ref.y + ref.h / 2);
  return Math.hypot(dx, dy) / diag;
}

function similarSize(a: Box, b: Box, ratio: number): boolean {
  const ok = (p: number, q: number): boolean => p > 0 && q > 0 && p <= q * ratio && q <= p * ratio;
  return ok(a.w, b.w) && ok(a.h, b.h);
}

function byCost(a: Pair, b: Pair): number {
  return a.cost - b.cost || a.t - b.t || a.d - b.d;
}

export function associate(
  tracks: readonly AssocTrack[],
  detections: readonly AssocDetection[],
  opts: AssocOptions,
): Association {
  const trackUsed = new Array<boolean>(tracks.length).fill(false);
  const detUsed = new Array<boolean>(detections.length).fill(false);
  const matches: Array<[number, number]> = [];

  const take = (pairs: Pair[]): void => {
    pairs.sort(byCost);
    for (const p of pairs) {
      if (trackUsed[p.t] || detUsed[p.d]) continue;
      trackUsed[p.t] = true;
      detUsed[p.d] = true;
      matches.push([p.t, p.d]);
    }
  };

  const overlap: Pair[] = [];
  tracks.forEach((t, ti) => {
    detections.forEach((d, di) => {
      if (t.label !== d.label) return;
      const v = iou(t.box, d.box);
      if (v >= opts.iouThreshold && v > 0) overlap.push({ t: ti, d: di, cost: -v });
    });
  });
  take(overlap);

  const near: Pair[] = [];
  tracks.forEach((t, ti) => {
    if (trackUsed[ti] || !(t.gate > 0)) return;
    detections.forEach((d, di) => {
      if (detUsed[di] || t.label !== d.label) return;
      if (!similarSize(t.box, d.box, opts.maxSizeRatio)) return;
      const dist = centerDistance(t.box, d.box);
      if (dist <= t.gate) near.push({ t: ti, d: di, cost: dist });
    });
  });
  take(near);

  matches.sort((a, b) => a[0] - b[0]);
  return {
    matches,
    unmatchedTracks: tracks.flatMap((_, i) => (trackUsed[i] ? [] : [i])),
    unmatchedDetections: detections.flatMap((_, i) => (detUsed[i] ? [] : [i])),
  };
}
