/**
 * Multi-object tracker of one camera. Pure: no I/O, no clock (every call carries its timestamp), no timers.
 *
 * Life of a track:
 * - tentative: created from a detection that matched no track; dropped silently after more than
 *   `maxTentativeMisses` missed frames. One-frame false positives never get further.
 * - confirmed after `minHits` matched frames: gets its id, emits 'start' (plus 'zone_enter' for the zones it is
 *   already in), then 'zone_enter' / 'zone_exit' as its membership flips (with hysteresis).
 * - a confirmed track not seen for more than `maxAgeMs` emits 'end' with its best snapshot, unless it is
 *   stationary: then it goes dormant (no event) for up to `stationaryMemoryMs`, and a detection of the same label
 *   at nearly the same place re-attaches to it silently (same id, no second 'start'). A dormant track that is not
 *   re-attached in time (or is evicted by the memory bound, or flushed) emits its 'end' then.
 * So every track id gets exactly one 'start' and, eventually, exactly one 'end'.
 *
 * Memory: per track only the latest box, counters, filter state and the best frame handle; live tracks are
 * bounded by `maxTracks`, dormant ones by `stationaryMemorySize`.
 */
import { area, clampBox, iou, type Box, type Point } from '../lib/geometry.js';
import { associate } from './associate.js';
import { BoxMotion, motionParams, type MotionParams } from './motion.js';
import type {
  BestSnapshot,
  TrackerOptions,
  TrackerStats,
  TrackEvent,
  TrackEventKind,
  TrackInput,
  TrackView,
  ZoneDef,
} from './types.js';
import { ZoneMembership } from './zones.js';

interface ResolvedOptions {
  iouThreshold: number;
  maxCenterDistance: number;
  maxSizeRatio: number;
  minHits: number;
  maxTentativeMisses: number;
  maxAgeMs: number;
  maxTracks: number;
  zones: readonly ZoneDef[];
  zoneHysteresisFrames: number;
  stationary: { minMs: number; maxMovement: number } | false;
  stationaryMemoryMs: number;
  stationaryMemorySize: number;
  stationaryReattachIou: number;
  snapshotQuality: (d: TrackInput) => number;
  motion: MotionParams;
}

interface Track<F> {
  /** Assigned on confirmation. */
  id: string | undefined;
  label: string;
  classId: number;
  confirmed: boolean;
  hits: number;
  misses: number;
  firstSeenMs: number;
  lastSeenMs: number;
  box: Box;
  lastScore: number;
  bestScore: number;
  best: BestSnapshot<F>;
  bestQuality: number;
  motion: BoxMotion;
  zones: ZoneMembership;
  /** Where the smoothed centre was when it last moved more than `maxMovement`, and when. */
  anchor: Point;
  anchorMs: number;
  stationary: boolean;
}

export const DEFAULT_SNAPSHOT_QUALITY = (d: TrackInput): number => d.score * area(d.box);

function finite(n: number): boolean {
  return Number.isFinite(n);
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new RangeError(`TrackerOptions: ${what}`);
}

function resolve(o: TrackerOptions): ResolvedOptions {
  const r: ResolvedOptions = {
    iouThreshold: o.iouThreshold ?? 0.3,
    maxCenterDistance: o.maxCenterDistance ?? 1,
    maxSizeRatio: o.maxSizeRatio ?? 2,
    minHits: o.minHits ?? 3,
    maxTentativeMisses: o.maxTentativeMisses ?? 1,
    maxAgeMs: o.maxAgeMs ?? 2000,
    maxTracks: o.maxTracks ?? 64,
    zones: (o.zones ?? []).map((z) => ({ ...z })),
    zoneHysteresisFrames: o.zoneHysteresisFrames ?? 2,
    stationary:
      o.stationary === false
        ? false
        : { minMs: o.stationary?.minMs ?? 5000, maxMovement: o.stationary?.maxMovement ?? 0.02 },
    stationaryMemoryMs: o.stationaryMemoryMs ?? 600_000,
    stationaryMemorySize: o.stationaryMemorySize ?? 256,
    stationaryReattachIou: o.stationaryReattachIou ?? 0.6,
    snapshotQuality: o.snapshotQuality ?? DEFAULT_SNAPSHOT_QUALITY,
    motion: motionParams(o.motion),
  };
  check(r.iouThreshold > 0 && r.iouThreshold <= 1, 'iouThreshold must be in (0, 1]');
  check(r.maxCenterDistance >= 0 && finite(r.maxCenterDistance), 'maxCenterDistance must be >= 0');
  check(r.maxSizeRatio >= 1 && finite(r.maxSizeRatio), 'maxSizeRatio must be >= 1');
  check(Number.isInteger(r.minHits) && r.minHits >= 1, 'minHits must be an integer >= 1');
  check(
    Number.isInteger(r.maxTentativeMisses) && r.maxTentativeMisses >= 0,
    'maxTentativeMisses must be >= 0',
  );
  check(r.maxAgeMs >= 0 && finite(r.maxAgeMs), 'maxAgeMs must be >= 0');
  check(Number.isInteger(r.maxTracks) && r.maxTracks >= 1, 'maxTracks must be an integer >= 1');
  check(Number.isInteger(r.zoneHysteresisFrames) && r.zoneHysteresisFrames >= 1, 'zoneHysteresisFrames >= 1');
  check(new Set(r.zones.map((z) => z.id)).size === r.zones.length, 'zone ids must be unique');
  if (r.stationary) {
    check(r.stationary.minMs >= 0 && finite(r.stationary.minMs), 'stationary.minMs must be >= 0');
    check(r.stationary.maxMovement >= 0, 'stationary.maxMovement must be >= 0');
  }
  check(r.stationaryMemoryMs >= 0, 'stationaryMemoryMs must be >= 0');
  check(Number.isInteger(r.stationaryMemorySize) && r.stationaryMemorySize >= 0, 'stationaryMemorySize >= 0');
  check(r.stationaryReattachIou > 0 && r.stationaryReattachIou <= 1, 'stationaryReattachIou in (0, 1]');
  return r;
}

function validBox(b: Box): boolean {
  return finite(b.x) && finite(b.y) && finite(b.w) && finite(b.h);
}

/** A copy of the box clamped to the frame (values untouched when already inside: no float drift). */
function toUnit(b: Box): Box {
  const inside = b.x >= 0 && b.y >= 0 && b.x + b.w <= 1 && b.y + b.h <= 1;
  return inside ? { x: b.x, y: b.y, w: b.w, h: b.h } : clampBox(b);
}

export class Tracker<F> {
  private readonly o: ResolvedOptions;
  private readonly nextId: () => string;
  /** Tentative and confirmed tracks, in creation (or re-attach) order. */
  private live: Array<Track<F>> = [];
  /** Lost stationary tracks, oldest first. */
  private readonly dormant = new Set<Track<F>>();
  private clockMs = -Infinity;
  private dropped = 0;
  private invalid = 0;

  constructor(opts: TrackerOptions = {}) {
    this.o = resolve(opts);
    if (opts.idGenerator) {
      this.nextId = opts.idGenerator;
    } else {
      const prefix = opts.idPrefix ?? 'trk';
      let n = 0;
      this.nextId = () => `${prefix}-${++n}`;
    }
  }

  /** Detections not tracked because `maxTracks` live tracks existed. */
  get droppedDetections(): number {
    return this.dropped;
  }

  /**
   * Feeds the detections of one processed frame taken at `atMs` (call it for every processed frame, also
   * with no detections: misses are what ends tracks). `frame` is kept only while it is some track's best view.
   */
  update(detections: readonly TrackInput[], atMs: number, frame: F): Array<TrackEvent<F>> {
    const now = this.tick(atMs);
    const events: Array<TrackEvent<F>> = [];
    this.expireDormant(now, events);

    const dets: TrackInput[] = [];
    for (const d of detections) {
      const box = validBox(d.box) ? toUnit(d.box) : undefined;
      if (!box || !(box.w > 0 && box.h > 0) || !finite(d.score)) {
        this.invalid++;
        continue;
      }
      dets.push({ classId: d.classId, label: d.label, score: d.score, box });
    }

    const gate = this.o.maxCenterDistance;
    const assoc = associate(
      this.live.map((t) => ({
        label: t.label,
        box: t.motion.predict(now),
        gate: t.motion.hasVelocity ? gate : 2 * gate,
      })),
      dets,
      { iouThreshold: this.o.iouThreshold, maxSizeRatio: this.o.maxSizeRatio },
    );
    const matchOf = new Map<number, number>(assoc.matches);

    const kept: Array<Track<F>> = [];
    this.live.forEach((t, i) => {
      const di = matchOf.get(i);
      const det = di === undefined ? undefined : dets[di];
      if (det) {
        t.motion.update(det.box, now);
        this.observe(t, det, now, frame, events);
        kept.push(t);
      } else if (this.miss(t, now, events)) {
        kept.push(t);
      }
    });
    this.live = kept;

    for (const di of assoc.unmatchedDetections) {
      const det = dets[di];
      if (det) this.spawn(det, now, frame, events);
    }
    return events;
  }

  /** Ends every track (camera stopped or removed): 'end' for each confirmed and each dormant track. */
  flush(atMs: number): Array<TrackEvent<F>> {
    const now = this.tick(atMs);
    const events: Array<TrackEvent<F>> = [];
    for (const t of this.live) if (t.confirmed) events.push(this.event('end', t, now));
    for (const t of this.dormant) events.push(this.event('end', t, now));
    this.live = [];
    this.dormant.clear();
    return events;
  }

  /** Confirmed live tracks (seen within maxAgeMs), in the order they became live (created or re-attached). */
  activeTracks(): TrackView[] {
    return this.live.filter((t) => t.confirmed).map((t) => this.view(t));
  }

  stats(): TrackerStats {
    const confirmed = this.live.filter((t) => t.confirmed).length;
    return {
      tentative: this.live.length - confirmed,
      confirmed,
      dormant: this.dormant.size,
      droppedDetections: this.dropped,
      invalidDetections: this.invalid,
    };
  }

  /** Timestamps that step back are treated as "no time passed" (the caller's clock should be monotonic). */
  private tick(atMs: number): number {
    if (!finite(atMs)) throw new RangeError(`Tracker: atMs must be finite, got ${atMs}`);
    this.clockMs = Math.max(this.clockMs, atMs);
    return this.clockMs;
  }

  private expireDormant(now: number, events: Array<TrackEvent<F>>): void {
    for (const t of this.dormant) {
      if (now - t.lastSeenMs > this.o.stationaryMemoryMs) {
        this.dormant.delete(t);
        events.push(this.event('end', t, now));
      }
    }
  }

  /** Folds a matched detection into a track (the motion model is already updated). */
  private observe(t: Track<F>, det: TrackInput, now: number, frame: F, events: Array<TrackEvent<F>>): void {
    t.hits++;
    t.misses = 0;
    t.lastSeenMs = now;
    t.box = det.box;
    t.classId = det.classId;
    t.lastScore = det.score;
    t.bestScore = Math.max(t.bestScore, det.score);
    const q = this.o.snapshotQuality(det);
    if (q > t.bestQuality) {
      t.bestQuality = q;
      t.best = { frame, box: det.box, score: det.score, atMs: now };
    }
    this.updateStationary(t, now);
    const changes = t.zones.observe(det.box);
    if (t.confirmed) {
      // Exits before enters: an object that moves from one zone to the next leaves the first, then enters.
      for (const c of [...changes].sort((a, b) => Number(a.entered) - Number(b.entered)))
        events.push(this.event(c.entered ? 'zone_enter' : 'zone_exit', t, now, c.zone));
    } else if (t.hits >= this.o.minHits) {
      this.confirm(t, now, events);
    }
  }

  private confirm(t: Track<F>, now: number, events: Array<TrackEvent<F>>): void {
    t.confirmed = true;
    t.id = this.nextId();
    events.push(this.event('start', t, now));
    for (const z of t.zones.current()) events.push(this.event('zone_enter', t, now, z));
  }

  private updateStationary(t: Track<F>, now: number): void {
    const s = this.o.stationary;
    if (!s) return;
    const c = t.motion.center();
    if (Math.hypot(c.x - t.anchor.x, c.y - t.anchor.y) > s.maxMovement) {
      t.anchor = c;
      t.anchorMs = now;
      t.stationary = false;
    } else if (now - t.anchorMs >= s.minMs) {
      t.stationary = true;
    }
  }

  /** A frame without this track. Returns whether the track stays live. */
  private miss(t: Track<F>, now: number, events: Array<TrackEvent<F>>): boolean {
    t.misses++;
    const gone = now - t.lastSeenMs > this.o.maxAgeMs;
    if (!t.confirmed) return !gone && t.misses <= this.o.maxTentativeMisses;
    if (!gone) return true;
    if (t.stationary && this.o.stationary) {
      this.dormant.add(t);
      for (const oldest of this.dormant) {
        if (this.dormant.size <= this.o.stationaryMemorySize) break;
        this.dormant.delete(oldest);
        events.push(this.event('end', oldest, now));
      }
    } else {
      events.push(this.event('end', t, now));
    }
    return false;
  }

  /** A detection that matched no live track: re-attach a dormant track, start a new one, or drop it. */
  private spawn(det: TrackInput, now: number, frame: F, events: Array<TrackEvent<F>>): void {
    if (this.live.length >= this.o.maxTracks) {
      this.dropped++;
      return;
    }
    const back = this.findDormant(det);
    if (back) {
      this.dormant.delete(back);
      back.motion.reset(det.box, now);
      this.live.push(back);
      this.observe(back, det, now, frame, events);
      return;
    }
    const t: Track<F> = {
      id: undefined,
      label: det.label,
      classId: det.classId,
      confirmed: false,
      hits: 1,
      misses: 0,
      firstSeenMs: now,
      lastSeenMs: now,
      box: det.box,
      lastScore: det.score,
      bestScore: det.score,
      best: { frame, box: det.box, score: det.score, atMs: now },
      bestQuality: this.o.snapshotQuality(det),
      motion: new BoxMotion(det.box, now, this.o.motion),
      zones: new ZoneMembership(this.o.zones, det.label, this.o.zoneHysteresisFrames, det.box),
      anchor: { x: det.box.x + det.box.w / 2, y: det.box.y + det.box.h / 2 },
      anchorMs: now,
      stationary: false,
    };
    this.live.push(t);
    if (t.hits >= this.o.minHits) this.confirm(t, now, events);
  }

  private findDormant(det: TrackInput): Track<F> | undefined {
    if (!this.o.stationary) return undefined;
    let best: Track<F> | undefined;
    let bestIou = this.o.stationaryReattachIou;
    for (const t of this.dormant) {
      if (t.label !== det.label) continue;
      const v = iou(t.box, det.box);
      if (v > bestIou) {
        bestIou = v;
        best = t;
      }
    }
    return best;
  }

  private event(kind: TrackEventKind, t: Track<F>, now: number, zone?: string): TrackEvent<F> {
    return {
      kind,
      trackId: t.id ?? '',
      label: t.label,
      classId: t.classId,
      score: t.bestScore,
      box: { ...t.box },
      ...(zone === undefined ? {} : { zone }),
      atMs: now,
      zones: t.zones.current(),
      best: { ...t.best, box: { ...t.best.box } },
      stationary: t.stationary,
      durationMs: t.lastSeenMs - t.firstSeenMs,
      firstSeenMs: t.firstSeenMs,
      lastSeenMs: t.lastSeenMs,
    };
  }

  private view(t: Track<F>): TrackView {
    return {
      trackId: t.id ?? '',
      label: t.label,
      classId: t.classId,
      score: t.bestScore,
      lastScore: t.lastScore,
      box: { ...t.box },
      velocity: t.motion.velocity(),
      zones: t.zones.current(),
      stationary: t.stationary,
      hits: t.hits,
      misses: t.misses,
      firstSeenMs: t.firstSeenMs,
      lastSeenMs: t.lastSeenMs,
    };
  }
}
