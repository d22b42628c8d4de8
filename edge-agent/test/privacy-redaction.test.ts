import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asset } from '@vigil/testkit';
import { loadModel, type LoadedModel } from '../src/detect/index.js';
import { privatizeFrame, type SnapshotPrivacy } from '../src/media/privacy.js';
import { redactionRect, type RawRgb } from '../src/media/redact.js';
import { decodeJpeg, encodeSnapshot } from '../src/media/snapshot.js';
import { clipFrames } from './helpers/clip-frames.js';

const clip = asset('videos/face-walking.mp4');
const yunetPath = asset('models/yunet_n_320_320.onnx');
const ultrafacePath = asset('models/version-RFB-320.onnx');
const THRESHOLD = 0.5; // the agent's own face detection threshold
const EXPAND = 1; // the agent's default

type Rect = ReturnType<typeof redactionRect>;

/** A pixel rectangle of `img` grown by `margin` of its size on each side, as its own image, and where it lies. */
async function crop(
  img: RawRgb,
  r: Rect,
  margin: number,
): Promise<{ img: RawRgb; left: number; top: number }> {
  const mw = Math.round((r.x1 - r.x0) * margin);
  const mh = Math.round((r.y1 - r.y0) * margin);
  const left = Math.max(0, r.x0 - mw);
  const top = Math.max(0, r.y0 - mh);
  const width = Math.min(img.width, r.x1 + mw) - left;
  const height = Math.min(img.height, r.y1 + mh) - top;
  const { data, info } = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .extract({ left, top, width, height })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { img: { data, width: info.width, height: info.height }, left, top };
}

/**
 * The stronger check: the best score any checker gives to a face whose centre lies inside a redacted region,
 * looking at the whole snapshot and at crops around each region (a small region scaled up to the model's
 * input is where a weak redaction shows again: plain 3-block pixelation scored 0.83 that way).
 */
async function bestFaceInRegions(snapshot: RawRgb, rects: Rect[], checkers: LoadedModel[]): Promise<number> {
  let best = 0;
  const inside = (r: Rect, x: number, y: number) => x >= r.x0 && x < r.x1 && y >= r.y0 && y < r.y1;
  for (const m of checkers) {
    const views = [{ img: snapshot, left: 0, top: 0 }];
    for (const r of rects)
      for (const margin of [0, 0.25, 0.5, 1]) views.push(await crop(snapshot, r, margin));
    for (const v of views)
      for (const d of (await m.detect(v.img, { scoreThreshold: 0.05 })).detections) {
        const cx = v.left + (d.box.x + d.box.w / 2) * v.img.width;
        const cy = v.top + (d.box.y + d.box.h / 2) * v.img.height;
        if (rects.some((r) => inside(r, cx, cy))) best = Math.max(best, d.score);
      }
  }
  return best;
}

/** A seeded noise source (mulberry32), so a run is repeatable; the agent uses crypto random bytes. */
function seeded(seed: number): (n: number) => Uint8Array {
  let a = seed >>> 0;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      out[i] = ((t ^ (t >>> 14)) >>> 0) & 0xff;
    }
    return out;
  };
}

describe.skipIf(!clip || !yunetPath || !ultrafacePath)(
  'irreversible face redaction on face-walking.mp4',
  () => {
    let agentFaces: LoadedModel;
    let checkers: LoadedModel[] = [];
    let frames: RawRgb[] = [];
    beforeAll(async () => {
      agentFaces = await loadModel({ name: 'faces', type: 'yunet', path: yunetPath! });
      // Every face model the project ships a plugin and a test asset for.
      checkers = [
        await loadModel({ name: 'yunet-check', type: 'yunet', path: yunetPath! }),
        await loadModel({ name: 'ultraface-check', type: 'ultraface', path: ultrafacePath! }),
      ];
      frames = await clipFrames(clip!, 480, 270);
    }, 60_000);
    afterAll(async () => {
      for (const m of [agentFaces, ...checkers]) await m?.dispose();
    });

    /** Each frame as the agent would store it (redacted, encoded with the default snapshot settings, decoded). */
    async function stored(
      frame: RawRgb,
      redaction: SnapshotPrivacy['redaction'] | 'none',
    ): Promise<{ snapshot: RawRgb; rects: Rect[] }> {
      const p: SnapshotPrivacy = {
        faceModel: agentFaces,
        faceThreshold: THRESHOLD,
        redaction: redaction === 'none' ? { mode: 'fill', blocks: 3, noise: 32, expand: EXPAND } : redaction,
        masks: [],
        random: seeded(7),
      };
      const { faces, ...rest } = await privatizeFrame(frame, p);
      // 'none': the frame as it was, with the regions redaction would have covered (the check's control).
      const img = redaction === 'none' ? frame : rest.img;
      const snap = await encodeSnapshot(img, { maxBytes: 150_000, quality: 80 });
      const snapshot = await decodeJpeg(snap.data);
      return {
        snapshot,
        rects: faces.map((f) => redactionRect(f, snapshot.width, snapshot.height, p.redaction.expand)),
      };
    }

    async function worst(redaction: SnapshotPrivacy['redaction'] | 'none', every = 1) {
      let best = 0;
      let regions = 0;
      for (let i = 0; i < frames.length; i += every) {
        const { snapshot, rects } = await stored(frames[i]!, redaction);
        if (rects.length === 0) continue;
        regions += rects.length;
        best = Math.max(best, await bestFaceInRegions(snapshot, rects, checkers));
      }
      return { best, regions };
    }

    it('the check finds the faces in the same regions of unredacted frames', async () => {
      const { best, regions } = await worst('none', 3);
      console.log(`[no redaction] best face score in a region: ${best.toFixed(3)} (${regions} regions)`);
      expect(regions).toBeGreaterThan(5);
      expect(best).toBeGreaterThanOrEqual(THRESHOLD);
    }, 300_000);

    it.each([
      { mode: 'fill' as const, blocks: 3, noise: 32, expand: EXPAND },
      { mode: 'blocks' as const, blocks: 3, noise: 32, expand: EXPAND },
    ])(
      'mode $mode: no shipped face model scores a face in a redacted region at or above 0.5 in any frame',
      async (redaction) => {
        const { best, regions } = await worst(redaction);
        console.log(
          `[${redaction.mode}] best face score in a redacted region: ${best.toFixed(3)} (${regions} regions)`,
        );
        // Faces were found and redacted on most of the clip (two people walk toward the camera).
        expect(regions).toBeGreaterThan(frames.length);
        expect(best).toBeLessThan(THRESHOLD);
      },
      300_000,
    );
  },
);
