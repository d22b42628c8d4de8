/** Messages between a model pool (worker-pool.ts) and its detect workers (detect-worker.ts). Pure types. */
import type { PluginOptions } from './plugins/index.js';
import type { DetectResult, ModelSpec } from './model.js';
import type { DecodeOptions } from './types.js';

export type ToWorker =
  | { type: 'init'; spec: ModelSpec }
  /**
   * The frame is in the worker's shared input buffer (`input`, sent when it is new or grew): the owner copies a
   * frame into it only while the worker is idle, so nobody writes it while the worker reads.
   */
  | {
      type: 'detect';
      id: number;
      width: number;
      height: number;
      opts: Partial<DecodeOptions> | undefined;
      /** Set: the buffer holds only the frame's scaled copy (RgbFrame.scaled), rows packed, not the frame. */
      scaled?: { width: number; height: number };
      input?: SharedArrayBuffer;
    }
  | { type: 'dispose' };

export type FromWorker =
  | { type: 'ready'; sha256: string; pluginOptions: PluginOptions }
  | { type: 'result'; id: number; result: DetectResult }
  | { type: 'failed'; id: number | null; code: string | undefined; message: string };
