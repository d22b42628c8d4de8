import type { Logger } from 'pino';
import type { TrackEvent } from '../track/types.js';

/*
 * What a camera sees, at info level: one line per track start and end (an offline gateway's log is the only
 * place that shows it). Bounded per camera: at most `maxLines` such lines per window of `windowMs`; past that,
 * starts and ends are counted (per label) and one summary line per window says what was not logged, so a busy
 * scene costs at most maxLines + 1 lines per window. Zone crossings stay out (they are events, not tracks).
 */

export interface TrackLogOptions {
  /** Track lines per camera per window (default 20). */
  maxLines?: number;
  /** Window length (default 10 s). */
  windowMs?: number;
  /** Labels named in a summary; the rest are summed as "other" (default 16). */
  maxLabels?: number;
  now: () => number;
  /** Told how many lines were left out (a metric). */
  onSuppressed?: (n: number) => void;
}

interface Suppressed {
  start: number;
  end: number;
  labels: Map<string, number>;
}

export class TrackLog {
  private readonly maxLines: number;
  private readonly windowMs: number;
  private readonly maxLabels: number;
  private windowStart: number;
  private lines = 0;
  private suppressed: Suppressed = { start: 0, end: 0, labels: new Map() };

  constructor(
    private readonly log: Logger,
    private readonly camera: string,
    private readonly opts: TrackLogOptions,
  ) {
    this.maxLines = opts.maxLines ?? 20;
    this.windowMs = opts.windowMs ?? 10_000;
    this.maxLabels = opts.maxLabels ?? 16;
    this.windowStart = opts.now();
  }

  /** Logs a track's start or end (other kinds are ignored), or counts it when the window's lines are used. */
  record(ev: TrackEvent<unknown>, eventId: string): void {
    if (ev.kind !== 'start' && ev.kind !== 'end') return;
    this.tick();
    if (this.lines >= this.maxLines) {
      const s = this.suppressed;
      s[ev.kind]++;
      const label = s.labels.has(ev.label) || s.labels.size < this.maxLabels ? ev.label : 'other';
      s.labels.set(label, (s.labels.get(label) ?? 0) + 1);
      this.opts.onSuppressed?.(1);
      return;
    }
    this.lines++;
    const score = Math.round(ev.score * 1000) / 1000;
    if (ev.kind === 'start')
      this.log.info(
        { camera: this.camera, trackId: ev.trackId, label: ev.label, score, eventId },
        'track started',
      );
    else
      this.log.info(
        {
          camera: this.camera,
          trackId: ev.trackId,
          label: ev.label,
          score,
          durationMs: Math.round(ev.durationMs),
          ...(ev.stationary ? { stationary: true } : {}),
          eventId,
        },
        'track ended',
      );
  }

  /** Starts a new window when the current one is over (called per processed frame, so a summary is not late). */
  tick(): void {
    const now = this.opts.now();
    if (now - this.windowStart < this.windowMs) return;
    this.flush();
    this.windowStart = now;
    this.lines = 0;
  }

  /** Logs the summary of what the current window left out, if anything (also at stop). */
  flush(): void {
    const s = this.suppressed;
    if (s.start + s.end === 0) return;
    this.log.info(
      {
        camera: this.camera,
        notLogged: { starts: s.start, ends: s.end },
        labels: Object.fromEntries(s.labels),
        windowMs: this.windowMs,
        maxLines: this.maxLines,
      },
      'many tracks: starts and ends beyond the per-window line limit were counted, not logged',
    );
    this.suppressed = { start: 0, end: 0, labels: new Map() };
  }
}
