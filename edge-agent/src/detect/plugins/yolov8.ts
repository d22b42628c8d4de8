/**
 * Generic YOLOv8-style head for user models (ultralytics `export format=onnx`, also YOLO11 and v5u/v9 exports
 * that share the head): no objectness, class scores already sigmoid.
 *
 * Input  [1,3,H,W] (name and size read from the model when loaded): letterbox pad 114, RGB, /255.
 *        ultralytics centres the letterbox; 'tl' is offered for exports preprocessed like YOLOX.
 * Output [1,4+C,N] channel-major: cx,cy,w,h in input pixels, then C class scores. score = best class.
 */
import { COCO_CLASSES } from '../coco.js';
import { ModelError } from '../errors.js';
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

export interface YoloV8Options {
  inputWidth?: number;
  inputHeight?: number;
  /** Defaults to COCO when the head has 80 classes, else class0..classN-1 (set them in the model config). */
  classNames?: readonly string[];
  /** Number of classes when classNames is not given (model.ts derives it from the output dims). */
  numClasses?: number;
  letterbox?: 'tl' | 'center';
  inputName?: string;
  outputName?: string;
}

export function createYoloV8Plugin(opts: YoloV8Options = {}): DetectorPlugin {
  const W = positiveInt('inputWidth', opts.inputWidth ?? 640);
  const H = positiveInt('inputHeight', opts.inputHeight ?? 640);
  const C = positiveInt('class count', opts.classNames?.length ?? opts.numClasses ?? 80);
  const classNames = Object.freeze(
    opts.classNames
      ? [...opts.classNames]
      : C === COCO_CLASSES.length
        ? [...COCO_CLASSES]
        : Array.from({ length: C }, (_, i) => `class${i}`),
  );
  const labels = labelsOf(classNames);
  const outputName = opts.outputName ?? 'output0';
  const resize = createResizer({
    width: W,
    height: H,
    mode: opts.letterbox === 'tl' ? 'letterbox-tl' : 'letterbox-center',
    padValue: 114,
    channelOrder: 'rgb',
    scale: 1 / 255,
    mean: 0,
  });

  function decode(outputs: TensorMap, meta: LetterboxMeta, o: DecodeOptions): Detection[] {
    const t = requireOutput(outputs, outputName, 4 + C);
    // N comes from the tensor: it depends on the export (strides, input size) and may be symbolic.
    const n = Math.floor(t.data.length / (4 + C));
    if (t.dims.length !== 3 || t.dims[1] !== 4 + C || t.dims[2] !== n)
      throw new ModelError(
        'MODEL_SHAPE',
        `model output "${outputName}" is [${t.dims.join(',')}], expected [1,${4 + C},N] (cx,cy,w,h + ${C} classes)`,
      );
    const { data } = t;
    const thr = o.scoreThreshold;
    const found: Detection[] = [];
    for (let i = 0; i < n; i++) {
      const [cls, score] = argmax(data, 4 * n + i, C, n);
      if (!(score >= thr)) continue;
      const cx = data[i]!;
      const cy = data[n + i]!;
      const w = data[2 * n + i]!;
      const h = data[3 * n + i]!;
      const box = inputBoxToFrame(meta, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2);
      if (box.w <= 0 || box.h <= 0) continue;
      found.push({ classId: cls, label: labels[cls]!, score, box });
    }
    return suppress(found, o);
  }

  return {
    type: 'yolov8',
    inputName: opts.inputName ?? 'images',
    inputWidth: W,
    inputHeight: H,
    classNames,
    outputs: [{ name: outputName, dims: [null, 4 + C, null] }],
    defaults: { scoreThreshold: 0.25, nmsIou: 0.45, maxDetections: 100 },
    preprocess: (frame: RgbFrame, into?: Float32Array) => resize(frame, into),
    geometry: resize.geometry,
    decode,
  };
}
