/**
 * Errors of the detect capability. Kept apart from model.ts so that the pure decoders can raise a shape error
 * without importing the runtime (and without an import cycle).
 */

export type ModelErrorCode =
  | 'MODEL_NOT_FOUND' // the file is not there (config points at nothing; an OTA fetch did not land)
  | 'MODEL_CHECKSUM' // the bytes are not the configured sha256 (tampered or partial download)
  | 'MODEL_INVALID' // onnxruntime cannot load it (corrupt, truncated, not ONNX, unsupported opset)
  | 'MODEL_SHAPE' // it loads, but its inputs/outputs are not what the configured `type` expects
  | 'MODEL_DISPOSED' // detect() after dispose(): a config change removed the model
  | 'MODEL_WORKER'; // a detect worker thread died mid-frame (it is restarted; the frame is lost)

/** A model that cannot be used as configured. Not retryable: the same file will fail the same way. */
export class ModelError extends Error {
  override readonly name = 'ModelError';
  readonly retryable = false;
  constructor(
    readonly code: ModelErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * detect() found the model's queue full: the caller drops this frame and counts it (principle 4: drop frames
 * before events). Retryable: the next frame will likely find room.
 */
export class ModelBusyError extends Error {
  override readonly name = 'ModelBusyError';
  readonly code = 'MODEL_BUSY';
  readonly retryable = true;
  constructor(
    readonly model: string,
    readonly maxQueue: number,
  ) {
    super(`model "${model}" is busy: ${maxQueue} detect calls already waiting`);
  }
}
