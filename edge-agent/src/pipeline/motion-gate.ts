/**
 * Motion gate: decides per frame whether the detector runs. Frigate and Scrypted gate the same way: a static
 * scene needs no detection, so a camera that watches an empty hallway costs a fraction of the inferences.
 *
 * The frame is reduced to a small grayscale image (box-sampled, ~64 px wide), compared with a background
 * model (an exponential running average, time-based), and a pixel counts as changed when it differs by more
 * than `pixelThreshold` grey levels. Detection runs when
 *   - the changed area is at least `minChangedFraction` of the image (motion), or
 *   - the tracker has live tracks (confirmed or tentative): slow and parked objects keep being detected and
 *     keep their tracks, and tracks end as they would without the gate, or
 *   - `maxSkipMs` passed since the last run (an object that appeared without visible motion is still found),
 *   - or it is the first frame (no background yet) or the frame size changed.
 * Pure: no I/O, the time comes from the caller.
 */
import type { RgbFrame } from '../detect/types.js';

export interface MotionGateOptions {
  /** Width of the grayscale image the comparison runs on (height keeps the frame's aspect). */
  width: number;
  /** Grey-level difference (0-255) above which a pixel counts as changed. */
  pixelThreshold: number;
  /** Changed fraction of the image (0-1) that counts as motion. */
  minChangedFraction: number;
  /** Time constant of the background model: a change that stays this long is half absorbed (ms). */
  backgroundHalfLifeMs: number;
  /** Detection runs at least this often even in a still scene (ms; 0: every frame). */
  maxSkipMs: number;
}

export type GateReason = 'first' | 'motion' | 'tracks' | 'periodic' | 'still';

export interface GateDecision {
  run: boolean;
  reason: GateReason;
  /** Changed fraction of the downscaled image (0 on the first frame). */
  changed: number;
}

/** Samples per block edge: enough to average out compression noise, few enough to stay well under 1 ms. */
const TAPS = 3;

export class MotionGate {
  private bg: Float32Array | undefined;
  private cur = new Float32Array(0);
  private gw = 0;
  private gh = 0;
  private frameW = 0;
  private frameH = 0;
  private lastAt = Number.NaN;
  private lastRunAt = Number.NaN;

  constructor(private readonly o: MotionGateOptions) {
    if (!(o.width >= 8)) throw new RangeError(`motion width must be >= 8, got ${o.width}`);
    if (!(o.pixelThreshold > 0)) throw new RangeError('motion pixelThreshold must be > 0');
    if (!(o.minChangedFraction >= 0 && o.minChangedFraction <= 1))
      throw new RangeError('motion minChangedFraction must be in [0, 1]');
    if (!(o.backgroundHalfLifeMs > 0)) throw new RangeError('motion backgroundHalfLifeMs must be > 0');
  }

  /** Looks at the frame (always: the background follows every frame) and says whether to detect. */
  decide(frame: RgbFrame, atMs: number, liveTracks: number): GateDecision {
    const fresh = this.downscale(frame);
    const dt = Number.isFinite(this.lastAt) ? Math.max(0, atMs - this.lastAt) : 0;
    this.lastAt = atMs;
    let changed = 0;
    if (fresh || !this.bg) {
      this.bg = Float32Array.from(this.cur);
    } else {
      const bg = this.bg;
      const cur = this.cur;
      const thr = this.o.pixelThreshold;
      // Fraction of the gap closed in dt: 1 - 2^(-dt / halfLife).
      const a = 1 - Math.pow(2, -dt / this.o.backgroundHalfLifeMs);
      let n = 0;
      for (let i = 0; i < cur.length; i++) {
        const d = cur[i]! - bg[i]!;
        if (d > thr || d < -thr) n++;
        bg[i] = bg[i]! + a * d;
      }
      changed = n / cur.length;
    }
    let reason: GateReason;
    if (fresh || !Number.isFinite(this.lastRunAt)) reason = 'first';
    else if (changed > 0 && changed >= this.o.minChangedFraction) reason = 'motion';
    else if (liveTracks > 0) reason = 'tracks';
    else if (atMs - this.lastRunAt >= this.o.maxSkipMs) reason = 'periodic';
    else reason = 'still';
    const run = reason !== 'still';
    if (run) this.lastRunAt = atMs;
    return { run, reason, changed };
  }

  /** Box-samples the frame into `cur` (grey = BT.601 luma); true when the size changed (new background). */
  private downscale(frame: RgbFrame): boolean {
    const { width: fw, height: fh, data } = frame;
    if (!(fw > 0 && fh > 0) || data.length < fw * fh * 3)
      throw new RangeError(`invalid frame ${fw}x${fh} with ${data.length} bytes`);
    let fresh = false;
    if (fw !== this.frameW || fh !== this.frameH) {
      this.frameW = fw;
      this.frameH = fh;
      this.gw = Math.max(1, Math.min(fw, Math.round(this.o.width)));
      this.gh = Math.max(1, Math.min(fh, Math.round((this.gw * fh) / fw)));
      this.cur = new Float32Array(this.gw * this.gh);
      this.bg = undefined;
      fresh = true;
    }
    const { gw, gh, cur } = this;
    const bw = fw / gw;
    const bh = fh / gh;
    for (let gy = 0; gy < gh; gy++) {
      for (let gx = 0; gx < gw; gx++) {
        let sum = 0;
        for (let ty = 0; ty < TAPS; ty++) {
          const y = Math.min(fh - 1, Math.floor((gy + (ty + 0.5) / TAPS) * bh));
          const row = y * fw;
          for (let tx = 0; tx < TAPS; tx++) {
            const x = Math.min(fw - 1, Math.floor((gx + (tx + 0.5) / TAPS) * bw));
            const p = (row + x) * 3;
            sum += 0.299 * data[p]! + 0.587 * data[p + 1]! + 0.114 * data[p + 2]!;
          }
        }
        cur[gy * gw + gx] = sum / (TAPS * TAPS);
      }
    }
    return fresh;
  }
}
