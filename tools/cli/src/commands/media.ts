import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ApiError } from '../adapters/api.js';
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

interface ErasedMedia {
  media_id: string;
  result: 'erased' | 'already_deleted';
  deleted_at: string;
  deleted_reason: string;
}

interface AuditEntry {
  seq: string;
  at: string;
  actor: string;
  action: string;
  resource: string | null;
  outcome: string;
  detail: Record<string, unknown>;
}

/** `vigil media` (snapshots: download, erase) and `vigil audit` (the audit log), through the REST API. */
export function register(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const media = program
    .command('media')
    .description('snapshots uploaded by devices: download and erase them');

  /** 404 and 410, said plainly. */
  const explain = async <T>(id: string, call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      if (err instanceof ApiError && err.status === 404)
        throw new CliError(`no media ${id} that this token may see (API answered 404)`, 1, { cause: err });
      if (err instanceof ApiError && err.status === 410)
        throw new CliError(`media ${id} was deleted: ${err.message.split(': ').slice(1).join(': ')}`, 1, {
          cause: err,
        });
      throw err;
    }
  };

  withAuth(
    media
      .command('get')
      .description('download a snapshot (GET /v1/media/<id>); the read is recorded on the audit log')
      .argument('<id>', "media id (an event's snapshot.media_id)")
      .requiredOption('-o, --output <file>', 'write the bytes here'),
    'operator',
  )
    .addHelpText(
      'after',
      `
Operators may read snapshots that the device redacted; unredacted ones are personal data (admins only).

Example:
  pnpm vigil media get 01931f7e-... --tenant dev -o snapshot.jpg`,
    )
    .action(async (id: string, o: AuthOptions & { output: string }, cmd: Command) => {
      const g = globals(cmd);
      const client = await apiClient(ctx, g, o);
      const { bytes, headers } = await explain(id, () =>
        client.download(`/v1/media/${encodeURIComponent(id)}`),
      );
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const etag = headers.get('etag')?.replaceAll('"', '');
      if (etag !== undefined && etag !== sha256)
        throw new CliError(`media ${id}: the bytes hash to ${sha256}, the API said ${etag}; not written`, 1);
      writeFileSync(o.output, bytes, { mode: 0o600 });
      const info = {
        media_id: id,
        file: o.output,
        bytes: bytes.length,
        sha256,
        content_type: headers.get('content-type'),
      };
      io.out(
        g.json
          ? JSON.stringify(info)
          : `wrote ${bytes.length} bytes (${info.content_type}, sha256 ${sha256}) to ${o.output}`,
      );
    });

  withAuth(
    media
      .command('erase')
      .description('erase a snapshot for good (POST /v1/media/<id>/erase): right to erasure')
      .argument('<id>', 'media id')
      .requiredOption('--reason <text>', `why, kept on the audit log (1-${MAX_REASON} characters)`, reasonArg)
      .option('--yes', 'confirm: erasure cannot be undone', false),
    'admin',
  ).action(async (id: string, o: AuthOptions & { reason: string; yes: boolean }, cmd: Command) => {
    if (!o.yes)
      throw new CliError(`erasing media ${id} deletes its bytes for good\nadd --yes to erase it`, 2);
    const g = globals(cmd);
    const client = await apiClient(ctx, g, o);
    const r = await explain(id, () =>
      client.call<ErasedMedia>('POST', `/v1/media/${encodeURIComponent(id)}/erase`, { reason: o.reason }),
    );
    io.out(
      g.json
        ? JSON.stringify(r)
        : r.result === 'erased'
          ? `media ${r.media_id} erased at ${r.deleted_at}`
          : `media ${r.media_id} was already deleted (${r.deleted_reason}) at ${r.deleted_at}`,
    );
  });

  withAuth(
    program
      .command('audit')
      .description("read the tenant's audit log, newest first (GET /v1/audit-log)")
      .option('--action <action>', 'only this action, e.g. media.read')
      .option('--actor <actor>', 'only this actor')
      .option('--since <time>', 'at or after this RFC 3339 time')
      .option('--limit <n>', 'entries, 1-500 (default 50)', int(1, 500)),
    'auditor',
  ).action(
    async (
      o: AuthOptions & { action?: string; actor?: string; since?: string; limit?: number },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      const client = await apiClient(ctx, g, o);
      const qs = new URLSearchParams();
      if (o.action) qs.set('action', o.action);
      if (o.actor) qs.set('actor', o.actor);
      if (o.since) qs.set('since', o.since);
      if (o.limit) qs.set('limit', String(o.limit));
      const q = qs.toString();
      const page = await client.call<{ items: AuditEntry[]; next_cursor: string | null }>(
        'GET',
        `/v1/audit-log${q ? `?${q}` : ''}`,
      );
      if (g.json) for (const e of page.items) io.out(JSON.stringify(e));
      else if (page.items.length === 0) io.err('no entries');
      else
        io.out(
          table(
            ['SEQ', 'AT', 'ACTOR', 'ACTION', 'OUTCOME', 'RESOURCE'],
            page.items.map((e) => [e.seq, e.at, e.actor, e.action, e.outcome, e.resource ?? '-']),
          ),
        );
    },
  );
}
