import { describe, expect, it } from 'vitest';
import { bottomCenter, clampBox, iou, pointInPolygon } from '../src/lib/geometry.js';

describe('geometry', () => {
  it('iou of identical, disjoint and half-overlapping boxes', () => {
    const a = { x: 0, y: 0, w: 0.5, h: 0.5 };
    expect(iou(a, a)).toBe(1);
    expect(iou(a, { x: 0.6, y: 0.6, w: 0.1, h: 0.1 })).toBe(0);
    expect(iou(a, { x: 0.25, y: 0, w: 0.5, h: 0.5 })).toBeCloseTo(1 / 3, 10);
  });
  it('point in polygon, including a concave one', () => {
    const l = [
      { x: 0, y: 0 },
      { x: 0.5, y: 0 },
      { x: 0.5, y: 0.5 },
      { x: 1, y: 0.5 },
      { x: 1, y: 1 },
      { x: 0, y: 1 },
    ];
    expect(pointInPolygon({ x: 0.25, y: 0.25 }, l)).toBe(true);
    expect(pointInPolygon({ x: 0.75, y: 0.25 }, l)).toBe(false);
    expect(pointInPolygon({ x: 0.75, y: 0.75 }, l)).toBe(true);
  });
  it('clamps boxes and finds the ground point', () => {
    const c = clampBox({ x: -0.1, y: 0.9, w: 0.3, h: 0.3 });
    expect([c.x, c.y, c.w, c.h].map((v) => Number(v.toFixed(9)))).toEqual([0, 0.9, 0.2, 0.1]);
    const g = bottomCenter({ x: 0.2, y: 0.2, w: 0.2, h: 0.4 });
    expect([g.x, g.y].map((v) => Number(v.toFixed(9)))).toEqual([0.3, 0.6]);
  });
});
