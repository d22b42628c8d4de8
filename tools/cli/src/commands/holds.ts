import { InvalidArgumentError, type Command } from 'commander';
import { CliError } from '../errors.js';
import { table } from '../format.js';
import { apiClient, globals, int, reasonArg, withAuth, type AuthOptions, type CliContext } from './common.js';

interface Hold {
  id: string;
  kind: string;
  event_id: string | null;
  device_id: string | null;
  camera_id: string | null;
  track_id: string | null;
  from: string | null;
  to: string | null;
  reason: string;
  state: string;
  effective: boolean;
  placed_by: string;
  placed_at: string;
  approved_by: string | null;
  release_requested_by: string | null;
  released_by: string | null;
}

const STATES = ['effective', 'pending', 'released', 'all'];

const isoTime = (value: string): string => {
  const t = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(value) || Number.isNaN(t))
    throw new InvalidArgumentError('expected an RFC 3339 time, e.g. 2026-12-01T10:00:00Z');
  return new Date(t).toISOString();
};

function covers(h: Hold): string {
  switch (h.kind) {
    case 'event':
      return `event ${h.event_id ?? '?'}`;
    case 'track':
      return `track ${h.device_id ?? '?'}/${h.camera_id ?? '?'}/${h.track_id ?? '?'}`;
    case 'camera_range':
      return `camera ${h.device_id ?? '?'}/${h.camera_id ?? '?'} [${h.from ?? '?'}, ${h.to ?? '?'})`;
    default:
      return `device ${h.device_id ?? '?'}`;
  }
}

const line = (h: Hold): string =>
  `hold ${h.id} ${h.state}${h.effective ? ' (holding)' : ' (not holding)'}: ${covers(h)}`;

/** `vigil holds`: legal holds (REST API; placing and releasing need a reason, admins only). */
export function register(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const holds = program
    .command('holds')
    .description('legal holds: retention and erasure skip what they cover until released');

  withAuth(
    holds
      .command('place')
      .description(
        'place a hold on an event, a track, a camera over a time range, or a device (POST /v1/holds)',
      )
      .option('--event <id>', 'one event')
      .option('--device <id>', 'a device (alone: the whole device)')
      .option('--camera <id>', 'one camera of --device, with --track or --from and --to')
      .option('--track <id>', 'one track of --camera')
      .option('--from <time>', 'start of the range (RFC 3339), with --camera', isoTime)
      .option('--to <time>', 'end of the range (exclusive)', isoTime)
      .requiredOption('--reason <text>', 'why (on the audit log)', reasonArg),
    'admin',
    'holds:write',
  )
    .addHelpText(
      'after',
      `
Under the tenant's two-admin rule (vigil holds settings --two-admin on) the hold waits for another admin's
approval (vigil holds approve <id>) before it holds anything.

Examples:
  pnpm vigil holds place --tenant dev --event 0190f5c2-8a3e-7b1c-9d2e-4f5a6b7c8d9e --reason 'police request 55'
  pnpm vigil holds place --tenant dev --device gw-1 --camera lobby --track 17 --reason 'incident 118'
  pnpm vigil holds place --tenant dev --device gw-1 --camera lobby --from 2026-12-01T10:00:00Z \\
    --to 2026-12-01T11:00:00Z --reason 'insurance claim'`,
    )
    .action(
      async (
        o: AuthOptions & {
          event?: string;
          device?: string;
          camera?: string;
          track?: string;
          from?: string;
          to?: string;
          reason: string;
        },
        cmd: Command,
      ) => {
        let body: Record<string, string>;
        if (o.event && !o.device && !o.camera) body = { kind: 'event', event_id: o.event };
        else if (o.device && !o.event && !o.camera && !o.track && !o.from && !o.to)
          body = { kind: 'device', device_id: o.device };
        else if (o.device && o.camera && o.track && !o.from && !o.to)
          body = { kind: 'track', device_id: o.device, camera_id: o.camera, track_id: o.track };
        else if (o.device && o.camera && o.from && o.to && !o.track)
          body = { kind: 'camera_range', device_id: o.device, camera_id: o.camera, from: o.from, to: o.to };
        else
          throw new CliError(
            'name one scope: --event, --device, --device --camera --track, or --device --camera --from --to',
            2,
          );
        const g = globals(cmd);
        const h = await (
          await apiClient(ctx, g, o)
        ).call<Hold>('POST', '/v1/holds', { ...body, reason: o.reason });
        io.out(g.json ? JSON.stringify(h) : line(h));
        if (!g.json && h.state === 'place_pending')
          io.err('another admin must approve it: vigil holds approve ' + h.id);
      },
    );

  withAuth(
    holds
      .command('release')
      .description('release a hold (POST /v1/holds/<id>/release)')
      .argument('<id>', 'hold id')
      .requiredOption('--reason <text>', 'why (on the audit log)', reasonArg),
    'admin',
    'holds:write',
  ).action(async (id: string, o: AuthOptions & { reason: string }, cmd: Command) => {
    const g = globals(cmd);
    const h = await (
      await apiClient(ctx, g, o)
    ).call<Hold>('POST', `/v1/holds/${encodeURIComponent(id)}/release`, { reason: o.reason });
    io.out(g.json ? JSON.stringify(h) : line(h));
    if (!g.json && h.state === 'release_pending')
      io.err('still holding until another admin approves the release');
  });

  withAuth(
    holds
      .command('approve')
      .description("approve another admin's pending placement or release (POST /v1/holds/<id>/approve)")
      .argument('<id>', 'hold id')
      .option('--note <text>', 'a note for the audit log', reasonArg),
    'admin',
    'holds:write',
  ).action(async (id: string, o: AuthOptions & { note?: string }, cmd: Command) => {
    const g = globals(cmd);
    const h = await (
      await apiClient(ctx, g, o)
    ).call<Hold>('POST', `/v1/holds/${encodeURIComponent(id)}/approve`, o.note ? { note: o.note } : {});
    io.out(g.json ? JSON.stringify(h) : line(h));
  });

  withAuth(
    holds
      .command('list')
      .description("the tenant's holds, newest first (GET /v1/holds)")
      .option('--state <state>', `${STATES.join(', ')} (default effective)`, (v: string) => {
        if (!STATES.includes(v)) throw new InvalidArgumentError(`expected one of ${STATES.join(', ')}`);
        return v;
      })
      .option('--limit <n>', 'at most this many, 1-100 (default 100)', int(1, 100)),
    'admin',
    'holds:read',
  ).action(async (o: AuthOptions & { state?: string; limit?: number }, cmd: Command) => {
    const g = globals(cmd);
    const q = new URLSearchParams({
      ...(o.state ? { state: o.state } : {}),
      ...(o.limit ? { limit: String(o.limit) } : {}),
    });
    const { items } = await (
      await apiClient(ctx, g, o)
    ).call<{ items: Hold[] }>('GET', `/v1/holds${q.size > 0 ? `?${q.toString()}` : ''}`);
    if (g.json) for (const h of items) io.out(JSON.stringify(h));
    else if (items.length === 0) io.err('no holds');
    else
      io.out(
        table(
          ['ID', 'STATE', 'COVERS', 'PLACED BY', 'APPROVED BY', 'REASON'],
          items.map((h) => [h.id, h.state, covers(h), h.placed_by, h.approved_by ?? '-', h.reason]),
        ),
      );
  });

  withAuth(
    holds
      .command('settings')
      .description('show, or turn on or off, the two-admin rule (GET/POST /v1/privacy/settings)')
      .option(
        '--two-admin <on|off>',
        'on: at once; off: needs a second admin to ask for it too',
        (v: string) => {
          if (v !== 'on' && v !== 'off') throw new InvalidArgumentError('expected on or off');
          return v;
        },
      ),
    'admin',
    'holds:read',
  ).action(async (o: AuthOptions & { twoAdmin?: 'on' | 'off' }, cmd: Command) => {
    const g = globals(cmd);
    const client = await apiClient(ctx, g, o);
    const s =
      o.twoAdmin === undefined
        ? await client.call<{ holds_two_admin: boolean; two_admin_off_requested_by: string | null }>(
            'GET',
            '/v1/privacy/settings',
          )
        : await client.call<{ holds_two_admin: boolean; two_admin_off_requested_by: string | null }>(
            'POST',
            '/v1/privacy/settings',
            { holds_two_admin: o.twoAdmin === 'on' },
          );
    if (g.json) io.out(JSON.stringify(s));
    else {
      io.out(`two-admin rule: ${s.holds_two_admin ? 'on' : 'off'}`);
      if (s.two_admin_off_requested_by)
        io.err(`turning it off was asked by ${s.two_admin_off_requested_by}: another admin must ask too`);
    }
  });
}
