import { InvalidArgumentError, type Command } from 'commander';
import { CliError } from '../errors.js';
import { table } from '../format.js';
import { apiClient, globals, int, withAuth, type AuthOptions, type CliContext } from './common.js';

interface Policy {
  scope: string;
  site_id: string;
  device_id: string;
  camera_id: string;
  data_class: string;
  max_age_hours: number | null;
  max_bytes: number | null;
  updated_by: string;
  updated_at: string;
}

interface ItemDue {
  id: string;
  at: string;
  due_at: string | null;
  reason: string;
  scope: string;
}

interface Report {
  kept_past_policy: number;
  held_past_policy: number;
  classes: Array<{
    data_class: string;
    age: Array<Record<string, string | number | null>>;
    size: Array<Record<string, string | number | null>>;
    kept_past_policy: ItemDue[];
    held: ItemDue[];
    next_deletions: ItemDue[];
  }>;
  audit: { entries: number; oldest_at: string | null; why: string };
}

const CLASSES = ['event_metadata', 'redacted_media', 'personal_media'];

/** `72h`, `30d` -> hours. */
export function parseAge(value: string): number {
  const m = /^(\d{1,6})([hd])$/.exec(value);
  const n = m ? Number(m[1]) * (m[2] === 'd' ? 24 : 1) : 0;
  if (!(n >= 1 && n <= 876_000)) throw new InvalidArgumentError('expected hours or days, e.g. 72h or 30d');
  return n;
}

/** `1000000`, `500MiB`, `2GiB`, `10KiB` -> bytes. */
export function parseBytes(value: string): number {
  const m = /^(\d{1,15})(KiB|MiB|GiB|TiB)?$/.exec(value);
  const unit = { KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 }[m?.[2] ?? ''] ?? 1;
  const n = m ? Number(m[1]) * unit : 0;
  if (!(n >= 1 && n <= Number.MAX_SAFE_INTEGER))
    throw new InvalidArgumentError('expected bytes, e.g. 1000000, 500MiB or 2GiB');
  return n;
}

const dataClass = (value: string): string => {
  if (!CLASSES.includes(value))
    throw new InvalidArgumentError(
      `expected one of ${CLASSES.join(', ')} (audit has a fixed retention: see retention check)`,
    );
  return value;
};

interface ScopeOptions {
  site?: string;
  device?: string;
  camera?: string;
  class: string;
}

/** The policy key of the API: the scope follows from the options given. */
function keyOf(o: ScopeOptions): Record<string, string> {
  if (o.site && (o.device || o.camera)) throw new CliError('give --site, or --device with --camera', 2);
  if (Boolean(o.device) !== Boolean(o.camera)) throw new CliError('--device and --camera go together', 2);
  if (o.site) return { scope: 'site', site_id: o.site, data_class: o.class };
  if (o.device) return { scope: 'camera', device_id: o.device, camera_id: o.camera!, data_class: o.class };
  return { scope: 'tenant', data_class: o.class };
}

type Cell = string | number | null | undefined;
const where = (r: { site_id?: Cell; device_id?: Cell; camera_id?: Cell }): string =>
  r.device_id ? `${String(r.device_id)}/${String(r.camera_id)}` : r.site_id ? String(r.site_id) : '-';
const hours = (h: number | null | undefined): string =>
  h === null || h === undefined ? 'none' : h % 24 === 0 ? `${h / 24}d` : `${h}h`;

const scopeOptions = (cmd: Command): Command =>
  cmd
    .option('--site <id>', 'a site of the tenant (site scope)')
    .option('--device <id>', 'a device of the tenant, with --camera (camera scope)')
    .option('--camera <id>', 'one camera of --device')
    .requiredOption('--class <class>', `data class: ${CLASSES.join(', ')}`, dataClass);

/** `vigil retention`: retention policies and the retention check (REST API). */
export function register(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const retention = program
    .command('retention')
    .description('retention policies per tenant, site, camera and data class, and what is kept past them');
  const policies = retention.command('policies').description('list, set and delete retention policies');

  withAuth(
    policies.command('list').description('defaults and policies (GET /v1/retention/policies)'),
    'admin',
    'retention:read',
  ).action(async (o: AuthOptions, cmd: Command) => {
    const g = globals(cmd);
    const r = await (
      await apiClient(ctx, g, o)
    ).call<{ defaults: Record<string, { max_age_hours: number | null }>; items: Policy[] }>(
      'GET',
      '/v1/retention/policies',
    );
    if (g.json) {
      io.out(JSON.stringify(r));
      return;
    }
    const rows = [
      ...Object.entries(r.defaults).map(([c, d]) => [
        'default',
        '-',
        c,
        hours(d.max_age_hours),
        'none',
        'config',
      ]),
      ...r.items.map((p) => [
        p.scope,
        where(p),
        p.data_class,
        hours(p.max_age_hours),
        p.max_bytes === null ? 'none' : String(p.max_bytes),
        p.updated_by,
      ]),
    ];
    io.out(table(['SCOPE', 'WHERE', 'CLASS', 'MAX AGE', 'MAX BYTES', 'BY'], rows));
  });

  withAuth(
    scopeOptions(
      policies.command('set').description('create or replace a policy (POST /v1/retention/policies)'),
    )
      .option('--max-age <age>', 'age limit: hours or days, e.g. 72h or 30d', parseAge)
      .option(
        '--max-bytes <bytes>',
        'size budget, oldest deleted first: bytes, or e.g. 500MiB, 2GiB',
        parseBytes,
      ),
    'admin',
    'retention:write',
  )
    .addHelpText(
      'after',
      `
The scope follows from the options: none = the tenant, --site = a site, --device and --camera = one camera.
Age limit and size budget each come from the most specific scope that sets them (camera > site > tenant >
the cloud's config default).

Examples:
  pnpm vigil retention policies set --tenant dev --class personal_media --max-age 72h
  pnpm vigil retention policies set --tenant dev --site hq --class redacted_media --max-age 30d --max-bytes 50GiB
  pnpm vigil retention policies set --tenant dev --device gw-1 --camera lobby --class event_metadata --max-age 7d`,
    )
    .action(async (o: AuthOptions & ScopeOptions & { maxAge?: number; maxBytes?: number }, cmd: Command) => {
      if (o.maxAge === undefined && o.maxBytes === undefined)
        throw new CliError('give --max-age, --max-bytes or both', 2);
      const g = globals(cmd);
      const p = await (
        await apiClient(ctx, g, o)
      ).call<Policy>('POST', '/v1/retention/policies', {
        ...keyOf(o),
        ...(o.maxAge !== undefined ? { max_age_hours: o.maxAge } : {}),
        ...(o.maxBytes !== undefined ? { max_bytes: o.maxBytes } : {}),
      });
      io.out(
        g.json
          ? JSON.stringify(p)
          : `${p.scope} ${where(p)} ${p.data_class}: max age ${hours(p.max_age_hours)}, max bytes ${p.max_bytes ?? 'none'}`,
      );
    });

  withAuth(
    scopeOptions(policies.command('delete').description('delete a policy: the next scope governs again')),
    'admin',
    'retention:write',
  ).action(async (o: AuthOptions & ScopeOptions, cmd: Command) => {
    const g = globals(cmd);
    const key = keyOf(o);
    await (await apiClient(ctx, g, o)).call('POST', '/v1/retention/policies/delete', key);
    io.out(
      g.json ? JSON.stringify({ deleted: true, ...key }) : `deleted ${key.scope} ${where(key)} ${o.class}`,
    );
  });

  withAuth(
    retention
      .command('check')
      .description('what is kept past its policy (must be nothing), what is held, what goes next and when')
      .option('--limit <n>', 'items listed per list and class, 1-100 (default 10)', int(1, 100)),
    'admin',
    'retention:read',
  )
    .addHelpText('after', '\nExit code 1 when anything is kept past its policy and not held.')
    .action(async (o: AuthOptions & { limit?: number }, cmd: Command) => {
      const g = globals(cmd);
      const r = await (
        await apiClient(ctx, g, o)
      ).call<Report>('GET', `/v1/retention/check${o.limit ? `?limit=${o.limit}` : ''}`);
      if (r.kept_past_policy > 0) ctx.state.exitCode = 1;
      if (g.json) {
        io.out(JSON.stringify(r));
        return;
      }
      for (const c of r.classes) {
        io.out(`== ${c.data_class}`);
        if (c.age.length > 0)
          io.out(
            table(
              ['AGE SCOPE', 'WHERE', 'MAX AGE', 'ITEMS', 'OVERDUE', 'HELD', 'DUE 24H', 'NEXT DUE'],
              c.age.map((a) => [
                String(a.scope),
                where(a),
                hours(a.max_age_hours as number | null),
                String(a.items),
                String(a.overdue),
                String(a.held),
                String(a.due_within_24h),
                String(a.next_due_at ?? '-'),
              ]),
            ),
          );
        if (c.size.length > 0)
          io.out(
            table(
              ['SIZE SCOPE', 'WHERE', 'BUDGET', 'BYTES', 'ITEMS', 'OVER BUDGET', 'HELD'],
              c.size.map((s) => [
                String(s.scope),
                where(s),
                String(s.max_bytes),
                String(s.bytes),
                String(s.items),
                String(s.over_budget),
                String(s.held),
              ]),
            ),
          );
        const list = (title: string, xs: ItemDue[]): void => {
          if (xs.length === 0) return;
          io.out(`${title}:`);
          for (const x of xs)
            io.out(`  ${x.id}  at ${x.at}  ${x.reason} (${x.scope})${x.due_at ? `  due ${x.due_at}` : ''}`);
        };
        list('KEPT PAST POLICY', c.kept_past_policy);
        list('held past policy', c.held);
        list('next deletions', c.next_deletions);
      }
      io.out(`== audit: ${r.audit.entries} entries, fixed retention (${r.audit.why})`);
      io.out(`kept past policy: ${r.kept_past_policy}, held past policy: ${r.held_past_policy}`);
    });
}
