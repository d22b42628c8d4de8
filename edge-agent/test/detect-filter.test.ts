import { describe, expect, it } from 'vitest';
import { COCO_CLASSES, DARKNET_COCO_CLASSES, canonicalLabel } from '../src/detect/coco.js';
import { compileFilter, filterDetections, minThreshold } from '../src/detect/filter.js';
import type { Detection } from '../src/detect/types.js';

const det = (label: string, score: number, x = 0.1, y = 0.1, w = 0.2, h = 0.4): Detection => ({
  classId: 0,
  label,
  score,
  box: { x, y, w, h },
});

describe('filterDetections', () => {
  const dets = [det('person', 0.9), det('car', 0.5), det('tv', 0.7, 0, 0, 0.15, 0.38), det('dog', 0.3)];

  it('keeps everything without rules', () => {
    expect(filterDetections(dets, {})).toHaveLength(4);
  });

  it('applies the label allow-list, normalising config spellings', () => {
    const out = filterDetections([...dets, det('motorcycle', 0.8)], { labels: ['Person', 'motorbike'] });
    expect(out.map((d) => d.label)).toEqual(['person', 'motorcycle']);
  });

  it('applies per-label thresholds with a default for the rest', () => {
    const out = filterDetections(dets, { thresholds: { car: 0.4, person: 0.95 }, defaultThreshold: 0.6 });
    expect(out.map((d) => d.label)).toEqual(['car', 'tv']);
  });

  it('drops detections whose bottom-centre lies in a mask, however much of the box overlaps it', () => {
    // The tv box stands at (0.075, 0.38); the person at (0.2, 0.5).
    const mask = [
      { x: 0, y: 0 },
      { x: 0.15, y: 0 },
      { x: 0.15, y: 0.45 },
      { x: 0, y: 0.45 },
    ];
    const out = filterDetections(dets, { masks: [mask] });
    expect(out.map((d) => d.label)).toEqual(['person', 'car', 'dog']);
    // Degenerate polygons are ignored instead of masking everything.
    expect(filterDetections(dets, { masks: [[{ x: 0, y: 0 }]] })).toHaveLength(4);
  });

  it('drops boxes smaller than minArea', () => {
    const out = filterDetections([det('person', 0.9, 0, 0, 0.01, 0.02), det('person', 0.9)], {
      minArea: 0.001,
    });
    expect(out).toHaveLength(1);
  });

  it('compiles once and is reusable per frame', () => {
    const f = compileFilter({ labels: ['person'] });
    expect(f(dets)).toHaveLength(1);
    expect(f([])).toEqual([]);
  });
});

describe('minThreshold', () => {
  it('is the lowest score any camera accepts, else the model default', () => {
    expect(minThreshold([], 0.65)).toBe(0.65);
    expect(minThreshold([{}], 0.65)).toBe(0.65);
    expect(minThreshold([{ thresholds: { person: 0.4 } }], 0.65)).toBe(0.4);
    expect(minThreshold([{ labels: ['person'], thresholds: { person: 0.8, car: 0.1 } }], 0.65)).toBe(0.8);
    expect(minThreshold([{ labels: ['person', 'car'], thresholds: { person: 0.8 } }], 0.65)).toBe(0.65);
    expect(
      minThreshold([{ defaultThreshold: 0.9 }, { thresholds: { car: 0.5 }, defaultThreshold: 0.7 }], 0.3),
    ).toBe(0.5);
  });
});

describe('labels', () => {
  it('maps darknet spellings and user variants to the COCO vocabulary', () => {
    expect(DARKNET_COCO_CLASSES).toHaveLength(80);
    expect(DARKNET_COCO_CLASSES.map(canonicalLabel)).toEqual(COCO_CLASSES);
    expect(canonicalLabel('tvmonitor')).toBe('tv');
    expect(canonicalLabel('Dining_Table')).toBe('dining table');
    expect(canonicalLabel('  Forklift ')).toBe('forklift');
    expect(COCO_CLASSES[3]).toBe('motorcycle');
    expect(DARKNET_COCO_CLASSES[3]).toBe('motorbike');
  });
});
