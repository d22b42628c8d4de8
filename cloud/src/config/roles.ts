import { ConfigError } from '../lib/errors.js';

/**
 * The cloud's roles: one program, each process runs the roles its config (or `--role` / VIGIL_CLOUD_ROLES) names,
 * so each can be scaled on its own. The names are a contract with the deployment manifests (Kubernetes, systemd).
 * - api: the /v1 REST API and the gRPC DeviceService (enrollment, renewal).
 * - ingest: EVENTS -> PostgreSQL (every ingest process pulls from the one durable consumer), commit receipts and
 *   their queries, heartbeats, device config status requests, the stranded-message repair.
 * - media: MEDIA -> the media store (the one durable `media` consumer).
 * - integrations: the webhook/alert outbox relay and the delivery workers.
 * - realtime: the live event stream (GET /v1/stream websocket).
 * - scheduler: the leader lease and the work that must run once: event partitions (and their retention), media
 *   retention, rollouts, release timestamp refresh.
 */
export const CLOUD_ROLES = ['api', 'ingest', 'media', 'integrations', 'realtime', 'scheduler'] as const;
export type CloudRole = (typeof CLOUD_ROLES)[number];

/** At most this many --role flags / list entries: there are six roles, anything past is a typo repeated. */
const MAX_ROLE_ENTRIES = 16;

export function isCloudRole(s: string): s is CloudRole {
  return (CLOUD_ROLES as readonly string[]).includes(s);
}

/**
 * The roles named by `--role` flags (repeatable, each may be a comma list) or else VIGIL_CLOUD_ROLES
 * (`api,ingest`); undefined when neither is given (the config's `roles` apply). Unknown or repeated names are
 * refused with the name, never ignored: a typo must not start a process that silently does nothing.
 */
export function roleOverride(
  flags: readonly string[] | undefined,
  env: string | undefined,
): CloudRole[] | undefined {
  const source =
    flags && flags.length > 0
      ? '--role'
      : env !== undefined && env.trim() !== ''
        ? 'VIGIL_CLOUD_ROLES'
        : undefined;
  if (source === undefined) return undefined;
  const raw = source === '--role' ? flags!.flatMap((f) => f.split(',')) : env!.split(',');
  const names = raw.map((s) => s.trim());
  if (names.length > MAX_ROLE_ENTRIES) throw new ConfigError(`${source}: at most ${MAX_ROLE_ENTRIES} roles`);
  const roles: CloudRole[] = [];
  for (const n of names) {
    if (!isCloudRole(n))
      throw new ConfigError(
        `${source}: unknown role ${JSON.stringify(n.slice(0, 40))} (roles: ${CLOUD_ROLES.join(', ')})`,
      );
    if (roles.includes(n)) throw new ConfigError(`${source}: role ${n} named twice`);
    roles.push(n);
  }
  return roles;
}
