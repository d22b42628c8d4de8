/**
 * FastestDet (dog-qiuqiu): a single stride-16 anchor-free grid head, darknet COCO class names.
 *
 * Input  `input.1` [1,3,352,352]: stretch (no letterbox), BGR, value/255.
 * Output `758` [1,5+C,H/16,W/16] (channel-major). Per cell: ch0 objectness (sigmoid applied); ch1-2 centre
 *        offset, centre = (cell + tanh(v)) / grid; ch3-4 size = sigmoid(v), normalised to the image; ch5.. class
 *        scores (softmax applied). score = obj^0.6 * cls^0.4 (the weighting of the upstream demo).
 */
import { DARKNET_COCO_CLASSES } from '../coco.js';
import { createResizer, inputBoxToFrame } from '../preprocess.js';
import type {
  DecodeOptions,
  Detection,
  DetectorPlugin,
  LetterboxMeta,
  RgbFrame,
  TensorMap,
} from '../types.js';
import { argmax, labelsOf, positiveInt, requireOutput, sigmoid, suppress } from './common.js';

export interface FastestDetOptions {
  inputWidth?: number;
  inputHeight?: number;
  classNames?: readonly string[];
  inputName?: string;
  outputName?: string;
}

const STRIDE = 16;

export function createFastestDetPlugin(opts: FastestDetOptions = {}): DetectorPlugin {
  const W = positiveInt('inputWidth', opts.inputWidth ?? 352);
  const H = positiveInt('inputHeight', opts.inputHeight ?? 352);
  const classNames = Object.freeze([...(opts.classNames ?? DARKNET_COCO_CLASSES)]);
  const labels = labelsOf(classNames);
  const C = classNames.length;
  const gw = Math.floor(W / STRIDE);
  const gh = Math.floor(H / STRIDE);
  const plane = gw * gh;
  const inputName = opts.inputName ?? 'input.1';
  const outputName = opts.outputName ?? '758';
  const resize = createResizer({
    width: W,
    height: H,
    mode: 'stretch',
    padValue: 0,
    channelOrder: 'bgr',
    scale: 1 / 255,
    mean: 0,
  });

  function decode(outputs: TensorMap, meta: LetterboxMeta, o: DecodeOptions): Detection[] {
    const { data } = requireOutput(outputs, outputName, (5 + C) * plane);
    const thr = o.scoreThreshold;
    const found: Detection[] = [];
    for (let gy = 0; gy < gh; gy++) {
      for (let gx = 0; gx < gw; gx++) {
        const cell = gy * gw + gx;
        const obj = data[cell]!;
        // cls <= 1 so score <= obj^0.6: skip the class scan for cells that cannot pass.
        if (!(obj > 0) || Math.pow(obj, 0.6) < thr) continue;
        const [cls, clsScore] = argmax(data, 5 * plane + cell, C, plane);
        const score = Math.pow(obj, 0.6) * Math.pow(Math.max(0, clsScore), 0.4);
        if (!(score >= thr)) continue;
        const cx = ((gx + Math.tanh(data[plane + cell]!)) / gw) * W;
        const cy = ((gy + Math.tanh(data[2 * plane + cell]!)) / gh) * H;
        const w = sigmoid(data[3 * plane + cell]!) * W;
        const h = sigmoid(data[4 * plane + cell]!) * H;
        const box = inputBoxToFrame(meta, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2);
        if (box.w <= 0 || box.h <= 0) continue;
        found.push({ classId: cls, label: labels[cls]!, score, box });
      }
    }
    return suppress(found, o);
  }

  return {
    type: 'fastestdet',
    inputName,
    inputWidth: W,
    inputHeight: H,
    classNames,
    outputs: [{ name: outputName, dims: [null, 5 + C, gh, gw] }],
    defaults: { scoreThreshold: 0.65, nmsIou: 0.45, maxDetections: 100 },
    preprocess: (frame: RgbFrame, into?: Float32Array) => resize(frame, into),
    geometry: resize.geometry,
    decode,
  };
}
