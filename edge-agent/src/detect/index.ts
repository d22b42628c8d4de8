/** The detect capability: models, plugins per family, NMS and per-camera filtering. */
export type {
  DecodeOptions,
  Detection,
  DetectorPlugin,
  DetectorType,
  LetterboxMeta,
  RgbFrame,
  ScaledImage,
  TensorMap,
  TensorSpec,
} from './types.js';
export { ModelBusyError, ModelError } from './errors.js';
export type { ModelErrorCode } from './errors.js';
export { loadModel } from './model.js';
export type { DetectResult, LoadedModel, LoadModelOptions, ModelSpec } from './model.js';
export { defaultWorkers, loadDetector, loadModelPool } from './worker-pool.js';
export { ModelRegistry } from './registry.js';
export type { ModelFailure, ModelRegistryOptions } from './registry.js';
export { compileFilter, filterDetections, minThreshold } from './filter.js';
export type { DetectionFilter } from './filter.js';
export { nms } from './nms.js';
export type { NmsCandidate, NmsOptions } from './nms.js';
export {
  createResizer,
  inputBoxToFrame,
  inputPointToFrame,
  letterboxMeta,
  resizeToTensor,
} from './preprocess.js';
export type { ResizeMode, ResizeOptions } from './preprocess.js';
export { COCO_CLASSES, DARKNET_COCO_CLASSES, canonicalLabel } from './coco.js';
export {
  DETECTOR_TYPES,
  createFastestDetPlugin,
  createPlugin,
  createUltraFacePlugin,
  createYoloV8Plugin,
  createYoloxPlugin,
  createYuNetPlugin,
  ultraFacePriors,
} from './plugins/index.js';
export type {
  FastestDetOptions,
  PluginOptions,
  UltraFaceOptions,
  YoloV8Options,
  YoloxOptions,
  YuNetOptions,
} from './plugins/index.js';
