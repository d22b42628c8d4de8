import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TENANT_ID_PATTERN } from '../auth/principal.js';
import { VigilError } from '../lib/errors.js';

export const SHA256_RE = /^[0-9a-f]{64}$/;

export interface StoredModel {
  sha256: string;
  size: number;
  storedAt: Date;
}

export class ModelStoreError extends VigilError {
  constructor(code: 'VALIDATION_FAILED' | 'PAYLOAD_TOO_LARGE' | 'UNAVAILABLE', message: string) {
    super(code, message, code === 'UNAVAILABLE');
  }
}

/**
 * Content-addressed model files, one store per tenant: `<dir>/<tenant>/<sha256>`. A tenant lists, uploads and
 * serves its own models only (the same bytes uploaded by two tenants are two files): a model may be a
 * tenant's own work, and its hash must not be a key to another tenant's copy. Files directly under `<dir>`
 * (the layout before issue 12) belong to no tenant and are never served: upload them again per tenant.
 * An upload streams to a temporary file while it is hashed and counted; only a complete file whose hash is the
 * one named is renamed into place (atomically).
 */
export class ModelStore {
  constructor(
    private readonly dir: string | undefined,
    readonly maxBytes: number,
  ) {}

  /** The tenant's folder. Tenant ids come from a verified token or the registry; checked again all the same. */
  private root(tenantId: string): string {
    if (!this.dir)
      throw new ModelStoreError('UNAVAILABLE', 'the models store is not configured (models.dir)');
    if (!TENANT_ID_PATTERN.test(tenantId)) throw new ModelStoreError('VALIDATION_FAILED', 'not a tenant id');
    return join(this.dir, tenantId);
  }

  async put(
    tenantId: string,
    sha256: string,
    body: Readable,
  ): Promise<{ model: StoredModel; created: boolean }> {
    const root = this.root(tenantId);
    await mkdir(root, { recursive: true, mode: 0o700 });
    const tmp = join(root, `.upload-${randomUUID()}.tmp`);
    const hash = createHash('sha256');
    let size = 0;
    const max = this.maxBytes;
    try {
      await pipeline(
        body,
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            size += chunk.length;
            if (size > max)
              throw new ModelStoreError('PAYLOAD_TOO_LARGE', `the model is larger than ${max} bytes`);
            hash.update(chunk);
            yield chunk;
          }
        },
        createWriteStream(tmp, { mode: 0o600 }),
      );
      const actual = hash.digest('hex');
      if (actual !== sha256)
        throw new ModelStoreError(
          'VALIDATION_FAILED',
          `the uploaded bytes hash to ${actual}, not ${sha256}: upload refused`,
        );
      const target = join(root, sha256);
      const existed = await stat(target).then(
        () => true,
        () => false,
      );
      await rename(tmp, target);
      const st = await stat(target);
      return { model: { sha256, size: st.size, storedAt: st.mtime }, created: !existed };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async list(tenantId: string): Promise<StoredModel[]> {
    const root = this.root(tenantId);
    const names = await readdir(root).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    const out: StoredModel[] = [];
    for (const name of names.filter((n) => SHA256_RE.test(n)).sort()) {
      const st = await stat(join(root, name));
      out.push({ sha256: name, size: st.size, storedAt: st.mtime });
    }
    return out;
  }

  /** The file of a model the tenant stored, and its size, or null. */
  async locate(tenantId: string, sha256: string): Promise<{ path: string; size: number } | null> {
    if (!SHA256_RE.test(sha256) || !this.dir || !TENANT_ID_PATTERN.test(tenantId)) return null;
    const path = join(this.dir, tenantId, sha256);
    try {
      const st = await stat(path);
      return st.isFile() ? { path, size: st.size } : null;
    } catch {
      return null;
    }
  }
}
