import type { Command } from 'commander';
import { clip, table } from '../format.js';
import { apiClient, globals, int, withAuth, type AuthOptions, type CliContext } from './common.js';

/** `vigil enroll-token`: one-time, expiring tokens that enroll a gateway (REST API). */
export function register(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const enrollToken = program
    .command('enroll-token')
    .description('one-time, expiring tokens that enroll a gateway into a tenant and site (REST API)');
  withAuth(
    enrollToken
      .command('create')
      .description('create a token (POST /v1/enrollment-tokens); prints the secret, shown only this once')
      .requiredOption('--site <id>', 'site the gateway will belong to')
      .option('--ttl <seconds>', 'lifetime, 60 s to 7 days', int(60, 7 * 24 * 3600), 86_400)
      .option('--note <text>', 'free text, e.g. where the gateway goes'),
    'admin',
    'enrollment-tokens:create',
  ).action(async (o: AuthOptions & { site: string; ttl: number; note?: string }, cmd: Command) => {
    const g = globals(cmd);
    const created = await (
      await apiClient(ctx, g, o)
    ).createEnrollmentToken({ site_id: o.site, ttl_seconds: o.ttl, note: o.note });
    if (g.json) {
      io.out(JSON.stringify(created));
      return;
    }
    io.out(created.token);
    io.err(
      `token ${created.id} for ${created.tenant_id}/${created.site_id}, one use, expires ${created.expires_at}` +
        '\nstore it now: it cannot be shown again',
    );
  });

  withAuth(
    enrollToken
      .command('list')
      .description(
        "a tenant's enrollment tokens, newest first (GET /v1/enrollment-tokens); never the secrets",
      )
      .option('--all', 'include used tokens', false),
    'admin',
    'enrollment-tokens:read',
  ).action(async (o: AuthOptions & { all: boolean }, cmd: Command) => {
    const g = globals(cmd);
    const { items } = await (await apiClient(ctx, g, o)).listEnrollmentTokens(o.all);
    if (g.json) {
      for (const t of items) io.out(JSON.stringify(t));
      return;
    }
    if (items.length === 0) {
      io.err('no enrollment tokens');
      return;
    }
    io.out(
      table(
        ['ID', 'SITE', 'EXPIRES', 'USED BY', 'CREATED BY', 'NOTE'],
        items.map((t) => [
          t.id,
          t.site_id,
          t.expires_at,
          t.used_by_device ?? (t.used_at === null ? '-' : '?'),
          t.created_by,
          clip(t.note ?? '', 40),
        ]),
      ),
    );
  });
}
