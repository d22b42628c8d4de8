import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata, MetadataKind, type TargetFile } from '@tufjs/models';
import { compareSemver, CHANNEL_RE, SEMVER_RE, TARGET_NAME_RE } from '@vigil/proto';
import { Counter, type Registry } from 'prom-client';
import { Updater } from 'tuf-js';
import { classifyTufError, UpdateRefusedError, type UpdateRefusal } from './errors.js';
import { REPOSITORY_URL, SourceFetcher, type ReleaseFileSource } from './fetcher.js';

export interface ReleaseClientOptions {
  /** Trusted metadata (tuf-js keeps the newest verified root, timestamp, snapshot, targets here). */
  metadataDir: string;
  /** Where verified bundles are written (`<name>`); the updater unpacks them from there. */
  downloadDir: string;
  /** The root this device trusts first: shipped with the agent package, never fetched on faith. */
  initialRoot: Buffer;
  source: ReleaseFileSource;
  /** Largest bundle accepted (a signed length above it is refused before any byte is fetched). */
  maxBundleBytes: number;
  metrics: Registry;
  /** The device's clock; expiry is checked against it (as well as tuf-js's own check with the system clock). */
  now?: () => Date;
}

/** A release the device may install: verified TUF target plus its custom fields. */
export interface AvailableRelease {
  name: string;
  version: string;
  channel: string;
  minVersion: string;
  length: number;
  sha256: string;
  /** The tuf-js target (for download). */
  target: TargetFile;
}

const TOP_LEVEL = [
  MetadataKind.Root,
  MetadataKind.Timestamp,
  MetadataKind.Snapshot,
  MetadataKind.Targets,
] as const;

/**
 * The device side of agent releases: refreshes TUF metadata from the cloud (DeviceService.FetchRelease over
 * mTLS), picks the newest release of a channel, downloads it and verifies length and hash before it is kept.
 * Every refusal is an {@link UpdateRefusedError} with a reason, counted in vigil_agent_update_refused_total.
 */
export class ReleaseClient {
  private readonly refused: Counter<'reason'>;
  private readonly now: () => Date;

  constructor(private readonly o: ReleaseClientOptions) {
    this.now = o.now ?? (() => new Date());
    this.refused =
      (o.metrics.getSingleMetric('vigil_agent_update_refused_total') as Counter<'reason'> | undefined) ??
      new Counter({
        name: 'vigil_agent_update_refused_total',
        help: 'Agent updates refused, by reason (tampered, wrong_signing_key, expired_metadata, rollback, ...)',
        labelNames: ['reason'],
        registers: [o.metrics],
      });
    mkdirSync(o.metadataDir, { recursive: true, mode: 0o700 });
    mkdirSync(o.downloadDir, { recursive: true, mode: 0o700 });
    // Bootstrap trust once; afterwards tuf-js moves root forward only through signed rotations.
    if (!existsSync(join(o.metadataDir, 'root.json')))
      writeFileSync(join(o.metadataDir, 'root.json'), o.initialRoot);
  }

  private updater(): Updater {
    return new Updater({
      metadataDir: this.o.metadataDir,
      metadataBaseUrl: `${REPOSITORY_URL}metadata`,
      targetBaseUrl: `${REPOSITORY_URL}targets`,
      targetDir: this.o.downloadDir,
      fetcher: new SourceFetcher(this.o.source),
    });
  }

  private refuse(reason: UpdateRefusal, message: string): never {
    this.refused.inc({ reason });
    throw new UpdateRefusedError(reason, message);
  }

  private async guard<T>(stage: 'refresh' | 'download', fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const e = classifyTufError(err, stage);
      if (e instanceof UpdateRefusedError && !(err instanceof UpdateRefusedError))
        this.refused.inc({ reason: e.reason });
      throw e;
    }
  }

  /** Refreshes metadata and returns the newest release of `channel` this device may move to from `installed`. */
  async latest(channel: string, installed: string): Promise<AvailableRelease | null> {
    const updater = this.updater();
    await this.guard('refresh', () => updater.refresh());
    this.checkExpiry();
    const targets = this.trustedTargets();
    let best: AvailableRelease | null = null;
    for (const target of Object.values(targets)) {
      const r = this.describe(target);
      if (r.channel !== channel) continue;
      if (compareSemver(r.version, installed) <= 0) continue;
      if (compareSemver(installed, r.minVersion) < 0) continue;
      if (!best || compareSemver(r.version, best.version) > 0) best = r;
    }
    return best;
  }

  /**
   * Refreshes metadata, then downloads and verifies the release named `name` for a device at `installed`;
   * resolves with the path of the verified bundle.
   */
  async download(name: string, installed: string): Promise<{ path: string; release: AvailableRelease }> {
    if (!TARGET_NAME_RE.test(name))
      this.refuse('bad_target_path', `target ${JSON.stringify(name)} is not a bundle name: refused`);
    const updater = this.updater();
    await this.guard('refresh', () => updater.refresh());
    this.checkExpiry();
    const target = await this.guard('refresh', () => updater.getTargetInfo(name));
    if (!target) throw new UpdateRefusedError('repository_error', `no release ${name} in the signed targets`);
    const release = this.describe(target);
    if (compareSemver(release.version, installed) <= 0)
      this.refuse(
        'rollback',
        `release ${release.version} is not newer than the installed ${installed}: refused`,
      );
    if (compareSemver(installed, release.minVersion) < 0)
      this.refuse(
        'below_min_version',
        `release ${release.version} upgrades from ${release.minVersion} or newer; this device runs ${installed}`,
      );
    if (release.length > this.o.maxBundleBytes)
      this.refuse(
        'oversized',
        `release ${name} is ${release.length} bytes, more than the ${this.o.maxBundleBytes} allowed`,
      );
    const path = join(this.o.downloadDir, name);
    const partial = `${path}.part`;
    rmSync(partial, { force: true });
    // tuf-js verifies length and hash before it writes the file; the rename makes a complete file appear at once.
    await this.guard('download', () => updater.downloadTarget(target, partial));
    renameSync(partial, path);
    return { path, release };
  }

  /** Validates a signed target's name and custom fields (signed does not mean well-formed). */
  private describe(target: TargetFile): AvailableRelease {
    if (!TARGET_NAME_RE.test(target.path))
      this.refuse(
        'bad_target_path',
        `signed target ${JSON.stringify(target.path)} is not a bundle name: refused`,
      );
    const c = target.custom;
    const version = c.version;
    const channel = c.channel;
    const minVersion = c.minVersion;
    if (
      typeof version !== 'string' ||
      !SEMVER_RE.test(version) ||
      typeof channel !== 'string' ||
      !CHANNEL_RE.test(channel) ||
      typeof minVersion !== 'string' ||
      !SEMVER_RE.test(minVersion)
    )
      this.refuse('bad_custom_fields', `target ${target.path} has no valid version, channel and minVersion`);
    const sha256 = target.hashes.sha256;
    if (!sha256) this.refuse('bad_custom_fields', `target ${target.path} has no sha256`);
    return { name: target.path, version, channel, minVersion, length: target.length, sha256, target };
  }

  /** The targets tuf-js verified and kept in metadataDir during the refresh just done. */
  private trustedTargets(): Record<string, TargetFile> {
    const md = Metadata.fromJSON(MetadataKind.Targets, this.readTrusted(MetadataKind.Targets) as never);
    return md.signed.targets;
  }

  private readTrusted(role: (typeof TOP_LEVEL)[number]): unknown {
    return JSON.parse(readFileSync(join(this.o.metadataDir, `${role}.json`), 'utf8'));
  }

  /** Expiry against the device clock: tuf-js checks with the system clock, a device may have better time. */
  private checkExpiry(): void {
    const now = this.now();
    for (const role of TOP_LEVEL) {
      const data = this.readTrusted(role) as { signed?: { expires?: unknown } };
      const expires = typeof data.signed?.expires === 'string' ? new Date(data.signed.expires) : new Date(0);
      if (!(expires.getTime() > now.getTime()))
        this.refuse(
          'expired_metadata',
          `${role}.json expired at ${expires.toISOString()} (device time ${now.toISOString()}): a freeze attack, ` +
            'or the cloud stopped renewing its timestamp',
        );
    }
  }
}
