/**
 * Per-camera filtering after decode. Pure.
 *
 * The model is shared, so it decodes with one threshold (use the lowest any camera asks for: see
 * `minThreshold`); each camera then applies its own labels, thresholds, masks and minimum size here.
 * Masks are tested on the bottom-centre point (where an object stands), like zones: a person walking in front
 * of a masked tree is kept while the tree's false positives are not.
 */
import { area, bottomCenter, pointInPolygon, type Polygon } from '../lib/geometry.js';
import { canonicalLabel } from './coco.js';
import type { Detection } from './types.js';

export interface DetectionFilter {
  /** Allow-list of canonical labels; absent or empty = every label. */
  labels?: readonly string[];
  /** Minimum score per canonical label. */
  thresholds?: Readonly<Record<string, number>>;
  /** Minimum score for labels without an entry in `thresholds` (default 0: the decode threshold rules). */
  defaultThreshold?: number;
  /** Normalised polygons; a detection whose bottom-centre lies in any of them is dropped. */
  masks?: readonly Polygon[];
  /** Minimum box area as a fraction of the frame (0..1): drops specks. */
  minArea?: number;
}

/** A filter with its lookups built once per config, applied to every frame of the camera. */
export function compileFilter(f: DetectionFilter): (detections: readonly Detection[]) => Detection[] {
  // Config labels go through the same normalisation as model labels ("Motorbike" matches "motorcycle").
  const allow = f.labels && f.labels.length > 0 ? new Set(f.labels.map(canonicalLabel)) : undefined;
  const thresholds = new Map(Object.entries(f.thresholds ?? {}).map(([k, v]) => [canonicalLabel(k), v]));
  const fallback = f.defaultThreshold ?? 0;
  const masks = (f.masks ?? []).filter((m) => m.length >= 3);
  const minArea = f.minArea ?? 0;
  return (detections) =>
    detections.filter((d) => {
      if (allow && !allow.has(d.label)) return false;
      if (d.score < (thresholds.get(d.label) ?? fallback)) return false;
      if (minArea > 0 && area(d.box) < minArea) return false;
      if (masks.length > 0) {
        const p = bottomCenter(d.box);
        if (masks.some((m) => pointInPolygon(p, m))) return false;
      }
      return true;
    });
}

/** One-shot form of compileFilter. */
export function filterDetections(detections: readonly Detection[], f: DetectionFilter): Detection[] {
  return compileFilter(f)(detections);
}

/**
 * The lowest threshold any of these filters can accept for any label allowed: the score threshold to decode
 * a shared model with, so that no camera loses detections it asked for. `floor` is the model's default.
 */
export function minThreshold(filters: readonly DetectionFilter[], floor: number): number {
  let min = Infinity;
  for (const f of filters) {
    const labels = f.labels && f.labels.length > 0 ? new Set(f.labels.map(canonicalLabel)) : undefined;
    const entries = Object.entries(f.thresholds ?? {}).filter(
      ([k]) => !labels || labels.has(canonicalLabel(k)),
    );
    for (const [, v] of entries) min = Math.min(min, v);
    // Labels without an entry use the default (or the model's own threshold when there is none).
    const allCovered =
      labels !== undefined && [...labels].every((l) => entries.some(([k]) => canonicalLabel(k) === l));
    if (!allCovered) min = Math.min(min, f.defaultThreshold ?? floor);
  }
  return Number.isFinite(min) ? min : floor;
}
