/**
 * Ultra-Light-Fast-Generic-Face-Detector (Linzaer) RFB/slim: priors are decoded inside the graph.
 *
 * Input  `input` [1,3,240,320]: stretch, RGB, (v - 127) / 128.
 * Outputs `scores` [1,N,2] (softmax applied, index 1 = face) and `boxes` [1,N,4] corners x1,y1,x2,y2
 *         normalised 0..1 to the input. N = priors of the input size (4420 at 320x240, 17640 at 640x480).
 */
import { createResizer, inputBoxToFrame } from '../preprocess.js';
import type {
  DecodeOptions,
  Detection,
  DetectorPlugin,
  LetterboxMeta,
  RgbFrame,
  TensorMap,
} from '../types.js';
import { positiveInt, requireOutput, suppress } from './common.js';

export interface UltraFaceOptions {
  inputWidth?: number;
  inputHeight?: number;
  inputName?: string;
}

/** Prior count of the upstream generator: strides 8,16,32,64 with 3,2,2,3 min sizes per cell. */
export function ultraFacePriors(width: number, height: number): number {
  const strides = [8, 16, 32, 64];
  const perCell = [3, 2, 2, 3];
  return strides.reduce((n, s, i) => n + Math.ceil(width / s) * Math.ceil(height / s) * perCell[i]!, 0);
}

export function createUltraFacePlugin(opts: UltraFaceOptions = {}): DetectorPlugin {
  const W = positiveInt('inputWidth', opts.inputWidth ?? 320);
  const H = positiveInt('inputHeight', opts.inputHeight ?? 240);
  const N = ultraFacePriors(W, H);
  const resize = createResizer({
    width: W,
    height: H,
    mode: 'stretch',
    padValue: 0,
    channelOrder: 'rgb',
    scale: 1 / 128,
    mean: 127,
  });

  function decode(outputs: TensorMap, meta: LetterboxMeta, o: DecodeOptions): Detection[] {
    const scores = requireOutput(outputs, 'scores', N * 2).data;
    const boxes = requireOutput(outputs, 'boxes', N * 4).data;
    const thr = o.scoreThreshold;
    const found: Detection[] = [];
    for (let i = 0; i < N; i++) {
      const score = scores[i * 2 + 1]!;
      if (!(score >= thr)) continue;
      const b = i * 4;
      const box = inputBoxToFrame(
        meta,
        boxes[b]! * W,
        boxes[b + 1]! * H,
        boxes[b + 2]! * W,
        boxes[b + 3]! * H,
      );
      if (box.w <= 0 || box.h <= 0) continue;
      found.push({ classId: 0, label: 'face', score, box });
    }
    return suppress(found, o);
  }

  return {
    type: 'ultraface',
    inputName: opts.inputName ?? 'input',
    inputWidth: W,
    inputHeight: H,
    classNames: Object.freeze(['face']),
    outputs: [
      { name: 'scores', dims: [null, N, 2] },
      { name: 'boxes', dims: [null, N, 4] },
    ],
    defaults: { scoreThreshold: 0.7, nmsIou: 0.3, maxDetections: 100 },
    preprocess: (frame: RgbFrame, into?: Float32Array) => resize(frame, into),
    geometry: resize.geometry,
    decode,
  };
}
