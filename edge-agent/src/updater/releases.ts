import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { SEMVER_RE } from '@vigil/proto';
import { fsyncPath, readLinkIfExists, swapSymlink } from './durable.js';
import { UpdaterError } from './errors.js';
import { readReleaseManifest } from './manifest.js';

/**
 * `releases/`: one complete directory per installed version (`releases/<version>`), the `current` symlink the
 * agent's unit starts from (`releases/current/bin/vigil-agent`), and leftovers of interrupted work
 * (`.staging-<v>`, `.current-*`) that are deleted at start. `current` names a directory in releases/ by its
 * version, or the packaged release by absolute path (/opt/vigil, from the .deb).
 */
export class ReleaseStore {
  readonly currentLink: string;

  constructor(
    readonly dir: string,
    private readonly packaged: string,
  ) {
    this.currentLink = join(dir, 'current');
  }

  init(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    for (const name of readdirSync(this.dir))
      if (name.startsWith('.staging-') || name.startsWith('.current-'))
        rmSync(join(this.dir, name), { recursive: true, force: true });
    if (this.currentRef() === undefined) {
      if (!existsSync(join(this.packaged, 'manifest.json')))
        throw new UpdaterError(
          'NO_CURRENT_RELEASE',
          `${this.currentLink} does not exist and ${this.packaged} holds no release (manifest.json)`,
        );
      swapSymlink(this.currentLink, this.packaged);
    }
  }

  currentRef(): string | undefined {
    return readLinkIfExists(this.currentLink);
  }

  path(ref: string): string {
    return isAbsolute(ref) ? ref : join(this.dir, ref);
  }

  versionOf(ref: string): string {
    try {
      return readReleaseManifest(this.path(ref)).version;
    } catch (cause) {
      throw new UpdaterError(
        'NO_CURRENT_RELEASE',
        `${this.path(ref)} is not a release (manifest.json)`,
        false,
        {
          cause,
        },
      );
    }
  }

  /** Versions complete in releases/ (a directory appears here only by rename of a finished staging). */
  installed(): string[] {
    return readdirSync(this.dir).filter(
      (n) => SEMVER_RE.test(n) && existsSync(join(this.dir, n, 'manifest.json')),
    );
  }

  stagingDir(version: string): string {
    return join(this.dir, `.staging-${version}`);
  }

  /** Renames a finished staging directory to releases/<version> (kept if a complete one is already there). */
  install(version: string): string {
    const final = join(this.dir, version);
    if (existsSync(join(final, 'manifest.json')))
      rmSync(this.stagingDir(version), { recursive: true, force: true });
    else {
      rmSync(final, { recursive: true, force: true });
      renameSync(this.stagingDir(version), final);
    }
    fsyncPath(this.dir);
    return version;
  }

  point(ref: string): void {
    swapSymlink(this.currentLink, ref);
  }

  /** Deletes installed releases beyond `keep`, oldest version first, never one in `protect`. */
  prune(keep: number, protect: readonly string[], compare: (a: string, b: string) => number): string[] {
    const candidates = this.installed()
      .filter((v) => !protect.includes(v))
      .sort(compare);
    const gone = candidates.slice(0, Math.max(0, candidates.length - keep));
    for (const v of gone) {
      // Renamed first: a half-deleted directory must never look like a complete release.
      const doomed = join(this.dir, `.staging-deleted-${v}`);
      renameSync(join(this.dir, v), doomed);
      fsyncPath(this.dir);
      rmSync(doomed, { recursive: true, force: true });
    }
    return gone;
  }
}
