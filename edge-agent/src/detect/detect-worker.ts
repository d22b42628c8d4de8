/**
 * A detect worker thread: one onnxruntime session (loadModel), preprocess + run + decode for each frame the
 * owning pool hands it. session.run is synchronous in onnxruntime-node, so running it here keeps the agent's
 * main thread (ffmpeg pipes, tracking, outbox, uplink) free for the whole inference.
 */
import { parentPort } from 'node:worker_threads';
import { ModelError } from './errors.js';
import { loadModel, type LocalModel } from './model.js';
import type { RgbFrame } from './types.js';
import type { FromWorker, ToWorker } from './worker-protocol.js';

const port = parentPort;
if (!port) throw new Error('detect-worker.ts runs as a worker thread (see worker-pool.ts)');

const send = (m: FromWorker): void => port.postMessage(m);
const failure = (id: number | null, err: unknown): FromWorker => ({
  type: 'failed',
  id,
  code: (err as { code?: string }).code,
  message: err instanceof Error ? err.message : String(err),
});

let model: LocalModel | undefined;
let input: Uint8Array = new Uint8Array(0);

port.on('message', (m: ToWorker) => {
  void handle(m);
});

async function handle(m: ToWorker): Promise<void> {
  switch (m.type) {
    case 'init':
      try {
        // One caller (the pool) and one frame at a time: no queue here.
        model = await loadModel(m.spec, { maxQueue: 0 });
        send({ type: 'ready', sha256: model.sha256, pluginOptions: model.pluginOptions });
      } catch (err) {
        send(failure(null, err));
      }
      return;
    case 'detect':
      try {
        if (m.input) input = new Uint8Array(m.input);
        if (!model) throw new ModelError('MODEL_DISPOSED', 'detect worker has no model');
        // Views on the shared buffer: no copy between the owner's frame and the preprocess loop.
        const s = m.scaled;
        const frame: RgbFrame = s
          ? {
              data: input.subarray(0, 0),
              width: m.width,
              height: m.height,
              scaled: { data: input.subarray(0, s.width * s.height * 3), ...s, stride: s.width * 3 },
            }
          : { data: input.subarray(0, m.width * m.height * 3), width: m.width, height: m.height };
        const result = await model.detect(frame, m.opts);
        send({ type: 'result', id: m.id, result });
      } catch (err) {
        send(failure(m.id, err));
      }
      return;
    case 'dispose':
      await model?.dispose();
      model = undefined;
      process.exit(0); // ends this thread only
      return;
  }
}
