/**
 * YOLOX (Megvii), as exported by the official demo: decoded-in-graph head, one row per anchor point.
 *
 * Input  `images` [1,3,416,416]: letterbox into the TOP-LEFT corner, pad 114, BGR, raw 0-255 (no /255: the
 *        official weights were trained without normalisation).
 * Output `output` [1,N,5+C], N = sum over strides 8,16,32 of (W/s)*(H/s) (3549 at 416), rows ordered by
 *        stride, then row-major over the grid. Row: cx,cy offsets and log w,h in stride units, objectness,
 *        C class scores (objectness and classes already sigmoid). score = obj * best class.
 */
import { COCO_CLASSES } from '../coco.js';
import { createResizer, inputBoxToFrame } from '../preprocess.js';
import type {
  DecodeOptions,
  Detection,
  DetectorPlugin,
  LetterboxMeta,
  RgbFrame,
  TensorMap,
} from '../types.js';
import { argmax, labelsOf, positiveInt, requireOutput, suppress } from './common.js';

export interface YoloxOptions {
  inputWidth?: number;
  inputHeight?: number;
  classNames?: readonly string[];
  inputName?: string;
  outputName?: string;
}

const STRIDES = [8, 16, 32] as const;

export function createYoloxPlugin(opts: YoloxOptions = {}): DetectorPlugin {
  const W = positiveInt('inputWidth', opts.inputWidth ?? 416);
  const H = positiveInt('inputHeight', opts.inputHeight ?? 416);
  const classNames = Object.freeze([...(opts.classNames ?? COCO_CLASSES)]);
  const labels = labelsOf(classNames);
  const C = classNames.length;
  const row = 5 + C;
  const inputName = opts.inputName ?? 'images';
  const outputName = opts.outputName ?? 'output';
  const grids = STRIDES.map((s) => ({ s, gw: Math.floor(W / s), gh: Math.floor(H / s) }));
  const anchors = grids.reduce((n, g) => n + g.gw * g.gh, 0);
  const resize = createResizer({
    width: W,
    height: H,
    mode: 'letterbox-tl',
    padValue: 114,
    channelOrder: 'bgr',
    scale: 1,
    mean: 0,
  });

  function decode(outputs: TensorMap, meta: LetterboxMeta, o: DecodeOptions): Detection[] {
    const { data } = requireOutput(outputs, outputName, anchors * row);
    const thr = o.scoreThreshold;
    const found: Detection[] = [];
    let i = 0;
    for (const { s, gw, gh } of grids) {
      for (let gy = 0; gy < gh; gy++) {
        for (let gx = 0; gx < gw; gx++, i++) {
          const base = i * row;
          const obj = data[base + 4]!;
          if (obj < thr) continue; // class scores are <= 1, so the product cannot reach thr either
          const [cls, clsScore] = argmax(data, base + 5, C, 1);
          const score = obj * clsScore;
          if (!(score >= thr)) continue;
          const cx = (data[base]! + gx) * s;
          const cy = (data[base + 1]! + gy) * s;
          const w = Math.exp(data[base + 2]!) * s;
          const h = Math.exp(data[base + 3]!) * s;
          const box = inputBoxToFrame(meta, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2);
          if (box.w <= 0 || box.h <= 0) continue; // entirely in the padding
          found.push({ classId: cls, label: labels[cls]!, score, box });
        }
      }
    }
    return suppress(found, o);
  }

  return {
    type: 'yolox',
    inputName,
    inputWidth: W,
    inputHeight: H,
    classNames,
    outputs: [{ name: outputName, dims: [null, anchors, row] }],
    defaults: { scoreThreshold: 0.3, nmsIou: 0.45, maxDetections: 100 },
    preprocess: (frame: RgbFrame, into?: Float32Array) => resize(frame, into),
    geometry: resize.geometry,
    decode,
  };
}
