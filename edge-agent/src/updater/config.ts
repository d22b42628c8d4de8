import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { UpdaterError } from './errors.js';

const MiB = 1024 * 1024;

/**
 * The root the package was built with (`pnpm release:build --release-root`, installed at
 * /usr/share/vigil-agent/release-root.json), used only when `trustedRootFile` does not exist: a root the
 * administrator installed always wins.
 */
const packagedRootFile = z.string().min(1).optional();

/** Where verified releases come from. */
const repositorySchema = z.discriminatedUnion('kind', [
  /** The cloud's repository over mutual TLS (DeviceService.FetchRelease), with the agent's enrolled identity. */
  z.strictObject({
    kind: z.literal('device'),
    /** The agent's identity directory (default `<stateDir>/identity`): read only. */
    identityDir: z.string().min(1).optional(),
    /** host:port of DeviceService; default: the endpoint stored at enrollment. */
    grpcEndpoint: z
      .string()
      .regex(/^(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d{1,5}$/i, 'must be host:port')
      .optional(),
    /** The root this device trusts first, installed by the administrator: `root/1.root.json` of the release keys. */
    trustedRootFile: z.string().min(1),
    packagedRootFile,
  }),
  /**
   * A copy of the repository on a local file system (`metadata/`, `targets/`), e.g. a USB stick at a site with
   * no uplink. Verified exactly like the cloud's: TUF signatures, expiry and hashes, not the medium, are trusted.
   */
  z.strictObject({
    kind: z.literal('directory'),
    dir: z.string().min(1),
    trustedRootFile: z.string().min(1),
    packagedRootFile,
  }),
]);

export const updaterConfigSchema = z.strictObject({
  /** The agent's state directory: the contract files are in `<stateDir>/update/`. */
  stateDir: z.string().min(1).default('/var/lib/vigil'),
  /** The updater's own directory: `releases/`, `journal.json`, TUF metadata and downloads. */
  dataDir: z.string().min(1).default('/var/lib/vigil-updater'),
  /** The release the package installed; `releases/current` points at it when there is no current yet. */
  packagedRelease: z.string().min(1).default('/opt/vigil'),
  repository: repositorySchema,
  /** How often request.json is read (fs.watch wakes the updater sooner when it can). */
  pollSeconds: z.number().min(0.1).max(3600).default(2),
  limits: z
    .strictObject({
      /** Largest signed bundle accepted (refused before download). */
      maxBundleBytes: z
        .number()
        .int()
        .min(1)
        .default(512 * MiB),
      /** Largest total size of the unpacked files (a decompression bomb stops here). */
      maxUnpackedBytes: z
        .number()
        .int()
        .min(1)
        .default(2048 * MiB),
      /** Most entries in a bundle. */
      maxEntries: z.number().int().min(1).max(1_000_000).default(100_000),
    })
    .prefault({}),
  /** Runs argv to restart the agent (what systemd's unit does: stop, then start from `releases/current`). */
  restart: z
    .strictObject({
      command: z
        .array(z.string().min(1))
        .min(1)
        .default(['/usr/bin/systemctl', 'restart', 'vigil-agent.service']),
      timeoutSeconds: z.number().min(1).max(600).default(90),
    })
    .prefault({}),
  health: z
    .strictObject({
      url: z
        .string()
        .regex(/^http:\/\/[^\s]+\/healthz$/, 'must be the agent /healthz URL (http://host:port/healthz)')
        .default('http://127.0.0.1:9464/healthz'),
      /** After a switch, the new agent must be healthy at the end of this time (and stay so) to be committed. */
      bakeSeconds: z.number().min(1).max(3600).default(120),
      probeSeconds: z.number().min(0.1).max(60).default(2),
      /** Consecutive failed probes, after the agent was healthy once, that roll back before the bake ends. */
      failAfterProbes: z.number().int().min(1).max(100).default(3),
      /** The checks of the agent's /healthz `checks` object that must all be ok. */
      requiredChecks: z
        .array(z.enum(['uplink', 'cameras', 'models', 'outbox']))
        .default(['uplink', 'cameras', 'models', 'outbox']),
    })
    .prefault({}),
  /** Releases kept on disk besides current and previous (the oldest go first). */
  keepReleases: z.number().int().min(0).max(20).default(1),
  http: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      /** /metrics and /healthz of the updater itself; 0 = any free port. */
      port: z.number().int().min(0).max(65535).default(9465),
    })
    .prefault({}),
  log: z
    .strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info') })
    .prefault({}),
});
export type UpdaterConfig = z.infer<typeof updaterConfigSchema>;

export function parseUpdaterConfig(data: unknown, where = 'config'): UpdaterConfig {
  const r = updaterConfigSchema.safeParse(data);
  if (!r.success)
    throw new UpdaterError(
      'CONFIG_INVALID',
      `${where}: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
    );
  return r.data;
}

export function loadUpdaterConfig(path: string): UpdaterConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new UpdaterError('CONFIG_INVALID', `cannot read ${path}`, false, { cause });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (cause) {
    throw new UpdaterError('CONFIG_INVALID', `${path}: not JSON`, false, { cause });
  }
  return parseUpdaterConfig(data, path);
}
