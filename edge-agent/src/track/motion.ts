/**
 * Constant-velocity motion model of one track: an alpha-beta filter on the box centre plus exponential
 * smoothing of the box size. Everything is driven by elapsed time, never by frame count, because the detection
 * rate is low (2-10 fps) and uneven (frames are skipped when detection is slow).
 */
import type { Box, Point } from '../lib/geometry.js';
import type { MotionOptions } from './types.js';

export interface MotionParams {
  alpha: number;
  beta: number;
  sizeAlpha: number;
  /** Normalised units per second. */
  maxSpeed: number;
}

export const DEFAULT_MOTION: Readonly<MotionParams> = { alpha: 0.7, beta: 0.35, sizeAlpha: 0.5, maxSpeed: 2 };

export function motionParams(o: MotionOptions | undefined): MotionParams {
  const p: MotionParams = { ...DEFAULT_MOTION, ...stripUndefined(o ?? {}) };
  if (!(p.alpha > 0 && p.alpha <= 1)) throw new RangeError(`motion.alpha must be in (0, 1], got ${p.alpha}`);
  if (!(p.beta >= 0 && p.beta < 2)) throw new RangeError(`motion.beta must be in [0, 2), got ${p.beta}`);
  if (!(p.sizeAlpha > 0 && p.sizeAlpha <= 1))
    throw new RangeError(`motion.sizeAlpha must be in (0, 1], got ${p.sizeAlpha}`);
  if (!(p.maxSpeed > 0)) throw new RangeError(`motion.maxSpeed must be > 0, got ${p.maxSpeed}`);
  return p;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export class BoxMotion {
  private cx: number;
  private cy: number;
  private w: number;
  private h: number;
  /** Per millisecond. */
  private vx = 0;
  private vy = 0;
  private atMs: number;
  private samples = 1;

  constructor(
    box: Box,
    atMs: number,
    private readonly p: MotionParams = DEFAULT_MOTION,
  ) {
    this.cx = box.x + box.w / 2;
    this.cy = box.y + box.h / 2;
    this.w = box.w;
    this.h = box.h;
    this.atMs = atMs;
  }

  /** True once two observations gave a velocity estimate. */
  get hasVelocity(): boolean {
    return this.samples >= 2;
  }

  /** Time of the last observation. */
  get lastMs(): number {
    return this.atMs;
  }

  /** The expected box at `atMs` (not clamped to the frame, so that IoU stays meaningful at the edges). */
  predict(atMs: number): Box {
    const dt = Math.max(0, atMs - this.atMs);
    const cx = this.cx + this.vx * dt;
    const cy = this.cy + this.vy * dt;
    return { x: cx - this.w / 2, y: cy - this.h / 2, w: this.w, h: this.h };
  }

  /** Folds in an observation made at `atMs`. */
  update(box: Box, atMs: number): void {
    const zx = box.x + box.w / 2;
    const zy = box.y + box.h / 2;
    const dt = atMs - this.atMs;
    if (!(dt > 0)) {
      // Same timestamp (or a clock step back): no time to estimate motion from; trust the newer measurement.
      this.cx = zx;
      this.cy = zy;
      this.smoothSize(box);
      return;
    }
    if (this.samples === 1) {
      // Two-point initialisation: the first velocity is the observed displacement over the elapsed time.
      this.vx = (zx - this.cx) / dt;
      this.vy = (zy - this.cy) / dt;
      this.cx = zx;
      this.cy = zy;
    } else {
      const px = this.cx + this.vx * dt;
      const py = this.cy + this.vy * dt;
      const rx = zx - px;
      const ry = zy - py;
      this.cx = px + this.p.alpha * rx;
      this.cy = py + this.p.alpha * ry;
      this.vx += (this.p.beta * rx) / dt;
      this.vy += (this.p.beta * ry) / dt;
    }
    this.capSpeed();
    this.smoothSize(box);
    this.atMs = atMs;
    this.samples++;
  }

  /** Restarts the filter at a measurement (after a long gap the old velocity means nothing). */
  reset(box: Box, atMs: number): void {
    this.cx = box.x + box.w / 2;
    this.cy = box.y + box.h / 2;
    this.w = box.w;
    this.h = box.h;
    this.vx = 0;
    this.vy = 0;
    this.atMs = atMs;
    this.samples = 1;
  }

  /** Smoothed centre at the last observation. */
  center(): Point {
    return { x: this.cx, y: this.cy };
  }

  /** Normalised units per second. */
  velocity(): Point {
    return { x: this.vx * 1000, y: this.vy * 1000 };
  }

  private smoothSize(box: Box): void {
    this.w += this.p.sizeAlpha * (box.w - this.w);
    this.h += this.p.sizeAlpha * (box.h - this.h);
  }

  private capSpeed(): void {
    const max = this.p.maxSpeed / 1000;
    const speed = Math.hypot(this.vx, this.vy);
    if (speed > max) {
      this.vx *= max / speed;
      this.vy *= max / speed;
    }
  }
}
