import type { Command } from 'commander';
import { table } from '../format.js';
import { apiClient, collect, globals, int, withAuth, type AuthOptions, type CliContext } from './common.js';

interface Webhook {
  id: string;
  url: string;
  filter: { labels?: string[]; sites?: string[]; cameras?: string[] };
  description: string | null;
  enabled: boolean;
  created_at: string;
  disabled_reason: string | null;
  secret?: string;
}

interface Delivery {
  event_id: string;
  attempt: number;
  state: string;
  http_status: number | null;
  error: string | null;
  duration_ms: number | null;
  at: string;
}

/** `vigil webhooks`: signed event deliveries to partner systems (REST API, admin). */
export function register(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const hooks = program
    .command('webhooks')
    .description('deliver committed events to an HTTPS endpoint, signed (RFC 9421)');

  withAuth(
    hooks
      .command('create')
      .description('add a webhook (POST /v1/webhooks); prints its signing secret once')
      .requiredOption('--url <url>', 'https endpoint that receives the events')
      .option('--label <label>', 'only events with this label (repeatable)', collect, [])
      .option('--site <id>', 'only events of this site (repeatable)', collect, [])
      .option('--camera <id>', 'only events of this camera (repeatable)', collect, [])
      .option('--description <text>', 'what it is for'),
    'admin',
  )
    .addHelpText(
      'after',
      `
Keep the secret: receivers verify each request's Signature (HMAC-SHA256 over method, target URI,
Content-Digest and Content-Type, with created and nonce); it is not shown again.

Example:
  pnpm vigil webhooks create --tenant dev --url https://partner.example/vigil --label person`,
    )
    .action(
      async (
        o: AuthOptions & {
          url: string;
          label: string[];
          site: string[];
          camera: string[];
          description?: string;
        },
        cmd: Command,
      ) => {
        const g = globals(cmd);
        const client = await apiClient(ctx, g, o);
        const filter = {
          ...(o.label.length > 0 ? { labels: o.label } : {}),
          ...(o.site.length > 0 ? { sites: o.site } : {}),
          ...(o.camera.length > 0 ? { cameras: o.camera } : {}),
        };
        const w = await client.call<Webhook>('POST', '/v1/webhooks', {
          url: o.url,
          ...(Object.keys(filter).length > 0 ? { filter } : {}),
          ...(o.description ? { description: o.description } : {}),
        });
        if (g.json) io.out(JSON.stringify(w));
        else {
          io.out(`webhook ${w.id} -> ${w.url}`);
          io.out(`secret: ${w.secret ?? '?'}`);
          io.err('the secret is shown only now: store it where the receiver can read it');
        }
      },
    );

  withAuth(hooks.command('list').description("the tenant's webhooks (GET /v1/webhooks)"), 'admin').action(
    async (o: AuthOptions, cmd: Command) => {
      const g = globals(cmd);
      const { items } = await (await apiClient(ctx, g, o)).call<{ items: Webhook[] }>('GET', '/v1/webhooks');
      if (g.json) for (const w of items) io.out(JSON.stringify(w));
      else if (items.length === 0) io.err('no webhooks');
      else
        io.out(
          table(
            ['ID', 'STATE', 'URL', 'FILTER'],
            items.map((w) => [
              w.id,
              w.enabled ? 'enabled' : `disabled (${w.disabled_reason ?? '-'})`,
              w.url,
              Object.entries(w.filter)
                .map(([k, v]) => `${k}=${(v ?? []).join(',')}`)
                .join(' ') || '-',
            ]),
          ),
        );
    },
  );

  withAuth(
    hooks
      .command('disable')
      .description('stop deliveries to a webhook (POST /v1/webhooks/<id>/disable)')
      .argument('<id>', 'webhook id')
      .option('--reason <text>', 'why (kept with the webhook and on the audit log)'),
    'admin',
  ).action(async (id: string, o: AuthOptions & { reason?: string }, cmd: Command) => {
    const g = globals(cmd);
    const w = await (
      await apiClient(ctx, g, o)
    ).call<Webhook>(
      'POST',
      `/v1/webhooks/${encodeURIComponent(id)}/disable`,
      o.reason ? { reason: o.reason } : {},
    );
    io.out(g.json ? JSON.stringify(w) : `webhook ${w.id} disabled`);
  });

  withAuth(
    hooks
      .command('deliveries')
      .description('recent delivery attempts of a webhook, newest first')
      .argument('<id>', 'webhook id')
      .option('--limit <n>', 'attempts, 1-200 (default 50)', int(1, 200)),
    'admin',
  ).action(async (id: string, o: AuthOptions & { limit?: number }, cmd: Command) => {
    const g = globals(cmd);
    const { items } = await (
      await apiClient(ctx, g, o)
    ).call<{ items: Delivery[] }>(
      'GET',
      `/v1/webhooks/${encodeURIComponent(id)}/deliveries${o.limit ? `?limit=${o.limit}` : ''}`,
    );
    if (g.json) for (const d of items) io.out(JSON.stringify(d));
    else if (items.length === 0) io.err('no deliveries yet');
    else
      io.out(
        table(
          ['AT', 'EVENT ID', 'ATTEMPT', 'STATE', 'HTTP', 'MS', 'ERROR'],
          items.map((d) => [
            d.at,
            d.event_id,
            String(d.attempt),
            d.state,
            d.http_status === null ? '-' : String(d.http_status),
            d.duration_ms === null ? '-' : String(d.duration_ms),
            d.error ?? '',
          ]),
        ),
      );
  });
}
