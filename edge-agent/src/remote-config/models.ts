/**
 * Models OTA: a model named by a config is the file <dataDir>/models/<sha256>. A missing one is fetched
 * (gRPC FetchModel over the device's mTLS identity), resumed from the bytes already received after an
 * interruption, hash-verified, and only then renamed into place: a file under its final name always has
 * the hash it is named by.
 */
import { createHash } from 'node:crypto';
import {
  createReadStream,
  existsSync,
  mkdirSync,
  openSync,
  closeSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
  fsyncSync,
} from 'node:fs';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { DeviceServiceClient, type ModelSpec } from '@vigil/proto';
import type { DeviceIdentity } from '../identity/index.js';
import { modelFilePath } from './translate.js';

/** Streams the model file of that hash from `offset` on, chunk by chunk. */
export type ModelFetcher = (
  sha256: string,
  offset: number,
) => AsyncIterable<{ offset: bigint; data: Uint8Array }>;

const ATTEMPTS = 3;

async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Makes every model file of `models` present locally (fetching what is missing); throws naming the model. */
export async function ensureModelFiles(
  dataDir: string,
  models: readonly ModelSpec[],
  fetch: ModelFetcher | undefined,
  log: Logger,
): Promise<void> {
  for (const m of models) {
    if (!/^[0-9a-f]{64}$/.test(m.sha256)) throw new Error(`model "${m.name}" has no valid sha256`);
    const dest = modelFilePath(dataDir, m.sha256);
    if (existsSync(dest)) continue;
    if (!fetch)
      throw new Error(`model "${m.name}" (${m.sha256}) is not on this device and cannot be fetched`);
    mkdirSync(join(dataDir, 'models'), { recursive: true });
    const part = `${dest}.part`;
    let lastErr: unknown;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const offset = existsSync(part) ? statSync(part).size : 0;
      try {
        const fd = openSync(part, 'a');
        try {
          let at = offset;
          for await (const chunk of fetch(m.sha256, offset)) {
            if (Number(chunk.offset) !== at) throw new Error(`chunk at ${chunk.offset}, expected ${at}`);
            writeSync(fd, chunk.data);
            at += chunk.data.length;
          }
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        lastErr = undefined;
        break;
      } catch (err) {
        lastErr = err;
        log.warn({ err, model: m.name, attempt }, 'model download interrupted; resuming');
      }
    }
    if (lastErr) throw new Error(`model "${m.name}" download failed: ${(lastErr as Error).message}`);
    const got = await fileSha256(part);
    if (got !== m.sha256) {
      rmSync(part, { force: true });
      throw new Error(`model "${m.name}" hash mismatch: expected ${m.sha256}, got ${got}`);
    }
    renameSync(part, dest);
    log.info({ model: m.name, sha256: m.sha256 }, 'model fetched');
  }
}

/** FetchModel over gRPC with the device's client certificate. */
export function grpcModelFetcher(identity: () => DeviceIdentity, endpoint?: string): ModelFetcher {
  return async function* (sha256, offset) {
    const id = identity();
    const m = id.material;
    const creds = credentials.createSsl(Buffer.from(m.caPem), Buffer.from(m.keyPem), Buffer.from(m.certPem));
    const client = new DeviceServiceClient(endpoint ?? id.grpcEndpoint, creds);
    try {
      const stream = client.fetchModel({ sha256, offset: BigInt(offset) });
      for await (const chunk of stream as AsyncIterable<{ offset: bigint; data: Uint8Array }>) yield chunk;
    } finally {
      client.close();
    }
  };
}
