import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  Metadata,
  MetaFile,
  MetadataKind,
  Snapshot,
  Timestamp,
  type Root,
  type Targets,
} from '@tufjs/models';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Database } from '../storage/tables.js';
import { bundlePublishRefusal } from './bundle-head.js';
import { ReleaseError } from './errors.js';
import { signWith, TUF_SPEC_VERSION, type TufKeyFile } from './keys.js';
import { TARGET_NAME_RE } from '@vigil/proto';
import { targetCustomSchema } from './layout.js';
import type { FsReleaseRepository } from './repository.js';

/** The PostgreSQL advisory lock that serializes writes to the repository across cloud processes ('vigil-tuf'). */
export const RELEASES_LOCK = 0x76_69_67_74_75_66n;

export interface ReleaseServiceOptions {
  repo: FsReleaseRepository;
  db: Kysely<Database>;
  /** Signs timestamp and snapshot; undefined: the repository is served but never re-signed (refresh refuses). */
  onlineKey: TufKeyFile | undefined;
  log: Logger;
  metrics: Registry;
  now?: (() => Date) | undefined;
  timestampExpirySeconds: number;
  snapshotExpirySeconds: number;
  maxBundleBytes: number;
}

/**
 * The cloud's side of the TUF repository: it accepts root and targets metadata signed offline by the release
 * keys (it holds neither), checks them as a client would, and signs snapshot and timestamp with its online key.
 * An online key compromise can therefore freeze or delay what devices see, never make them install anything.
 */
export class ReleaseService {
  private readonly refused: Counter<'reason'>;
  private readonly signed: Counter<'role'>;
  private readonly now: () => Date;

  constructor(private readonly o: ReleaseServiceOptions) {
    this.now = o.now ?? (() => new Date());
    this.refused = new Counter({
      name: 'vigil_cloud_release_refused_total',
      help: 'Release uploads refused, by reason (wrong_signing_key, version_rollback, bad_target_path, ...)',
      labelNames: ['reason'],
      registers: [o.metrics],
    });
    this.signed = new Counter({
      name: 'vigil_cloud_release_signed_total',
      help: 'Snapshot and timestamp metadata signed with the online key, by role',
      labelNames: ['role'],
      registers: [o.metrics],
    });
  }

  get maxBundleBytes(): number {
    return this.o.maxBundleBytes;
  }

  /** Runs `fn` as the only repository writer across cloud processes. */
  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.o.db.transaction().execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(${RELEASES_LOCK})`.execute(trx);
      return fn();
    });
  }

  /** Counts a refusal and rethrows it. */
  private async counted<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ReleaseError && err.code !== 'UNAVAILABLE') this.refused.inc({ reason: err.reason });
      throw err;
    }
  }

  async trustedRoot(): Promise<Metadata<Root>> {
    const version = await this.o.repo.latestVersion('root');
    const bytes = version > 0 ? await this.o.repo.readMetadata(`${version}.root.json`) : null;
    if (!bytes)
      throw new ReleaseError(
        'RELEASE_REPOSITORY_NOT_INITIALIZED',
        'no root metadata yet: run `vigil release root init`, then `vigil release root push`',
      );
    return Metadata.fromJSON(MetadataKind.Root, JSON.parse(bytes.toString('utf8')) as never);
  }

  /** Accepts the first root (self-signed) or the next one (signed by the current root's keys and its own). */
  putRoot(json: unknown): Promise<{ version: number }> {
    return this.counted(() =>
      this.exclusive(async () => {
        const next = parseMetadata<Root>(MetadataKind.Root, json);
        const current = (await this.o.repo.latestVersion('root')) > 0 ? await this.trustedRoot() : undefined;
        const expected = (current?.signed.version ?? 0) + 1;
        if (next.signed.version !== expected)
          throw new ReleaseError(
            'RELEASE_VERSION_CONFLICT',
            `root version ${next.signed.version} refused: the next root must be version ${expected}`,
            { reason: 'version_rollback' },
          );
        if (!next.signed.consistentSnapshot)
          throw new ReleaseError('VALIDATION_FAILED', 'root must set consistent_snapshot: true', {
            reason: 'bad_metadata',
          });
        verify(current ?? next, 'root', next);
        verify(next, 'root', next);
        this.notExpired(next, 'root');
        await this.o.repo.writeMetadata(`${next.signed.version}.root.json`, serialize(next));
        this.o.log.warn({ version: next.signed.version }, 'release root metadata accepted');
        // New online keys (or the first root): snapshot and timestamp are signed again now.
        if (this.o.onlineKey && onlineKeyTrusted(next, this.o.onlineKey)) await this.resign(next, true);
        return { version: next.signed.version };
      }),
    );
  }

  /** Stages an uploaded bundle by its SHA-256; it is served only once targets metadata names it. */
  stageBundle(sha256: string, body: Readable): Promise<{ size: number }> {
    return this.counted(async () => {
      const staged = await this.o.repo.stage(sha256, body, this.o.maxBundleBytes);
      // A build marked dirty (uncommitted changes) must never reach a device: refused here as well as by
      // `vigil release publish`, for any other client of the API.
      const refusal = await bundlePublishRefusal(this.o.repo.incomingPath(sha256));
      if (refusal) {
        await this.o.repo.discardIncoming(sha256);
        this.o.log.warn({ sha256, reason: refusal.reason }, 'release bundle refused');
        throw new ReleaseError('VALIDATION_FAILED', `the bundle is refused: ${refusal.message}`, {
          reason: refusal.reason,
        });
      }
      return staged;
    });
  }

  /** Publishes the next targets metadata (signed offline), then a new snapshot and timestamp. */
  putTargets(json: unknown): Promise<{ version: number }> {
    return this.counted(() =>
      this.exclusive(async () => {
        const root = await this.trustedRoot();
        const next = parseMetadata<Targets>(MetadataKind.Targets, json);
        verify(root, 'targets', next);
        const expected = (await this.o.repo.latestVersion('targets')) + 1;
        if (next.signed.version !== expected)
          throw new ReleaseError(
            'RELEASE_VERSION_CONFLICT',
            `targets version ${next.signed.version} refused: the next must be version ${expected} (someone ` +
              'published meanwhile: run the publish again)',
            { reason: 'version_rollback' },
          );
        this.notExpired(next, 'targets');
        if (next.signed.delegations)
          throw new ReleaseError('VALIDATION_FAILED', 'delegated targets are not supported', {
            reason: 'bad_metadata',
          });
        for (const [name, target] of Object.entries(next.signed.targets)) {
          if (!TARGET_NAME_RE.test(name))
            throw new ReleaseError(
              'VALIDATION_FAILED',
              `target ${JSON.stringify(name)} refused: a target is one file named vigil-agent-<version>-linux-x64.tar.gz`,
              { reason: 'bad_target_path' },
            );
          const custom = targetCustomSchema.safeParse(target.custom);
          if (!custom.success)
            throw new ReleaseError(
              'VALIDATION_FAILED',
              `target ${name}: custom fields ${custom.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`,
              { reason: 'bad_custom_fields' },
            );
          const sha256 = target.hashes.sha256;
          if (
            !sha256 ||
            !/^[0-9a-f]{64}$/.test(sha256) ||
            !(await this.o.repo.hasBundle(sha256, name, target.length))
          )
            throw new ReleaseError(
              'VALIDATION_FAILED',
              `target ${name}: no uploaded bundle with this SHA-256 and length: upload it first`,
              { reason: 'missing_bundle' },
            );
        }
        for (const [name, target] of Object.entries(next.signed.targets))
          await this.o.repo.promote(target.hashes.sha256!, name);
        await this.o.repo.writeMetadata(`${next.signed.version}.targets.json`, serialize(next));
        this.o.log.info(
          { version: next.signed.version, targets: Object.keys(next.signed.targets) },
          'targets published',
        );
        await this.resign(root, true);
        return { version: next.signed.version };
      }),
    );
  }

  /**
   * Signs a new snapshot and timestamp when theirs are past half their lifetime (or `force`). The periodic job
   * calls this; a frozen repository then shows as expired metadata on devices, never as silence.
   */
  async refresh(force = false): Promise<{ snapshot: number | null; timestamp: number | null }> {
    return this.exclusive(async () => this.resign(await this.trustedRoot(), force));
  }

  private async resign(
    root: Metadata<Root>,
    force: boolean,
  ): Promise<{ snapshot: number | null; timestamp: number | null }> {
    const key = this.o.onlineKey;
    if (!key)
      throw new ReleaseError(
        'UNAVAILABLE',
        'releases.onlineKeyFile is not configured: nothing can sign timestamp',
      );
    if (!onlineKeyTrusted(root, key))
      throw new ReleaseError(
        'UNAVAILABLE',
        `the online key ${key.keyid.slice(0, 12)} is not root's timestamp and snapshot key: rotate root with ` +
          '`vigil release root rotate --online-key <file>` or configure the key root lists',
      );
    const now = this.now();
    const targetsVersion = await this.o.repo.latestVersion('targets');
    const snapVersion = await this.o.repo.latestVersion('snapshot');
    const snapBytes = snapVersion > 0 ? await this.o.repo.readMetadata(`${snapVersion}.snapshot.json`) : null;
    const snap = snapBytes ? parseStored<Snapshot>(MetadataKind.Snapshot, snapBytes) : undefined;
    const stale = (m: Metadata<Snapshot | Timestamp>, seconds: number): boolean =>
      new Date(m.signed.expires).getTime() - now.getTime() < (seconds * 1000) / 2;
    let signedSnapshot: number | null = null;
    let snapshotMeta: { version: number; bytes: Buffer } | undefined =
      snap && snapBytes ? { version: snap.signed.version, bytes: snapBytes } : undefined;
    const snapTargets = snap?.signed.meta['targets.json']?.version ?? 0;
    if (
      targetsVersion > 0 &&
      (force || !snap || snapTargets !== targetsVersion || stale(snap, this.o.snapshotExpirySeconds))
    ) {
      const next = new Metadata(
        new Snapshot({
          version: snapVersion + 1,
          specVersion: TUF_SPEC_VERSION,
          expires: expiry(now, this.o.snapshotExpirySeconds),
          meta: { 'targets.json': new MetaFile({ version: targetsVersion }) },
        }),
      );
      signWith(next, key, false);
      const bytes = serialize(next);
      await this.o.repo.writeMetadata(`${next.signed.version}.snapshot.json`, bytes);
      this.signed.inc({ role: 'snapshot' });
      signedSnapshot = next.signed.version;
      snapshotMeta = { version: next.signed.version, bytes };
    }
    if (!snapshotMeta) return { snapshot: null, timestamp: null };
    const tsBytes = await this.o.repo.readMetadata('timestamp.json');
    const ts = tsBytes ? parseStored<Timestamp>(MetadataKind.Timestamp, tsBytes) : undefined;
    if (
      !force &&
      signedSnapshot === null &&
      ts &&
      ts.signed.snapshotMeta.version === snapshotMeta.version &&
      !stale(ts, this.o.timestampExpirySeconds)
    )
      return { snapshot: null, timestamp: null };
    const next = new Metadata(
      new Timestamp({
        version: (ts?.signed.version ?? 0) + 1,
        specVersion: TUF_SPEC_VERSION,
        expires: expiry(now, this.o.timestampExpirySeconds),
        snapshotMeta: new MetaFile({
          version: snapshotMeta.version,
          length: snapshotMeta.bytes.length,
          hashes: { sha256: createHash('sha256').update(snapshotMeta.bytes).digest('hex') },
        }),
      }),
    );
    signWith(next, key, false);
    await this.o.repo.writeMetadata('timestamp.json', serialize(next));
    this.signed.inc({ role: 'timestamp' });
    return { snapshot: signedSnapshot, timestamp: next.signed.version };
  }

  private notExpired(md: Metadata<Root | Targets>, role: string): void {
    if (md.signed.isExpired(this.now()))
      throw new ReleaseError(
        'VALIDATION_FAILED',
        `${role} metadata expired at ${md.signed.expires}: sign it again`,
        {
          reason: 'expired',
        },
      );
  }
}

function onlineKeyTrusted(root: Metadata<Root>, key: TufKeyFile): boolean {
  return ['timestamp', 'snapshot'].every((r) => root.signed.roles[r]?.keyIDs.includes(key.keyid));
}

function expiry(now: Date, seconds: number): string {
  // TUF expiries are whole seconds in UTC ("2026-01-01T00:00:00Z").
  return new Date(Math.floor(now.getTime() / 1000) * 1000 + seconds * 1000)
    .toISOString()
    .replace('.000Z', 'Z');
}

function serialize(md: Metadata<Root | Targets | Snapshot | Timestamp>): Buffer {
  return Buffer.from(JSON.stringify(md.toJSON()));
}

function parseStored<T extends Snapshot | Timestamp>(
  kind: MetadataKind.Snapshot | MetadataKind.Timestamp,
  bytes: Buffer,
): Metadata<T> {
  const json = JSON.parse(bytes.toString('utf8')) as never;
  return (kind === MetadataKind.Snapshot
    ? Metadata.fromJSON(MetadataKind.Snapshot, json)
    : Metadata.fromJSON(MetadataKind.Timestamp, json)) as unknown as Metadata<T>;
}

function parseMetadata<T extends Root | Targets>(
  kind: MetadataKind.Root | MetadataKind.Targets,
  json: unknown,
): Metadata<T> {
  try {
    return (kind === MetadataKind.Root
      ? Metadata.fromJSON(MetadataKind.Root, json as never)
      : Metadata.fromJSON(MetadataKind.Targets, json as never)) as unknown as Metadata<T>;
  } catch (cause) {
    throw new ReleaseError('VALIDATION_FAILED', `not ${kind} metadata: ${(cause as Error).message}`, {
      cause,
      reason: 'bad_metadata',
    });
  }
}

/** Checks `md` is signed by a threshold of the keys `by` lists for `role`, as a device will. */
function verify(by: Metadata<Root>, role: 'root' | 'targets', md: Metadata<Root | Targets>): void {
  try {
    by.verifyDelegate(role, md);
  } catch (cause) {
    throw new ReleaseError(
      'RELEASE_SIGNATURE_INVALID',
      `${role} metadata is not signed by the ${role} key${by === md ? '' : ' the current root lists'}: ` +
        `${(cause as Error).message}. Sign with the key in your keys directory (vigil release ... --keys-dir)`,
      { cause, reason: 'wrong_signing_key' },
    );
  }
}
