/**
 * YuNet (libfacedetection.train) with the split anchor-free heads, as OpenCV's FaceDetectorYN reads them.
 *
 * Input  `input` [1,3,320,320]: letterbox top-left, zero pad, BGR, raw 0-255.
 * Outputs per stride s in 8,16,32, N = (W/s)*(H/s) cells row-major: `cls_s` [1,N,1], `obj_s` [1,N,1],
 *         `bbox_s` [1,N,4] (cx,cy offsets and log w,h in stride units), `kps_s` [1,N,10] (5 landmark offsets).
 *         score = sqrt(cls * obj), both clamped to 0..1 first as OpenCV does.
 */
import type { Point } from '../../lib/geometry.js';
import { createResizer, inputBoxToFrame, inputPointToFrame } from '../preprocess.js';
import type {
  DecodeOptions,
  Detection,
  DetectorPlugin,
  LetterboxMeta,
  RgbFrame,
  TensorMap,
  TensorSpec,
} from '../types.js';
import { positiveInt, requireOutput, suppress } from './common.js';

export interface YuNetOptions {
  inputWidth?: number;
  inputHeight?: number;
  inputName?: string;
}

const STRIDES = [8, 16, 32] as const;

const clamp01 = (v: number): number => (v < 0 ? 0 : v > 1 ? 1 : v);

export function createYuNetPlugin(opts: YuNetOptions = {}): DetectorPlugin {
  const W = positiveInt('inputWidth', opts.inputWidth ?? 320);
  const H = positiveInt('inputHeight', opts.inputHeight ?? 320);
  const levels = STRIDES.map((s) => ({ s, gw: Math.floor(W / s), gh: Math.floor(H / s) }));
  const outputs: TensorSpec[] = levels.flatMap(({ s, gw, gh }) => [
    { name: `cls_${s}`, dims: [null, gw * gh, 1] },
    { name: `obj_${s}`, dims: [null, gw * gh, 1] },
    { name: `bbox_${s}`, dims: [null, gw * gh, 4] },
    { name: `kps_${s}`, dims: [null, gw * gh, 10] },
  ]);
  const resize = createResizer({
    width: W,
    height: H,
    mode: 'letterbox-tl',
    padValue: 0,
    channelOrder: 'bgr',
    scale: 1,
    mean: 0,
  });

  function decode(out: TensorMap, meta: LetterboxMeta, o: DecodeOptions): Detection[] {
    const thr = o.scoreThreshold;
    const found: Detection[] = [];
    for (const { s, gw, gh } of levels) {
      const n = gw * gh;
      const cls = requireOutput(out, `cls_${s}`, n).data;
      const obj = requireOutput(out, `obj_${s}`, n).data;
      const bbox = requireOutput(out, `bbox_${s}`, n * 4).data;
      const kps = requireOutput(out, `kps_${s}`, n * 10).data;
      for (let i = 0; i < n; i++) {
        const score = Math.sqrt(clamp01(cls[i]!) * clamp01(obj[i]!));
        if (!(score >= thr)) continue;
        const gx = i % gw;
        const gy = (i - gx) / gw;
        const b = i * 4;
        const cx = (gx + bbox[b]!) * s;
        const cy = (gy + bbox[b + 1]!) * s;
        const w = Math.exp(bbox[b + 2]!) * s;
        const h = Math.exp(bbox[b + 3]!) * s;
        const box = inputBoxToFrame(meta, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2);
        if (box.w <= 0 || box.h <= 0) continue;
        const landmarks: Point[] = [];
        for (let k = 0; k < 5; k++) {
          const p = i * 10 + k * 2;
          landmarks.push(inputPointToFrame(meta, (gx + kps[p]!) * s, (gy + kps[p + 1]!) * s));
        }
        found.push({ classId: 0, label: 'face', score, box, landmarks });
      }
    }
    return suppress(found, o);
  }

  return {
    type: 'yunet',
    inputName: opts.inputName ?? 'input',
    inputWidth: W,
    inputHeight: H,
    classNames: Object.freeze(['face']),
    outputs,
    defaults: { scoreThreshold: 0.7, nmsIou: 0.3, maxDetections: 100 },
    preprocess: (frame: RgbFrame, into?: Float32Array) => resize(frame, into),
    geometry: resize.geometry,
    decode,
  };
}
