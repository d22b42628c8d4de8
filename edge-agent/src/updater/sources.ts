import { createReadStream, lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { IdentityStore, defaultIdentityDir } from '../identity/index.js';
import { grpcReleaseSource, type ReleaseFileSource } from '../update/fetcher.js';
import type { UpdaterConfig } from './config.js';
import { UpdaterError } from './errors.js';

// Repository paths the directory source serves: the same names the cloud's layout allows, nothing else.
const PATH_RE =
  /^(?:metadata\/(?:[1-9]\d{0,8}\.(?:root|snapshot|targets)|timestamp)\.json|targets\/[0-9a-f]{64}\.vigil-agent-[0-9A-Za-z.+-]{1,64}-linux-x64\.tar\.gz)$/;

const grpcError = (code: number, message: string): Error => Object.assign(new Error(message), { code });

/**
 * A repository copy on a local file system. Only the layout's names are served (no other path, no link), and
 * the size cap tuf-js gives is enforced before reading, as the cloud does.
 */
export function directoryReleaseSource(dir: string): ReleaseFileSource {
  return async function* (path, maxBytes) {
    if (!PATH_RE.test(path)) throw grpcError(grpcStatus.NOT_FOUND, `${path}: not a repository file`);
    const file = join(dir, path);
    let size: number;
    try {
      const st = lstatSync(file);
      if (!st.isFile()) throw new Error('not a regular file');
      size = st.size;
    } catch {
      throw grpcError(grpcStatus.NOT_FOUND, `${path}: not found in the repository`);
    }
    if (maxBytes > 0 && size > maxBytes)
      throw grpcError(grpcStatus.RESOURCE_EXHAUSTED, `${path} is ${size} bytes, more than ${maxBytes}`);
    for await (const chunk of createReadStream(file, { highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>)
      yield { data: chunk };
  };
}

/**
 * The root trusted first: the administrator's `trustedRootFile` when it exists, else the one the package
 * shipped (`packagedRootFile`). Any other failure to read the administrator's file (permissions, a directory) is
 * an error, not a reason to fall back: a root someone meant to install must not be silently replaced.
 */
export function readTrustedRoot(trustedRootFile: string, packagedRootFile?: string): Buffer {
  try {
    return readFileSync(trustedRootFile);
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    if (!missing || packagedRootFile === undefined)
      throw new UpdaterError(
        'CONFIG_INVALID',
        `cannot read repository.trustedRootFile ${trustedRootFile}${missing ? ' (and no repository.packagedRootFile is set)' : ''}`,
        false,
        { cause },
      );
  }
  try {
    return readFileSync(packagedRootFile);
  } catch (cause) {
    throw new UpdaterError(
      'CONFIG_INVALID',
      `neither repository.trustedRootFile ${trustedRootFile} nor repository.packagedRootFile ${packagedRootFile} can be read: install the release root (root/1.root.json of the release keys) at the first`,
      false,
      { cause },
    );
  }
}

/** The release source of the config, and the root it trusts first. */
export function releaseSourceOf(config: UpdaterConfig): { source: ReleaseFileSource; initialRoot: Buffer } {
  const r = config.repository;
  const initialRoot = readTrustedRoot(r.trustedRootFile, r.packagedRootFile);
  if (r.kind === 'directory') return { source: directoryReleaseSource(r.dir), initialRoot };
  // The agent's enrolled identity, re-read at every fetch: the agent renews it, the updater only reads it.
  const store = new IdentityStore(r.identityDir ?? defaultIdentityDir(config.stateDir));
  const source = grpcReleaseSource(() => {
    const id = store.load();
    if (!id)
      throw new UpdaterError(
        'CONFIG_INVALID',
        `no enrolled identity in ${store.dir}: enroll the agent first`,
        true,
      );
    return id;
  }, r.grpcEndpoint);
  return { source, initialRoot };
}
