import { describe, expect, it } from 'vitest';
import { nms } from '../src/detect/nms.js';

const d = (classId: number, score: number, x: number, y = 0, w = 0.2, h = 0.2) => ({
  classId,
  score,
  box: { x, y, w, h },
});

describe('nms', () => {
  it('keeps the best of overlapping same-class boxes, best first, without touching the input', () => {
    const input = [d(0, 0.6, 0.01), d(0, 0.9, 0), d(0, 0.7, 0.5)];
    const copy = structuredClone(input);
    const out = nms(input, { iouThreshold: 0.5, maxDetections: 10 });
    expect(out.map((o) => o.score)).toEqual([0.9, 0.7]);
    expect(input).toEqual(copy);
  });

  it('is class-aware by default and class-agnostic on request', () => {
    const input = [d(0, 0.9, 0), d(1, 0.8, 0)];
    expect(nms(input, { iouThreshold: 0.5, maxDetections: 10 })).toHaveLength(2);
    expect(nms(input, { iouThreshold: 0.5, maxDetections: 10, classAware: false })).toHaveLength(1);
  });

  it('suppresses only above the IoU threshold', () => {
    // Same size, shifted by a third of the width: IoU = (2/3) / (4/3) = 0.5 exactly.
    const a = d(0, 0.9, 0, 0, 0.3, 0.3);
    const b = d(0, 0.8, 0.1, 0, 0.3, 0.3);
    expect(nms([a, b], { iouThreshold: 0.5, maxDetections: 10 })).toHaveLength(2);
    expect(nms([a, b], { iouThreshold: 0.49, maxDetections: 10 })).toHaveLength(1);
  });

  it('caps the output and drops NaN scores', () => {
    const many = Array.from({ length: 50 }, (_, i) =>
      d(0, i / 50, (i % 10) * 0.1, Math.floor(i / 10) * 0.2, 0.05, 0.05),
    );
    const out = nms([...many, d(0, Number.NaN, 0.9, 0.9)], { iouThreshold: 0.5, maxDetections: 5 });
    expect(out.map((o) => o.score)).toEqual([0.98, 0.96, 0.94, 0.92, 0.9]);
    expect(nms(many, { iouThreshold: 0.5, maxDetections: 0 })).toEqual([]);
    expect(nms([], { iouThreshold: 0.5, maxDetections: 5 })).toEqual([]);
  });
});
