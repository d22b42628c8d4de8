/**
 * The apply journal in <dataDir>/config/:
 *
 *   applied.json   the remote config the agent runs (version, DeviceConfig) and the high-water mark
 *   pending.json   the config being applied; written (fsync, rename, fsync dir) before anything is touched
 *
 * A successful apply renames pending.json over applied.json (atomic). A failed one deletes pending.json
 * and rewrites applied.json with the raised high-water mark. An agent that finds pending.json at start was
 * killed mid-apply: it runs applied.json (the old config, whole), deletes pending.json and reports that
 * version as rolled back. Either way the agent runs one config, never a mix.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceConfig } from '@vigil/proto';
import { syncDir, writeDurable } from '../identity/durable.js';

export interface JournalEntry {
  version: bigint;
  /** Highest version ever accepted (verified), including ones that failed to apply. */
  highWater: bigint;
  body: DeviceConfig;
}

interface JournalFile {
  version: string;
  highWater: string;
  body: unknown;
}

const APPLIED = 'applied.json';
const PENDING = 'pending.json';

export function configDir(dataDir: string): string {
  return join(dataDir, 'config');
}

function read(path: string): JournalEntry | undefined {
  if (!existsSync(path)) return undefined;
  const raw = JSON.parse(readFileSync(path, 'utf8')) as JournalFile;
  return {
    version: BigInt(raw.version),
    highWater: BigInt(raw.highWater),
    body: DeviceConfig.fromJSON(raw.body),
  };
}

export class ConfigJournal {
  constructor(readonly dir: string) {}

  get appliedPath(): string {
    return join(this.dir, APPLIED);
  }
  get pendingPath(): string {
    return join(this.dir, PENDING);
  }

  applied(): JournalEntry | undefined {
    return read(this.appliedPath);
  }

  pending(): JournalEntry | undefined {
    try {
      return read(this.pendingPath);
    } catch {
      // A torn pending.json cannot exist (tmp + rename), but a damaged one must not stop the agent.
      return undefined;
    }
  }

  hasPending(): boolean {
    return existsSync(this.pendingPath);
  }

  writePending(entry: JournalEntry): void {
    this.write(PENDING, entry);
  }

  writeApplied(entry: JournalEntry): void {
    this.write(APPLIED, entry);
  }

  /** pending -> applied, atomically. */
  commit(): void {
    renameSync(this.pendingPath, this.appliedPath);
    syncDir(this.dir);
  }

  dropPending(): void {
    rmSync(this.pendingPath, { force: true });
    syncDir(this.dir);
  }

  private write(name: string, e: JournalEntry): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file: JournalFile = {
      version: e.version.toString(),
      highWater: e.highWater.toString(),
      body: DeviceConfig.toJSON(e.body),
    };
    const tmp = join(this.dir, `.${name}.${process.pid}.${Date.now()}.tmp`);
    writeDurable(tmp, `${JSON.stringify(file, null, 2)}\n`, 0o600);
    renameSync(tmp, join(this.dir, name));
    syncDir(this.dir);
  }
}
