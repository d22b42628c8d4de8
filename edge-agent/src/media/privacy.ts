/**
 * What every stored snapshot goes through before it is encoded: faces found by the face model are redacted
 * (irreversibly, see redact.ts), then the camera's privacy masks are painted black. Both act on the raw frame,
 * so no stored or uploaded byte ever held the original pixels of those areas.
 */
import type { LoadedModel } from '../detect/index.js';
import type { Box, Polygon } from '../lib/geometry.js';
import { fillPolygons, redactRegions, type RawRgb, type RedactionStyle } from './redact.js';

export interface SnapshotPrivacy {
  /** Set when faces are to be redacted; absent: no face redaction. */
  faceModel?: LoadedModel;
  faceThreshold: number;
  redaction: { mode: 'fill' | 'blocks'; blocks: number; noise: number; expand: number };
  masks: readonly Polygon[];
  /** Noise source for `blocks` (tests); default crypto random. */
  random?: (n: number) => Uint8Array;
}

export interface PrivateImage {
  img: RawRgb;
  /** The face model looked at this image (whether or not it found a face). */
  redacted: boolean;
  /** The face boxes redacted (before `expand`), normalised. */
  faces: Box[];
}

export function redactionStyle(r: SnapshotPrivacy['redaction']): RedactionStyle {
  return r.mode === 'fill'
    ? { mode: 'fill', color: [0, 0, 0] }
    : { mode: 'blocks', blocks: r.blocks, noise: r.noise };
}

/** Redacts faces and applies masks; throws when the face model fails (callers then store no image). */
export async function privatizeFrame(frame: RawRgb, p: SnapshotPrivacy): Promise<PrivateImage> {
  let img = frame;
  let faces: Box[] = [];
  if (p.faceModel) {
    faces = (await p.faceModel.detect(frame, { scoreThreshold: p.faceThreshold })).detections.map(
      (d) => d.box,
    );
    if (faces.length > 0)
      img = redactRegions(img, faces, redactionStyle(p.redaction), {
        expand: p.redaction.expand,
        ...(p.random ? { random: p.random } : {}),
      });
  }
  if (p.masks.length > 0) img = fillPolygons(img, p.masks);
  return { img, redacted: p.faceModel !== undefined, faces };
}
