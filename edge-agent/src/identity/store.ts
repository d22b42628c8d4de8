import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { formatCreds } from './creds.js';
import { syncDir, writeDurable } from './durable.js';
import { IdentityError } from './errors.js';
import { checkMaterial, readCredsText, type IdentityMaterial } from './material.js';

/*
 * Layout and atomicity. One identity is five files that only make sense together (a renewed cert with the
 * old key is useless; a new JWT with the old seed is refused by nats-server). They live in a generation
 * directory, and `current` is a symlink to the generation in use:
 *
 *   <dir>/current -> gen-<id>      every reader goes through <dir>/current/<file>
 *   <dir>/gen-<id>/device.key 0600, device.crt 0644, ca.pem 0644, nats.creds 0600, identity.json 0644,
 *                  config-jwks.json 0644 (the config signing keys; optional)
 *
 * save() writes a whole new generation under a temporary name (each file fsync'ed), renames it to gen-<id>,
 * then points a temporary symlink at it and renames that over `current` (rename(2) replaces it atomically)
 * and fsyncs <dir>. A crash before that last rename leaves `current` on the old, complete generation; after
 * it, on the new, complete one: a restarting agent never sees half of each. Leftovers of a crash are ignored
 * by load() and pruned by a later save(). The previous generation is kept, so that a reader that resolved
 * `current` just before the swap can still read its files.
 */

const FILES = {
  key: 'device.key',
  cert: 'device.crt',
  ca: 'ca.pem',
  creds: 'nats.creds',
  meta: 'identity.json',
  /** Optional: the cloud's config signing keys (JWKS), carried over from the previous generation when absent. */
  jwks: 'config-jwks.json',
} as const;
const SECRET_MODE = 0o600;
const PUBLIC_MODE = 0o644;
const DIR_MODE = 0o700;
const CURRENT = 'current';
const GEN_RE = /^gen-[a-z0-9-]+$/;
/** Temp entries older than this cannot belong to a save() in progress: crash leftovers, safe to delete. */
const STALE_TMP_MS = 10 * 60_000;

const id = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/i);
const isoDate = z.iso.datetime({ offset: true });
const metaSchema = z.object({
  version: z.literal(1),
  deviceId: id,
  tenantId: id,
  siteId: id,
  natsUrls: z.array(z.string().min(1)),
  grpcEndpoint: z.string(),
  notAfter: isoDate,
  enrolledAt: isoDate,
  renewedAt: isoDate.nullable(),
});
type IdentityMeta = z.infer<typeof metaSchema>;

/** The ids and endpoints of an identity, as stored in identity.json. */
export interface IdentityInfo {
  deviceId: string;
  tenantId: string;
  siteId: string;
  /** NATS URLs handed out by the cloud (tls://host:port). */
  natsUrls: string[];
  /** host:port of the cloud's DeviceService this device enrolled with (and renews at). */
  grpcEndpoint: string;
  enrolledAt: Date;
  renewedAt: Date | undefined;
}

/** Stable paths (through `current`): TLS and NATS clients re-read them and find the latest generation. */
export interface IdentityFiles {
  dir: string;
  key: string;
  cert: string;
  ca: string;
  creds: string;
  meta: string;
}

export interface DeviceIdentity extends IdentityInfo {
  notBefore: Date;
  notAfter: Date;
  natsPublicKey: string;
  files: IdentityFiles;
  /** Non-enumerable, so that logging or JSON-printing an identity never prints a private key or seed. */
  readonly material: IdentityMaterial;
}

export interface IdentityStoreOptions {
  /** Told about anything load() repaired (file modes). */
  onWarning?: (message: string) => void;
}

export function defaultIdentityDir(dataDir: string): string {
  return join(dataDir, 'identity');
}

export class IdentityStore {
  readonly files: IdentityFiles;
  /** The cloud's config signing keys (JWKS) of the current generation; may not exist. */
  readonly jwksFile: string;

  constructor(
    readonly dir: string,
    private readonly opts: IdentityStoreOptions = {},
  ) {
    const cur = join(dir, CURRENT);
    this.jwksFile = join(cur, FILES.jwks);
    this.files = {
      dir,
      key: join(cur, FILES.key),
      cert: join(cur, FILES.cert),
      ca: join(cur, FILES.ca),
      creds: join(cur, FILES.creds),
      meta: join(cur, FILES.meta),
    };
  }

  /** True when an identity was stored (even one load() would refuse): enroll must not overwrite it blindly. */
  exists(): boolean {
    try {
      lstatSync(join(this.dir, CURRENT));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  /** The stored identity, undefined when not enrolled; IdentityError(IDENTITY_INVALID) naming the bad file. */
  load(): DeviceIdentity | undefined {
    const link = join(this.dir, CURRENT);
    let gen: string;
    try {
      gen = readlinkSync(link);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      throw new IdentityError('IDENTITY_INVALID', `${link} is not a symlink to an identity generation`, {
        cause: e,
      });
    }
    if (!GEN_RE.test(gen)) throw new IdentityError('IDENTITY_INVALID', `${link} points at ${gen}`);
    // Read every file from the resolved generation, so a concurrent save() cannot mix two of them.
    const genDir = join(this.dir, gen);
    this.tighten(this.dir, DIR_MODE);
    this.tighten(genDir, DIR_MODE);
    const path = (name: string): string => join(genDir, name);
    const read = (name: string): string => {
      try {
        return readFileSync(path(name), 'utf8');
      } catch (cause) {
        throw new IdentityError('IDENTITY_INVALID', `cannot read ${path(name)}`, { cause });
      }
    };
    for (const name of [FILES.key, FILES.creds]) this.tighten(path(name), SECRET_MODE);

    let meta: IdentityMeta;
    try {
      meta = metaSchema.parse(JSON.parse(read(FILES.meta)));
    } catch (cause) {
      if (cause instanceof IdentityError) throw cause;
      throw new IdentityError('IDENTITY_INVALID', `${path(FILES.meta)} is not a valid identity record`, {
        cause,
      });
    }
    const creds = readCredsText(read(FILES.creds), path(FILES.creds), 'IDENTITY_INVALID');
    const material: IdentityMaterial = {
      keyPem: read(FILES.key),
      certPem: read(FILES.cert),
      caPem: read(FILES.ca),
      natsJwt: creds.jwt,
      natsSeed: creds.seed,
    };
    const names = {
      key: path(FILES.key),
      cert: path(FILES.cert),
      ca: path(FILES.ca),
      creds: path(FILES.creds),
    };
    const checked = checkMaterial(material, meta.deviceId, names, 'IDENTITY_INVALID');
    const identity = {
      deviceId: meta.deviceId,
      tenantId: meta.tenantId,
      siteId: meta.siteId,
      natsUrls: meta.natsUrls,
      grpcEndpoint: meta.grpcEndpoint,
      enrolledAt: new Date(meta.enrolledAt),
      renewedAt: meta.renewedAt === null ? undefined : new Date(meta.renewedAt),
      ...checked,
      files: { ...this.files },
    } as DeviceIdentity;
    Object.defineProperty(identity, 'material', { value: material, enumerable: false });
    return identity;
  }

  /**
   * Stores a complete identity as a new generation and switches `current` to it (see the layout comment).
   * The material is checked first: an identity that load() would refuse is never written. Returns it loaded.
   */
  save(info: IdentityInfo, material: IdentityMaterial, configJwks = ''): DeviceIdentity {
    const probe = { key: 'device key', cert: 'certificate', ca: 'CA chain', creds: 'NATS credentials' };
    const checked = checkMaterial(material, info.deviceId, probe, 'IDENTITY_INVALID');
    const meta: IdentityMeta = {
      version: 1,
      deviceId: info.deviceId,
      tenantId: info.tenantId,
      siteId: info.siteId,
      natsUrls: [...info.natsUrls],
      grpcEndpoint: info.grpcEndpoint,
      notAfter: checked.notAfter.toISOString(),
      enrolledAt: info.enrolledAt.toISOString(),
      renewedAt: info.renewedAt ? info.renewedAt.toISOString() : null,
    };
    metaSchema.parse(meta);

    mkdirSync(this.dir, { recursive: true, mode: DIR_MODE });
    this.tighten(this.dir, DIR_MODE);
    const previous = this.currentGeneration();
    const suffix = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const gen = `gen-${suffix}`;
    const tmpDir = join(this.dir, `.gen-${suffix}.tmp`);
    mkdirSync(tmpDir, { mode: DIR_MODE });
    writeDurable(join(tmpDir, FILES.key), material.keyPem, SECRET_MODE);
    writeDurable(join(tmpDir, FILES.cert), material.certPem, PUBLIC_MODE);
    writeDurable(join(tmpDir, FILES.ca), material.caPem, PUBLIC_MODE);
    writeDurable(join(tmpDir, FILES.creds), formatCreds(material.natsJwt, material.natsSeed), SECRET_MODE);
    writeDurable(join(tmpDir, FILES.meta), `${JSON.stringify(meta, null, 2)}\n`, PUBLIC_MODE);
    // An empty set from the cloud means "unchanged": the previous generation's keys are carried over.
    let jwks = configJwks;
    if (!jwks && previous)
      try {
        jwks = readFileSync(join(this.dir, previous, FILES.jwks), 'utf8');
      } catch {
        jwks = '';
      }
    if (jwks) writeDurable(join(tmpDir, FILES.jwks), jwks, PUBLIC_MODE);
    syncDir(tmpDir);
    renameSync(tmpDir, join(this.dir, gen));
    const tmpLink = join(this.dir, `.current-${suffix}.tmp`);
    symlinkSync(gen, tmpLink);
    renameSync(tmpLink, join(this.dir, CURRENT));
    syncDir(this.dir);
    this.prune(gen, previous);
    const loaded = this.load();
    if (!loaded) throw new IdentityError('IDENTITY_INVALID', `${this.dir}: the identity just saved is gone`);
    return loaded;
  }

  private currentGeneration(): string | undefined {
    try {
      return readlinkSync(join(this.dir, CURRENT));
    } catch {
      return undefined;
    }
  }

  /** Keeps what `current` points at now, the new and the previous generation; drops the rest. */
  private prune(gen: string, previous: string | undefined): void {
    const keep = new Set([gen, previous, this.currentGeneration()]);
    const now = Date.now();
    for (const entry of readdirSync(this.dir)) {
      const p = join(this.dir, entry);
      try {
        if (GEN_RE.test(entry) && !keep.has(entry)) rmSync(p, { recursive: true, force: true });
        else if (/^\.(gen|current)-.*\.tmp$/.test(entry) && now - lstatSync(p).mtimeMs > STALE_TMP_MS)
          rmSync(p, { recursive: true, force: true });
      } catch {
        // best effort: a leftover costs disk space, never correctness
      }
    }
  }

  /**
   * Secrets readable by others are fixed (chmod), not refused: refusing would take an unattended gateway
   * offline until someone logs in, and would not un-leak anything. The warning says what to consider.
   */
  private tighten(path: string, mode: number): void {
    let current: number;
    try {
      current = statSync(path).mode & 0o777;
    } catch {
      return; // missing: the read that follows names it
    }
    if ((current & ~mode) === 0) return;
    chmodSync(path, mode);
    this.opts.onWarning?.(
      `${path} had mode ${current.toString(8).padStart(4, '0')}; set to ${mode.toString(8).padStart(4, '0')}. ` +
        'If other users could read it, re-enroll this device (vigil-agent enroll --force) and revoke the old one.',
    );
  }
}
