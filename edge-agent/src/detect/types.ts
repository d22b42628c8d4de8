/**
 * Shared types of the detect capability. Pure: no I/O, no onnxruntime import, so the decoders and their tests
 * stay independent of the runtime (a plugin only sees plain Float32Arrays and dims).
 */
import type { Box, Point } from '../lib/geometry.js';

/** A packed rgb24 frame (width*height*3 bytes, row-major, no stride padding) at the camera's analysis size. */
export interface RgbFrame {
  data: Uint8Array;
  width: number;
  height: number;
  /**
   * The same picture already scaled (by ffmpeg, from the decoded source) to a model's content size: a plugin
   * whose letterbox content for this frame size is exactly `width` x `height` then only converts and pads
   * instead of resizing. Any other model ignores it and resizes `data`.
   */
  scaled?: ScaledImage;
}

/** An rgb24 image inside a larger buffer: rows of `stride` bytes, the image in the first width*3 of each. */
export interface ScaledImage {
  data: Uint8Array;
  width: number;
  height: number;
  stride: number;
}

/** One detection, box normalised to the frame (0..1, top-left origin), label in the canonical vocabulary. */
export interface Detection {
  /** Index in the model's own class list (so the model's native name is `plugin.classNames[classId]`). */
  classId: number;
  /** Canonical label shared by every model (COCO names, "face" for face detectors): what events carry. */
  label: string;
  score: number;
  box: Box;
  /** Face landmarks when the model gives them (YuNet: right eye, left eye, nose, right and left mouth corner). */
  landmarks?: Point[];
}

/** Model outputs by name, as plain arrays: what decoders consume (built from onnxruntime tensors in model.ts). */
export type TensorMap = Record<string, { data: Float32Array; dims: readonly number[] }>;

/**
 * How the frame was placed into the model input, to map boxes back. The resized image occupies
 * [padLeft, padLeft+contentWidth) x [padTop, padTop+contentHeight) of the input; the rest is padding.
 * Mapping uses the content size (not a nominal ratio) so that it inverts the resize exactly even when the
 * content size was rounded to whole pixels.
 */
export interface LetterboxMeta {
  frameWidth: number;
  frameHeight: number;
  inputWidth: number;
  inputHeight: number;
  contentWidth: number;
  contentHeight: number;
  /** Input pixels per frame pixel (contentWidth / frameWidth). */
  scaleX: number;
  scaleY: number;
  padLeft: number;
  padTop: number;
  padRight: number;
  padBottom: number;
}

export interface DecodeOptions {
  /** Candidates scoring below this are dropped before NMS. */
  scoreThreshold: number;
  /** Greedy NMS drops a box overlapping a better one of the same class by more than this IoU. */
  nmsIou: number;
  /** Hard cap on detections returned per frame (bounded everything). */
  maxDetections: number;
}

/** Name and expected dims of a model tensor; `null` accepts any size (symbolic batch, dynamic anchors). */
export interface TensorSpec {
  name: string;
  dims: readonly (number | null)[];
}

export type DetectorType = 'yolox' | 'fastestdet' | 'ultraface' | 'yunet' | 'yolov8';

/**
 * One model family: how to turn a frame into the input tensor and the outputs into detections.
 * Plugins hold no session; model.ts runs them. `preprocess` writes into `into` when given (reuse, no
 * per-frame allocation) and `decode` is pure.
 */
export interface DetectorPlugin {
  readonly type: DetectorType;
  readonly inputName: string;
  readonly inputWidth: number;
  readonly inputHeight: number;
  /** The model's own class names, in output order (e.g. darknet spelling for FastestDet). */
  readonly classNames: readonly string[];
  /** Outputs the decoder reads, checked against the model when it loads. */
  readonly outputs: readonly TensorSpec[];
  /** Sensible thresholds for this family (from MANIFEST); callers may override per call. */
  readonly defaults: DecodeOptions;
  preprocess(frame: RgbFrame, into?: Float32Array): { tensor: Float32Array; meta: LetterboxMeta };
  /** Where a frame of this size lands in the input (its content size is what `RgbFrame.scaled` must have). */
  geometry(frameWidth: number, frameHeight: number): LetterboxMeta;
  decode(outputs: TensorMap, meta: LetterboxMeta, opts: DecodeOptions): Detection[];
}
