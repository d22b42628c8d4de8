export { CameraSim, checkCameraSimPrerequisites, DEFAULT_PYTHON } from './camera-sim.js';
export type { CameraSimMount, CameraSimOptions } from './camera-sim.js';
