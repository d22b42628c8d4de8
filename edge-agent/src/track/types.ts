/** Types of the per-camera tracker. Pure: no I/O, time arrives as millisecond timestamps. */
import type { Box, Point, Polygon } from '../lib/geometry.js';

/** One detection of one processed frame (a structural subset of what detect/ produces). */
export interface TrackInput {
  classId: number;
  label: string;
  score: number;
  /** Normalised 0..1, top-left origin. */
  box: Box;
}

/** A named zone. Membership is decided by the bottom-centre (ground point) of the track's box. */
export interface ZoneDef {
  id: string;
  polygon: Polygon;
  /** Only tracks with one of these labels are considered; all labels when absent. */
  labels?: readonly string[];
}

export interface StationaryOptions {
  /** A track whose centre stayed within `maxMovement` for this long is stationary. Default 5000. */
  minMs?: number;
  /** Radius (normalised units, Euclidean, on the smoothed box centre). Default 0.02. */
  maxMovement?: number;
}

export interface MotionOptions {
  /** Position gain of the alpha-beta filter (0..1]: 1 trusts the measurement fully. Default 0.7. */
  alpha?: number;
  /** Velocity gain (0..1). Default 0.35. */
  beta?: number;
  /** Smoothing gain of the box size (no size velocity). Default 0.5. */
  sizeAlpha?: number;
  /** Cap on the estimated centre speed, normalised units per second. Default 2. */
  maxSpeed?: number;
}

export interface TrackerOptions {
  /** Minimum IoU between a track's predicted box and a detection to associate them. Default 0.3. */
  iouThreshold?: number;
  /**
   * Fallback gate for detections that overlap no track (fast small objects at low fps): the distance between
   * the predicted and the detected centres, in diagonals of the predicted box. Doubled for tracks that have no
   * velocity estimate yet (one observation). 0 disables the fallback. Default 1.
   */
  maxCenterDistance?: number;
  /** Fallback only: each side of the detection must be within this factor of the predicted box. Default 2. */
  maxSizeRatio?: number;
  /** Matched frames before a track is confirmed and emits 'start'. Default 3. */
  minHits?: number;
  /** Consecutive processed frames a tentative (unconfirmed) track may miss before it is dropped. Default 1. */
  maxTentativeMisses?: number;
  /** A confirmed track not seen for longer than this ends (or goes dormant, if stationary). Default 2000. */
  maxAgeMs?: number;
  /** Bound on live (tentative + confirmed) tracks; excess detections are dropped and counted. Default 64. */
  maxTracks?: number;
  zones?: readonly ZoneDef[];
  /** Consecutive observed frames on the other side of a zone edge before membership flips. Default 2. */
  zoneHysteresisFrames?: number;
  /** Stationary detection; `false` disables it (and with it the silent re-attach). */
  stationary?: StationaryOptions | false;
  /** How long a lost stationary track can be re-attached silently. Default 600000 (10 min). */
  stationaryMemoryMs?: number;
  /** Bound on remembered lost stationary tracks; the oldest is ended when it is exceeded. Default 256. */
  stationaryMemorySize?: number;
  /** A new detection re-attaches to a remembered stationary track above this IoU. Default 0.6. */
  stationaryReattachIou?: number;
  /** Prefix of generated ids: `${idPrefix}-${n}`, n from 1. Default 'trk'. */
  idPrefix?: string;
  /** Replaces the default id generator (called once per confirmed track). */
  idGenerator?: () => string;
  /** Quality of a view for the best snapshot. Default: score x box area. */
  snapshotQuality?: (d: TrackInput) => number;
  motion?: MotionOptions;
}

export interface BestSnapshot<F> {
  frame: F;
  box: Box;
  score: number;
  atMs: number;
}

export type TrackEventKind = 'start' | 'zone_enter' | 'zone_exit' | 'end';

export interface TrackEvent<F> {
  kind: TrackEventKind;
  trackId: string;
  label: string;
  classId: number;
  /** Best detection score so far. */
  score: number;
  /** Box of the latest observation. */
  box: Box;
  /** Zone id, for zone_enter / zone_exit. */
  zone?: string;
  /** When the tracker decided this event (the atMs of the update or flush call). */
  atMs: number;
  /** Zone membership after this frame's changes, in the order of the zones option. */
  zones: string[];
  best: BestSnapshot<F>;
  stationary: boolean;
  /** lastSeenMs - firstSeenMs. */
  durationMs: number;
  firstSeenMs: number;
  lastSeenMs: number;
}

/** Read-only view of a confirmed track (for status pages, metrics and tests). */
export interface TrackView {
  trackId: string;
  label: string;
  classId: number;
  score: number;
  lastScore: number;
  box: Box;
  /** Smoothed velocity of the box centre, normalised units per second. */
  velocity: Point;
  zones: string[];
  stationary: boolean;
  hits: number;
  /** Processed frames since the last match (0 when seen in the latest frame). */
  misses: number;
  firstSeenMs: number;
  lastSeenMs: number;
}

export interface TrackerStats {
  tentative: number;
  confirmed: number;
  /** Lost stationary tracks waiting to be re-attached. */
  dormant: number;
  droppedDetections: number;
  /** Detections ignored because their box was not finite or empty. */
  invalidDetections: number;
}
