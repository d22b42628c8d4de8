/** Geometry in normalised image coordinates (0..1 on both axes, origin top-left). Pure. */

/** An axis-aligned box: top-left corner and size. */
export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface Point {
  x: number;
  y: number;
}

/** A closed polygon (the last point joins the first); at least 3 points. */
export type Polygon = readonly Point[];

export function area(b: Box): number {
  return Math.max(0, b.w) * Math.max(0, b.h);
}

export function iou(a: Box, b: Box): number {
  const ix = Math.max(0, Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x));
  const iy = Math.max(0, Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y));
  const inter = ix * iy;
  const union = area(a) + area(b) - inter;
  return union > 0 ? inter / union : 0;
}

export function center(b: Box): Point {
  return { x: b.x + b.w / 2, y: b.y + b.h / 2 };
}

/** The point where an object touches the ground: what zones are usually drawn around. */
export function bottomCenter(b: Box): Point {
  return { x: b.x + b.w / 2, y: b.y + b.h };
}

/** Clamps a box to the unit square. */
export function clampBox(b: Box): Box {
  const x1 = Math.min(1, Math.max(0, b.x));
  const y1 = Math.min(1, Math.max(0, b.y));
  const x2 = Math.min(1, Math.max(0, b.x + b.w));
  const y2 = Math.min(1, Math.max(0, b.y + b.h));
  return { x: x1, y: y1, w: Math.max(0, x2 - x1), h: Math.max(0, y2 - y1) };
}

/** Even-odd ray casting; points on an edge may fall either way (zones are drawn with margin). */
export function pointInPolygon(p: Point, poly: Polygon): boolean {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const a = poly[i]!;
    const b = poly[j]!;
    if (a.y > p.y !== b.y > p.y && p.x < ((b.x - a.x) * (p.y - a.y)) / (b.y - a.y) + a.x) inside = !inside;
  }
  return inside;
}
