export { Tracker, DEFAULT_SNAPSHOT_QUALITY } from './tracker.js';
export { BoxMotion, DEFAULT_MOTION, motionParams } from './motion.js';
export type { MotionParams } from './motion.js';
export { associate, centerDistance } from './associate.js';
export type { AssocDetection, AssocOptions, AssocTrack, Association } from './associate.js';
export { ZoneMembership, zoneApplies } from './zones.js';
export type { ZoneChange } from './zones.js';
export type {
  BestSnapshot,
  MotionOptions,
  StationaryOptions,
  TrackerOptions,
  TrackerStats,
  TrackEvent,
  TrackEventKind,
  TrackInput,
  TrackView,
  ZoneDef,
} from './types.js';
