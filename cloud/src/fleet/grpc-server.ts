import { open } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { DeviceServiceDefinition, type DeviceServiceServer, type FetchModelRequest } from '@vigil/proto';
import type { Logger } from 'pino';
import { Counter, Registry } from 'prom-client';
import type { ConfigIssuer } from '../config-ota/issuer.js';
import { SHA256_RE, type ModelStore } from '../config-ota/models.js';
import { VigilError } from '../lib/errors.js';
import type { FsReleaseRepository } from '../releases/repository.js';
import { EnrollmentTokenInvalidError } from './enrollment.js';
import type { DeviceIdentityService } from './identity-service.js';

/** Enroll/Renew messages are a CSR and a key: anything larger is refused before it is parsed. */
export const GRPC_MAX_MESSAGE_BYTES = 64 * 1024;

export interface GrpcServerOptions {
  host: string;
  port: number;
  /** The server's TLS certificate and key, and the fleet CA that device client certificates chain to. */
  certFile: string;
  keyFile: string;
  caFile: string;
  /** How often the files above are re-read (certificate rotation without a restart). */
  refreshIntervalMs?: number;
}

/** Size of the chunks FetchModel streams. */
export const FETCH_MODEL_CHUNK_BYTES = 64 * 1024;

export interface GrpcServerExtras {
  /** Serves FetchModel from this store; without it FetchModel is UNAVAILABLE. */
  models?: ModelStore | undefined;
  /** Which models a device may fetch: those its issued configs name; without it FetchModel serves nothing. */
  configs?: Pick<ConfigIssuer, 'namesModel'> | undefined;
  metrics?: Registry | undefined;
  /** Serves FetchRelease (the agent release repository); without it FetchRelease is UNAVAILABLE. */
  releases?: FsReleaseRepository | undefined;
}

/** A server stream of file chunks (FetchModel, FetchRelease: the same message shape). */
type ChunkCall = grpc.ServerWritableStream<unknown, { offset: bigint; data: Buffer; totalSize: bigint }>;

export interface RunningGrpcServer {
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * DeviceService over TLS on one port. Client certificates are requested but not required (Enroll has none
 * yet); Node verifies any that is presented against the fleet CA and its validity, and grpc-js hands the
 * handler a peer certificate only when that verification passed, so an expired or foreign certificate
 * looks exactly like none to Renew.
 */
export async function startGrpcServer(
  service: DeviceIdentityService,
  opts: GrpcServerOptions,
  log: Logger,
  extras: GrpcServerExtras = {},
): Promise<RunningGrpcServer> {
  const metrics = extras.metrics ?? new Registry();
  const fetches =
    (metrics.getSingleMetric('vigil_cloud_model_fetches_total') as Counter<'result'> | undefined) ??
    new Counter({
      name: 'vigil_cloud_model_fetches_total',
      help: 'FetchModel calls by result (ok, not_found, not_named, unauthenticated, invalid, error, cancelled)',
      labelNames: ['result'],
      registers: [metrics],
    });
  const releaseFetches = new Counter({
    name: 'vigil_cloud_release_fetches_total',
    help: 'FetchRelease calls by result (ok, not_found, too_large, unauthenticated, error, cancelled)',
    labelNames: ['result'],
    registers: [metrics],
  });
  const files = new grpc.experimental.FileWatcherCertificateProvider({
    certificateFile: opts.certFile,
    privateKeyFile: opts.keyFile,
    caCertificateFile: opts.caFile,
    refreshIntervalMs: opts.refreshIntervalMs ?? 60_000,
  });
  // The same provider for both roles (grpc-js 1.14 names the two parameters of this function the other way
  // round from the constructor it calls; passing one object makes the order irrelevant).
  const credentials = grpc.experimental.createCertificateProviderServerCredentials(files, files, false);
  const server = new grpc.Server({
    'grpc.max_receive_message_length': GRPC_MAX_MESSAGE_BYTES,
    'grpc.max_concurrent_streams': 100,
  });
  const impl: DeviceServiceServer = {
    enroll: (call, callback) => {
      respond(service.enroll(call.request), callback, log, 'enroll');
    },
    fetchModel: (call) => {
      const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
      void fetchModel(call, raw ? { raw } : undefined).then(
        (result) => fetches.inc({ result }),
        (err: unknown) => {
          const { code, details } = toStatus(err);
          if (code === grpc.status.INTERNAL) log.error({ err, method: 'fetchModel' }, 'FetchModel failed');
          fetches.inc({ result: code === grpc.status.UNAUTHENTICATED ? 'unauthenticated' : 'error' });
          call.emit('error', { code, details });
        },
      );
    },
    fetchRelease: (call) => {
      const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
      void fetchRelease(call, raw ? { raw } : undefined).then(
        (result) => releaseFetches.inc({ result }),
        (err: unknown) => {
          const { code, details } = toStatus(err);
          if (code === grpc.status.INTERNAL)
            log.error({ err, method: 'fetchRelease' }, 'FetchRelease failed');
          releaseFetches.inc({ result: code === grpc.status.UNAUTHENTICATED ? 'unauthenticated' : 'error' });
          call.emit('error', { code, details });
        },
      );
    },
    renew: (call, callback) => {
      const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
      respond(service.renew(raw ? { raw } : undefined, call.request), callback, log, 'renew');
    },
  };
  /**
   * Streams one release repository file to an authenticated device (any device of any tenant: every gateway runs
   * the agent, and TUF, not secrecy, protects what it installs); resolves with the result label.
   */
  async function fetchRelease(
    call: grpc.ServerWritableStream<{ path: string; offset: bigint; maxBytes: bigint }, unknown>,
    peer: { raw: Buffer } | undefined,
  ): Promise<string> {
    const device = await service.authenticateDevice(peer);
    const { path, offset, maxBytes } = call.request;
    const fail = (code: grpc.status, details: string, result: string): string => {
      call.emit('error', { code, details });
      return result;
    };
    const repo = extras.releases;
    if (!repo) return fail(grpc.status.UNAVAILABLE, 'the release repository is not configured', 'error');
    // The path is matched whole against the repository layout before it reaches the filesystem.
    const found = typeof path === 'string' && path.length <= 256 ? await repo.locate(path) : null;
    if (!found) return fail(grpc.status.NOT_FOUND, 'no such release repository file', 'not_found');
    if (maxBytes > 0n && BigInt(found.size) > maxBytes)
      return fail(
        grpc.status.RESOURCE_EXHAUSTED,
        `the file is ${found.size} bytes, more than the ${maxBytes} asked for`,
        'too_large',
      );
    if (offset > BigInt(found.size))
      return fail(grpc.status.OUT_OF_RANGE, 'offset is past the end of the file', 'invalid');
    log.debug({ tenant: device.tenantId, device: device.deviceId, path }, 'release fetch');
    return streamFile(call, found.path, found.size, Number(offset));
  }

  /** Streams one model to an authenticated device; resolves with the result label. */
  async function fetchModel(
    call: grpc.ServerWritableStream<FetchModelRequest, unknown>,
    peer: { raw: Buffer } | undefined,
  ): Promise<string> {
    const device = await service.authenticateDevice(peer);
    const { sha256, offset } = call.request;
    const fail = (code: grpc.status, details: string, result: string): string => {
      call.emit('error', { code, details });
      return result;
    };
    const models = extras.models;
    if (!models) return fail(grpc.status.UNAVAILABLE, 'the models store is not configured', 'error');
    // Only a model that a config issued to this device names, from its own tenant's store; anything else is
    // the same NOT_FOUND (a hash must not tell whether another tenant or device has the model).
    if (!SHA256_RE.test(sha256))
      return fail(grpc.status.INVALID_ARGUMENT, 'sha256 must be 64 lowercase hex digits', 'invalid');
    const notFound = `no model with sha256 ${sha256} for this device`;
    if (!(await extras.configs?.namesModel(device.tenantId, device.deviceId, sha256)))
      return fail(grpc.status.NOT_FOUND, notFound, 'not_named');
    const found = await models.locate(device.tenantId, sha256);
    if (!found) return fail(grpc.status.NOT_FOUND, notFound, 'not_found');
    if (offset > BigInt(found.size))
      return fail(grpc.status.OUT_OF_RANGE, 'offset is past the end of the model', 'invalid');
    log.info({ tenant: device.tenantId, device: device.deviceId, sha256, offset }, 'model fetch');
    return streamFile(call, found.path, found.size, Number(offset));
  }

  server.addService(DeviceServiceDefinition, impl);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${opts.host}:${opts.port}`, credentials, (err, p) => (err ? reject(err) : resolve(p)));
  });
  log.info({ address: `${opts.host}:${port}` }, 'gRPC DeviceService listening (TLS)');
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        // Finish calls in flight for up to 5 s, then cut the rest.
        const force = setTimeout(() => server.forceShutdown(), 5_000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

/** Writes `file` from `offset` in chunks, with backpressure; resolves with the result label. */
async function streamFile(call: ChunkCall, file: string, size: number, offset: number): Promise<string> {
  const fh = await open(file, 'r');
  try {
    let pos = offset;
    const buf = Buffer.alloc(FETCH_MODEL_CHUNK_BYTES);
    while (pos < size) {
      if (call.cancelled) return 'cancelled';
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      const ok = call.write({
        offset: BigInt(pos),
        data: Buffer.from(buf.subarray(0, bytesRead)),
        totalSize: BigInt(size),
      });
      pos += bytesRead;
      if (!ok) await new Promise<void>((resolve) => call.once('drain', () => resolve()));
    }
  } finally {
    await fh.close();
  }
  call.end();
  return 'ok';
}

function respond<T>(result: Promise<T>, callback: grpc.sendUnaryData<T>, log: Logger, method: string): void {
  result.then(
    (value) => callback(null, value),
    (err: unknown) => {
      const { code, details } = toStatus(err);
      if (code === grpc.status.INTERNAL) log.error({ err, method }, 'DeviceService call failed');
      callback({ code, details });
    },
  );
}

/** The one place that maps identity errors to gRPC status codes (internal details are never sent). */
export function toStatus(err: unknown): { code: grpc.status; details: string } {
  if (err instanceof EnrollmentTokenInvalidError)
    return { code: grpc.status.UNAUTHENTICATED, details: err.message };
  if (err instanceof VigilError) {
    switch (err.code) {
      case 'IDENTITY_INVALID_ARGUMENT':
        return { code: grpc.status.INVALID_ARGUMENT, details: err.message };
      case 'DEVICE_EXISTS':
      case 'NATS_KEY_IN_USE':
        return { code: grpc.status.ALREADY_EXISTS, details: err.message };
      case 'DEVICE_REVOKED':
        return { code: grpc.status.PERMISSION_DENIED, details: err.message };
      case 'CLIENT_CERT_REQUIRED':
      case 'CERT_UNKNOWN':
        return { code: grpc.status.UNAUTHENTICATED, details: err.message };
      case 'RENEW_TOO_SOON':
        return { code: grpc.status.RESOURCE_EXHAUSTED, details: err.message };
    }
    if (err.retryable) return { code: grpc.status.UNAVAILABLE, details: 'temporarily unavailable: retry' };
  }
  // PostgreSQL unreachable and the like: the device retries with backoff.
  const pgCode = (err as { code?: unknown }).code;
  if (
    typeof pgCode === 'string' &&
    (pgCode.startsWith('08') || pgCode === 'ECONNREFUSED' || pgCode === '57P01')
  )
    return { code: grpc.status.UNAVAILABLE, details: 'temporarily unavailable: retry' };
  return { code: grpc.status.INTERNAL, details: 'internal error' };
}
