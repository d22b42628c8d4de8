import type { Command } from 'commander';
import type { ApiEvent } from '../adapters/api.js';
import { apiClient, globals, int, withAuth, type AuthOptions, type CliContext } from './common.js';
import { registerWatch } from './watch.js';

/** `vigil events`: a tenant's detection events, through the REST API. */
export function register(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const events = program.command('events').description("a tenant's detection events, through the REST API");

  withAuth(
    events
      .command('list')
      .description('list events newest first (GET /v1/events)')
      .option('--device <id>', 'only this device')
      .option('--camera <id>', 'only this camera')
      .option('--label <label>', 'only this label (person, car, ...)')
      .option('--since <time>', 'occurred at or after this RFC 3339 time, e.g. 2026-01-31T00:00:00Z')
      .option('--until <time>', 'occurred before this RFC 3339 time')
      .option('--limit <n>', 'page size, 1-500 (default 50; 500 with --all)', int(1))
      .option('--cursor <cursor>', 'continue after a previous page (its next_cursor)')
      .option('--all', 'follow the cursors to the last page', false),
  )
    .addHelpText(
      'after',
      '\nExamples:\n  pnpm vigil events list --tenant dev --camera lobby --limit 10\n  pnpm vigil --json events list --all --since 2026-01-31T00:00:00Z > events.ndjson',
    )
    .action(
      async (
        o: AuthOptions & {
          device?: string;
          camera?: string;
          label?: string;
          since?: string;
          until?: string;
          limit?: number;
          cursor?: string;
          all: boolean;
        },
        cmd: Command,
      ) => {
        const g = globals(cmd);
        const client = await apiClient(ctx, g, o);
        let cursor = o.cursor;
        let count = 0;
        let first = true;
        for (;;) {
          const page = await client.listEvents({
            device: o.device,
            camera: o.camera,
            label: o.label,
            since: o.since,
            until: o.until,
            limit: o.limit ?? (o.all ? 500 : undefined),
            cursor,
          });
          count += page.items.length;
          if (g.json) for (const e of page.items) io.out(JSON.stringify(e));
          else if (page.items.length > 0) io.out(eventRows(page.items, first));
          first = false;
          if (!o.all || page.next_cursor === null) {
            if (!g.json && count === 0) io.err('no events');
            if (page.next_cursor !== null) io.err(`more: --cursor ${page.next_cursor} (or --all)`);
            return;
          }
          cursor = page.next_cursor;
        }
      },
    );

  withAuth(
    events
      .command('get')
      .description('show one event (GET /v1/events/<id>)')
      .argument('<id>', 'event id (a UUID)'),
  ).action(async (id: string, o: AuthOptions, cmd: Command) => {
    const g = globals(cmd);
    const event = await (await apiClient(ctx, g, o)).getEvent(id);
    io.out(g.json ? JSON.stringify(event) : JSON.stringify(event, null, 2));
  });

  registerWatch(events, ctx);
}

/** Fixed-width rows, so that pages printed one after another (--all) line up. */
function eventRows(items: readonly ApiEvent[], header: boolean): string {
  const cols: Array<[string, number, (e: ApiEvent) => string]> = [
    ['OCCURRED AT', 24, (e) => e.occurred_at],
    ['EVENT ID', 36, (e) => e.event_id],
    ['DEVICE', 12, (e) => e.device_id],
    ['CAMERA', 10, (e) => e.camera_id],
    ['LABEL', 10, (e) => e.label],
    ['SCORE', 5, (e) => e.score.toFixed(2)],
    ['PHASE', 10, (e) => e.phase],
    ['ZONES', 0, (e) => (e.trigger_zone ? `${e.trigger_zone}*` : e.zones.join(','))],
  ];
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(cols[i]![1]))
      .join('  ')
      .trimEnd();
  const rows = items.map((e) => line(cols.map(([, , f]) => f(e))));
  return (header ? [line(cols.map(([h]) => h)), ...rows] : rows).join('\n');
}
