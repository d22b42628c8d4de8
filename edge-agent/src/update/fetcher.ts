import { credentials, status as grpcStatus } from '@grpc/grpc-js';
import { DeviceServiceClient } from '@vigil/proto';
import { BaseFetcher } from 'tuf-js';
import { DownloadHTTPError, DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import type { DeviceIdentity } from '../identity/index.js';

/** Streams one repository file (`metadata/...`, `targets/...`), refusing one larger than `maxBytes`. */
export type ReleaseFileSource = (path: string, maxBytes: number) => AsyncIterable<{ data: Uint8Array }>;

/** The base URL tuf-js is given; only its path matters (the source decides where bytes come from). */
export const REPOSITORY_URL = 'vigil-release://cloud/';

/** FetchRelease over gRPC with the device's client certificate (the same identity as FetchModel). */
export function grpcReleaseSource(
  identity: () => Pick<DeviceIdentity, 'material' | 'grpcEndpoint'>,
  endpoint?: string,
): ReleaseFileSource {
  return async function* (path, maxBytes) {
    const id = identity();
    const m = id.material;
    const creds = credentials.createSsl(Buffer.from(m.caPem), Buffer.from(m.keyPem), Buffer.from(m.certPem));
    const client = new DeviceServiceClient(endpoint ?? id.grpcEndpoint, creds);
    try {
      const stream = client.fetchRelease({ path, offset: 0n, maxBytes: BigInt(maxBytes) });
      for await (const chunk of stream as AsyncIterable<{ data: Uint8Array }>) yield chunk;
    } finally {
      client.close();
    }
  };
}

/**
 * tuf-js's fetcher over a {@link ReleaseFileSource}. tuf-js counts bytes against each file's limit too; the
 * limit also goes to the cloud so that an oversized file is refused before it is sent. A missing file is an
 * HTTP-style 404 to tuf-js (how it learns there is no newer root).
 */
export class SourceFetcher extends BaseFetcher {
  private readonly limits = new Map<string, number>();

  constructor(private readonly source: ReleaseFileSource) {
    super();
  }

  override downloadFile<T>(
    url: string,
    maxLength: number,
    handler: (file: string) => Promise<T>,
  ): Promise<T> {
    this.limits.set(url, maxLength);
    return super.downloadFile(url, maxLength, handler).finally(() => this.limits.delete(url));
  }

  fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    if (!url.startsWith(REPOSITORY_URL)) return Promise.reject(new Error(`not a repository URL: ${url}`));
    const path = decodeURIComponent(url.slice(REPOSITORY_URL.length));
    const iterator = this.source(path, this.limits.get(url) ?? 0)[Symbol.asyncIterator]();
    // The first chunk (or error) is awaited here, so a missing file fails fetch() itself, as tuf-js expects.
    return iterator.next().then(
      (first) =>
        new ReadableStream<Uint8Array<ArrayBuffer>>({
          start(controller) {
            if (first.done) controller.close();
            else controller.enqueue(new Uint8Array(first.value.data));
          },
          async pull(controller) {
            try {
              const next = await iterator.next();
              if (next.done) controller.close();
              else controller.enqueue(new Uint8Array(next.value.data));
            } catch (err) {
              controller.error(mapError(err));
            }
          },
          async cancel() {
            await iterator.return?.();
          },
        }),
      (err: unknown) => {
        throw mapError(err);
      },
    );
  }
}

function mapError(err: unknown): unknown {
  const code = (err as { code?: unknown }).code;
  if (code === grpcStatus.NOT_FOUND) return new DownloadHTTPError('not found in the release repository', 404);
  if (code === grpcStatus.RESOURCE_EXHAUSTED) return new DownloadLengthMismatchError((err as Error).message);
  return err;
}
