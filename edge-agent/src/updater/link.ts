/*
 * The agent's end of the updater contract (updater/contract.ts): it asks for the agent version its applied
 * config names by writing request.json, and reads status.json for its heartbeats. The agent never installs
 * anything itself: a broken agent must not be able to block its own rollback, so the updater is a separate
 * process that only takes requests.
 */
import { constants, closeSync, fstatSync, mkdirSync, openSync, readSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { ZodType } from 'zod';
import { syncDir, writeDurable } from '../identity/durable.js';
import {
  MAX_CONTRACT_FILE_BYTES,
  REQUEST_FILE,
  STATUS_FILE,
  updateRequestSchema,
  updateStatusSchema,
  type UpdateRequest,
  type UpdateStatus,
} from './contract.js';

/** What the applied config asks for (DeviceConfig.agent); an empty version asks for nothing. */
export interface DesiredAgent {
  version: string;
  channel: string;
  rolloutId: string;
}

export type SyncResult = 'none' | 'requested' | 'unchanged' | 'withdrawn' | 'given_up';

export interface UpdateLinkOptions {
  /** `<stateDir>/update`. */
  dir: string;
  /** The version of this agent. */
  agentVersion: string;
  registry: Registry;
  log: Logger;
  now?: (() => Date) | undefined;
}

type Refusal = 'too_large' | 'unreadable' | 'not_json' | 'schema' | 'not_a_file';

export class UpdateLink {
  private readonly refused: Counter<'file' | 'reason'>;
  private readonly requests: Counter<'result'>;
  private readonly now: () => Date;
  /** The last refusal per file, so a bad file is logged once, not every heartbeat. */
  private readonly lastRefusal = new Map<string, string>();

  constructor(private readonly o: UpdateLinkOptions) {
    this.now = o.now ?? (() => new Date());
    this.refused = new Counter({
      name: 'vigil_agent_update_file_refused_total',
      help: 'Updater contract files (request.json, status.json) refused on read, by file and reason',
      labelNames: ['file', 'reason'],
      registers: [o.registry],
    });
    this.requests = new Counter({
      name: 'vigil_agent_update_requests_total',
      help: 'Agent-version requests to the updater, by result (requested, unchanged, withdrawn, given_up)',
      labelNames: ['result'],
      registers: [o.registry],
    });
  }

  /** The updater's status, or undefined when it wrote none or wrote one that is refused (counted). */
  status(): UpdateStatus | undefined {
    return this.read(STATUS_FILE, updateStatusSchema);
  }

  /** The request the agent last made (still in place), or undefined. */
  request(): UpdateRequest | undefined {
    return this.read(REQUEST_FILE, updateRequestSchema);
  }

  /**
   * Brings request.json in line with what the applied config asks for:
   * - nothing asked: left alone (a config without `agent` does not cancel an update in progress);
   * - its own version asked (e.g. a rollback to it): a request for another version is withdrawn;
   * - another version: requested, unless the same request is in place, or the updater already gave up on that
   *   version for this request (rolled back or failed: asking again would loop a crashing release).
   */
  sync(desired: DesiredAgent | undefined): SyncResult {
    const result = this.decide(desired);
    if (result !== 'none') this.requests.inc({ result });
    return result;
  }

  private decide(desired: DesiredAgent | undefined): SyncResult {
    if (!desired || desired.version === '') return 'none';
    const current = this.request();
    if (desired.version === this.o.agentVersion) {
      if (current && current.version !== this.o.agentVersion) {
        rmSync(join(this.o.dir, REQUEST_FILE), { force: true });
        this.o.log.info(
          { withdrawn: current.version },
          'agent update request withdrawn: this version is wanted',
        );
        return 'withdrawn';
      }
      return 'none';
    }
    const rolloutId = desired.rolloutId === '' ? null : desired.rolloutId;
    const same =
      current?.version === desired.version &&
      current.channel === desired.channel &&
      current.rolloutId === rolloutId;
    const s = this.status();
    const gaveUp =
      s !== undefined &&
      s.target === desired.version &&
      (s.state === 'rolled_back' || s.state === 'failed') &&
      (current === undefined || current.rolloutId === rolloutId);
    if (gaveUp) return 'given_up';
    if (same) return 'unchanged';
    const req: UpdateRequest = {
      version: desired.version,
      channel: desired.channel,
      requestedAt: this.now().toISOString(),
      rolloutId,
    };
    this.write(req);
    this.o.log.info(
      { version: req.version, channel: req.channel, rollout: rolloutId },
      'agent update requested',
    );
    return 'requested';
  }

  /** tmp + fsync + rename + directory fsync: the updater sees the old request or the new one, whole. */
  private write(req: UpdateRequest): void {
    mkdirSync(this.o.dir, { recursive: true, mode: 0o750 });
    const tmp = join(this.o.dir, `.${REQUEST_FILE}.${process.pid}.tmp`);
    rmSync(tmp, { force: true });
    writeDurable(tmp, `${JSON.stringify(req)}\n`, 0o640);
    renameSync(tmp, join(this.o.dir, REQUEST_FILE));
    syncDir(this.o.dir);
  }

  /** Reads a contract file as hostile input: no links, a regular file, at most MAX_CONTRACT_FILE_BYTES. */
  private read<T>(name: string, schema: ZodType<T>): T | undefined {
    const path = join(this.o.dir, name);
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        this.lastRefusal.delete(name);
        return undefined;
      }
      return this.refuse(name, code === 'ELOOP' ? 'not_a_file' : 'unreadable', code ?? 'open failed');
    }
    let text: string;
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return this.refuse(name, 'not_a_file', 'not a regular file');
      if (st.size > MAX_CONTRACT_FILE_BYTES)
        return this.refuse(name, 'too_large', `${st.size} bytes > ${MAX_CONTRACT_FILE_BYTES}`);
      // Read at most one byte past the bound: a file growing after the fstat is still refused.
      const buf = Buffer.alloc(MAX_CONTRACT_FILE_BYTES + 1);
      let n = 0;
      for (let got = -1; got !== 0 && n < buf.length; n += got) got = readSync(fd, buf, n, buf.length - n, n);
      if (n > MAX_CONTRACT_FILE_BYTES) return this.refuse(name, 'too_large', 'grew past the bound');
      text = buf.subarray(0, n).toString('utf8');
    } catch (err) {
      return this.refuse(name, 'unreadable', (err as Error).message);
    } finally {
      closeSync(fd);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return this.refuse(name, 'not_json', 'not JSON');
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success)
      return this.refuse(
        name,
        'schema',
        parsed.error.issues
          .slice(0, 3)
          .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
          .join('; '),
      );
    this.lastRefusal.delete(name);
    return parsed.data;
  }

  private refuse(file: string, reason: Refusal, detail: string): undefined {
    this.refused.inc({ file, reason });
    const key = `${reason}: ${detail}`;
    if (this.lastRefusal.get(file) !== key) {
      this.lastRefusal.set(file, key);
      this.o.log.warn({ file, reason, detail: detail.slice(0, 300) }, 'updater contract file refused');
    }
    return undefined;
  }
}
