import { Option, type Command } from 'commander';
import {
  ApiError,
  DEVICE_STATUSES,
  type ApiDevice,
  type DeviceRevocation,
  type DeviceStatus,
} from '../adapters/api.js';
import { CliError } from '../errors.js';
import { table } from '../format.js';
import {
  apiClient,
  globals,
  int,
  MAX_REASON,
  reasonArg,
  withAuth,
  type AuthOptions,
  type CliContext,
} from './common.js';

/** What each `nats` answer of a revocation means for the device, in words. */
export const NATS_REVOCATION: Readonly<Record<DeviceRevocation['nats'], string>> = {
  cut: 'its NATS connections are closed now and it cannot connect again',
  pending:
    "NATS will be updated on the cloud's next push (it retries; until then the device may stay connected)",
  tls_only: 'NATS access ends when its certificate expires (NATS runs without per-device credentials here)',
};

/** `vigil devices`: a tenant's device registry (list, get) and revocation, through the REST API. */
export function register(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const devices = program
    .command('devices')
    .description("a tenant's gateways: list, show and revoke them (REST API)");

  /** A 404 on one device, said plainly (the API answers the same for another tenant's device). */
  const notFound = async <T>(id: string, o: AuthOptions, call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      if (err instanceof ApiError && err.status === 404)
        throw new CliError(
          `no device ${id} in ${o.token === undefined ? `tenant ${o.tenant}` : "the token's tenant"} (API answered 404)`,
          1,
          { cause: err },
        );
      throw err;
    }
  };

  withAuth(
    devices
      .command('list')
      .description('list devices by id (GET /v1/devices)')
      .option('--site <id>', 'only devices of this site')
      .addOption(
        new Option('--status <status>', 'only devices with this status').choices([...DEVICE_STATUSES]),
      )
      .option('--limit <n>', 'page size, 1-500 (default 50; 500 with --all)', int(1))
      .option('--cursor <cursor>', 'continue after a previous page (its next_cursor)')
      .option('--all', 'follow the cursors to the last page', false),
  )
    .addHelpText(
      'after',
      `
STATUS is derived by the cloud when asked: online (a heartbeat within fleet.offlineAfterSeconds), offline,
never (no heartbeat yet) or revoked.

Examples:
  pnpm vigil devices list --tenant dev --site hq --status offline
  pnpm vigil --json devices list --all | jq -r .id`,
    )
    .action(
      async (
        o: AuthOptions & {
          site?: string;
          status?: DeviceStatus;
          limit?: number;
          cursor?: string;
          all: boolean;
        },
        cmd: Command,
      ) => {
        const g = globals(cmd);
        const client = await apiClient(ctx, g, o);
        // A table is printed once, after the last page, so that its columns fit every row.
        const rows: ApiDevice[] = [];
        let cursor = o.cursor;
        for (;;) {
          const page = await client.listDevices({
            site: o.site,
            status: o.status,
            limit: o.limit ?? (o.all ? 500 : undefined),
            cursor,
          });
          if (g.json) for (const d of page.items) io.out(JSON.stringify(d));
          else rows.push(...page.items);
          if (!o.all || page.next_cursor === null) {
            if (!g.json) {
              if (rows.length === 0) io.err('no devices');
              else io.out(deviceTable(rows));
            }
            if (page.next_cursor !== null) io.err(`more: --cursor ${page.next_cursor} (or --all)`);
            return;
          }
          cursor = page.next_cursor;
        }
      },
    );

  withAuth(
    devices
      .command('get')
      .description('show one device (GET /v1/devices/<id>)')
      .argument('<id>', 'device id'),
  ).action(async (id: string, o: AuthOptions, cmd: Command) => {
    const g = globals(cmd);
    const client = await apiClient(ctx, g, o);
    const device = await notFound(id, o, () => client.getDevice(id));
    io.out(g.json ? JSON.stringify(device) : deviceDetail(device));
  });

  withAuth(
    devices
      .command('revoke')
      .description('revoke a device for good (POST /v1/devices/<id>/revoke)')
      .argument('<id>', 'device id')
      .requiredOption('--reason <text>', `why, kept with the device (1-${MAX_REASON} characters)`, reasonArg)
      .option('--yes', 'confirm: revocation is permanent', false),
    'admin',
    'devices:revoke',
  )
    .addHelpText(
      'after',
      `
The device's certificates are revoked (the cloud will not renew them) and its NATS access is cut. There is
no undo, hence --yes. Revoking a revoked device reports the first revocation. The revoker recorded and shown
is the principal the cloud authenticated: --token's subject, or the minted token's --sub.

Example:
  pnpm vigil devices revoke gw-1 --tenant dev --reason 'stolen from site hq' --yes`,
    )
    .action(async (id: string, o: AuthOptions & { reason: string; yes: boolean }, cmd: Command) => {
      if (!o.yes)
        throw new CliError(
          `revoking device ${id} is permanent: it loses its certificates and its NATS access, ` +
            'and cannot be un-revoked\nadd --yes to revoke it',
          2,
        );
      const g = globals(cmd);
      const client = await apiClient(ctx, g, o);
      const r = await notFound(id, o, () => client.revokeDevice(id, o.reason));
      if (g.json) {
        io.out(JSON.stringify(r));
        return;
      }
      io.out(
        [
          r.result === 'revoked'
            ? `device ${r.device_id} revoked at ${r.revoked_at} by ${r.revoked_by}`
            : `device ${r.device_id} was already revoked, at ${r.revoked_at} by ${r.revoked_by}`,
          `reason: ${r.reason ?? '-'}`,
          `certificates revoked: ${r.certificates_revoked}`,
          `NATS: ${r.nats}: ${NATS_REVOCATION[r.nats] ?? 'unknown'}`,
        ].join('\n'),
      );
    });
}

function deviceTable(items: readonly ApiDevice[]): string {
  return table(
    ['ID', 'SITE', 'STATUS', 'LAST SEEN', 'AGENT', 'UPDATE', 'ENROLLED'],
    items.map((d) => [
      d.id,
      d.site_id ?? '-',
      d.status,
      d.last_seen_at ?? '-',
      d.agent_version ?? '-',
      updateCell(d),
      d.enrolled_at ?? '-',
    ]),
  );
}

/** The updater's state in one cell: `committed`, `baking -> 1.4.0`, `rolled_back 1.4.0`; `-` without one. */
export function updateCell(d: ApiDevice): string {
  const u = d.update;
  if (!u) return '-';
  if (u.state === 'committed' || u.state === 'idle') return u.state;
  if (u.state === 'rolled_back' || u.state === 'failed') return `${u.state} ${u.target ?? ''}`.trim();
  return u.target ? `${u.state} -> ${u.target}` : u.state;
}

function deviceDetail(d: ApiDevice): string {
  const fields: Array<[string, string | number | null]> = [
    ['id', d.id],
    ['tenant', d.tenant_id],
    ['site', d.site_id],
    ['status', d.status],
    ['last seen', d.last_seen_at],
    ['agent version', d.agent_version],
    ['config version', d.config_version],
    ['heartbeats', d.heartbeats],
    ['created at', d.created_at],
    ['enrolled at', d.enrolled_at],
    ['hardware id', d.hardware_id],
    ['update', updateCell(d)],
    ...(d.update?.reason ? [['update reason', d.update.reason] as [string, string]] : []),
  ];
  if (d.revoked_at !== null)
    fields.push(
      ['revoked at', d.revoked_at],
      ['revoked by', d.revoked_by],
      ['revoke reason', d.revoke_reason],
    );
  return fields.map(([k, v]) => `${`${k}:`.padEnd(16)}${v ?? '-'}`).join('\n');
}
