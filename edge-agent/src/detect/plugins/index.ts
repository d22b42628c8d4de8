/** Plugin factory by `type`: the one place that knows every model family. */
import type { DetectorPlugin, DetectorType } from '../types.js';
import { createFastestDetPlugin } from './fastestdet.js';
import { createUltraFacePlugin } from './ultraface.js';
import { createYoloV8Plugin } from './yolov8.js';
import { createYoloxPlugin } from './yolox.js';
import { createYuNetPlugin } from './yunet.js';

export interface PluginOptions {
  inputWidth?: number;
  inputHeight?: number;
  classNames?: readonly string[];
  /** yolov8 only: class count read from the output dims when classNames are not configured. */
  numClasses?: number;
  /** yolov8 only. */
  letterbox?: 'tl' | 'center';
  /** yolov8 only: names read from the model (user exports differ). */
  inputName?: string;
  outputName?: string;
}

export const DETECTOR_TYPES: readonly DetectorType[] = [
  'yolox',
  'fastestdet',
  'ultraface',
  'yunet',
  'yolov8',
];

export function createPlugin(type: DetectorType, o: PluginOptions = {}): DetectorPlugin {
  switch (type) {
    case 'yolox':
      return createYoloxPlugin(o);
    case 'fastestdet':
      return createFastestDetPlugin(o);
    case 'ultraface':
      return createUltraFacePlugin(o);
    case 'yunet':
      return createYuNetPlugin(o);
    case 'yolov8':
      return createYoloV8Plugin(o);
  }
}

export {
  createFastestDetPlugin,
  createUltraFacePlugin,
  createYoloV8Plugin,
  createYoloxPlugin,
  createYuNetPlugin,
};
export { ultraFacePriors } from './ultraface.js';
export type { FastestDetOptions } from './fastestdet.js';
export type { UltraFaceOptions } from './ultraface.js';
export type { YoloV8Options } from './yolov8.js';
export type { YoloxOptions } from './yolox.js';
export type { YuNetOptions } from './yunet.js';
