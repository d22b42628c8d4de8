import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { defaultPkiDir } from '@vigil/certs';
import { ApiClient, type ApiEvent } from './adapters/api.js';
import {
  DEFAULT_AUDIENCE,
  DEFAULT_ISSUER,
  loadDevSigningKey,
  MAX_TTL_SECONDS,
  mintToken,
} from './adapters/dev-token.js';
import { connectNats, type NatsHandle } from './adapters/nats.js';
import {
  DEAD_LETTER_STREAM,
  decodeEvent,
  getDeadLetter,
  iterateDeadLetters,
  replayAll,
  replaySequences,
  type DeadLetter,
  type ReplayOutcome,
} from './dlq.js';
import { CliError, type Io } from './errors.js';
import { clip, eventView, hexDump, table } from './format.js';

export const DEFAULT_API_URL = 'http://127.0.0.1:8080';
export const DEFAULT_NATS_URL = 'tls://localhost:14222';

interface GlobalOptions {
  api: string;
  nats: string;
  pki: string;
  json: boolean;
}

interface AuthOptions {
  tenant: string;
  role: string[];
  token?: string;
  issuer: string;
  audience: string;
}

export interface CliDeps {
  io: Io;
  now?: () => Date;
}

const int =
  (min: number, max = Number.MAX_SAFE_INTEGER) =>
  (value: string): number => {
    const n = /^\d{1,15}$/.test(value) ? Number(value) : Number.NaN;
    if (!(n >= min && n <= max))
      throw new InvalidArgumentError(
        max === Number.MAX_SAFE_INTEGER
          ? `expected an integer >= ${min}`
          : `expected an integer from ${min} to ${max}`,
      );
    return n;
  };
const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Builds the `vigil` command tree. Output goes through `deps.io`; `state.exitCode` carries soft failures. */
export function buildProgram(deps: CliDeps, state: { exitCode: number }): Command {
  const { io } = deps;
  const program = new Command('vigil');
  program
    .description(
      'Administer a Vigil deployment: dev tokens, events through the REST API, dead letters on NATS.',
    )
    .addOption(
      new Option('--api <url>', 'cloud REST API base URL').env('VIGIL_API_URL').default(DEFAULT_API_URL),
    )
    .addOption(
      new Option('--nats <url>', 'NATS server (mutual TLS)').env('VIGIL_NATS_URL').default(DEFAULT_NATS_URL),
    )
    .addOption(
      new Option('--pki <dir>', 'dev PKI dir: the cloud service cert for NATS and the dev token signing key')
        .env('VIGIL_PKI_DIR')
        .default(defaultPkiDir(), '<repo>/.vigil/pki'),
    )
    .option('--json', 'machine-readable output: JSON, lists as one JSON object per line', false)
    .configureOutput({
      writeOut: (s) => io.out(s.replace(/\n$/, '')),
      writeErr: (s) => io.err(s.replace(/\n$/, '')),
    })
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .addHelpText(
      'after',
      `
Examples:
  pnpm vigil token mint --tenant dev --role admin
  pnpm vigil events list --tenant dev --label person --since 2026-01-31T00:00:00Z
  pnpm vigil events list --tenant dev --all --json | jq .label
  pnpm vigil events get 0190f5c2-8a3e-7b1c-9d2e-4f5a6b7c8d9e --tenant dev
  pnpm vigil enroll-token create --tenant dev --site hq --ttl 3600 --note 'lobby gateway'
  pnpm vigil enroll-token list --tenant dev --all
  pnpm vigil dlq list
  pnpm vigil dlq show 12
  pnpm vigil dlq replay 12 13
  pnpm vigil dlq replay --all --reason unknown_device --dry-run

Global options go before or after the command (pnpm vigil events list --json).
Exit codes: 0 done, 1 failed (or something was not replayed), 2 usage error.`,
    );
  const globals = (cmd: Command): GlobalOptions => cmd.optsWithGlobals<GlobalOptions>();

  // ---- token --------------------------------------------------------------------------------------------
  const token = program.command('token').description('development access tokens for the REST API');
  token
    .command('mint')
    .description('mint a token signed with the dev signing key (<pki>/api-signing.jwk.json)')
    .requiredOption('--tenant <id>', 'tenant claim: the tenant every API call is scoped to')
    .option(
      '--role <role>',
      'role claim, repeatable (admin, operator, viewer, auditor) (default: admin)',
      collect,
      [],
    )
    .option(
      '--ttl <seconds>',
      `lifetime in seconds, at most ${MAX_TTL_SECONDS}`,
      int(1, MAX_TTL_SECONDS),
      3600,
    )
    .option('--sub <subject>', 'subject claim (default: dev@<tenant>)')
    .option('--issuer <iss>', 'issuer claim: must match the cloud auth.issuer', DEFAULT_ISSUER)
    .option('--audience <aud>', 'audience claim: must match the cloud auth.audience', DEFAULT_AUDIENCE)
    .addHelpText(
      'after',
      '\nPrints only the token on stdout:\n  TOKEN=$(pnpm vigil token mint --tenant dev)\n  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/v1/events',
    )
    .action(
      async (
        o: { tenant: string; role: string[]; ttl: number; sub?: string; issuer: string; audience: string },
        cmd: Command,
      ) => {
        const g = globals(cmd);
        const roles = o.role.length > 0 ? o.role : ['admin'];
        const minted = await mintToken(loadDevSigningKey(g.pki), {
          tenant: o.tenant,
          roles,
          sub: o.sub ?? `dev@${o.tenant}`,
          ttlSeconds: o.ttl,
          issuer: o.issuer,
          audience: o.audience,
          ...(deps.now ? { now: deps.now() } : {}),
        });
        if (g.json)
          io.out(
            JSON.stringify({
              token: minted.token,
              expires_at: minted.expiresAt.toISOString(),
              claims: minted.claims,
            }),
          );
        else {
          io.out(minted.token);
          io.err(`tenant ${o.tenant}, roles ${roles.join(',')}, expires ${minted.expiresAt.toISOString()}`);
        }
      },
    );

  // ---- events -------------------------------------------------------------------------------------------
  const events = program.command('events').description("a tenant's detection events, through the REST API");
  const withAuth = (cmd: Command): Command =>
    cmd
      .addOption(
        new Option('--tenant <id>', 'tenant to mint the dev token for').env('VIGIL_TENANT').default('dev'),
      )
      .option('--role <role>', 'role of the minted token, repeatable (default: viewer)', collect, [])
      .addOption(
        new Option('--token <jwt>', 'use this bearer token instead of minting one').env('VIGIL_TOKEN'),
      )
      .option('--issuer <iss>', 'issuer of the minted token', DEFAULT_ISSUER)
      .option('--audience <aud>', 'audience of the minted token', DEFAULT_AUDIENCE);
  const apiClient = async (
    g: GlobalOptions,
    a: AuthOptions,
    defaultRoles: string[] = ['viewer'],
  ): Promise<ApiClient> => {
    const bearer =
      a.token ??
      (
        await mintToken(loadDevSigningKey(g.pki), {
          tenant: a.tenant,
          roles: a.role.length > 0 ? a.role : defaultRoles,
          sub: `vigil-cli@${a.tenant}`,
          ttlSeconds: 300,
          issuer: a.issuer,
          audience: a.audience,
          ...(deps.now ? { now: deps.now() } : {}),
        })
      ).token;
    return new ApiClient(g.api, bearer);
  };

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
        const client = await apiClient(g, o);
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
    const event = await (await apiClient(g, o)).getEvent(id);
    io.out(g.json ? JSON.stringify(event) : JSON.stringify(event, null, 2));
  });

  // ---- enroll-token -------------------------------------------------------------------------------------
  const enrollToken = program
    .command('enroll-token')
    .description('one-time, expiring tokens that enroll a gateway into a tenant and site (REST API)');
  // The minted dev token is an admin's unless --role says otherwise (only admin and installer may).
  const enrollRole = (cmd: Command): Command =>
    cmd.addHelpText('after', '\nThe minted dev token has role admin unless --role is given.');

  enrollRole(
    withAuth(
      enrollToken
        .command('create')
        .description('create a token (POST /v1/enrollment-tokens); prints the secret, shown only this once')
        .requiredOption('--site <id>', 'site the gateway will belong to')
        .option('--ttl <seconds>', 'lifetime, 60 s to 7 days', int(60, 7 * 24 * 3600), 86_400)
        .option('--note <text>', 'free text, e.g. where the gateway goes'),
    ),
  ).action(async (o: AuthOptions & { site: string; ttl: number; note?: string }, cmd: Command) => {
    const g = globals(cmd);
    const created = await (
      await apiClient(g, o, ['admin'])
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

  enrollRole(
    withAuth(
      enrollToken
        .command('list')
        .description(
          "a tenant's enrollment tokens, newest first (GET /v1/enrollment-tokens); never the secrets",
        )
        .option('--all', 'include used tokens', false),
    ),
  ).action(async (o: AuthOptions & { all: boolean }, cmd: Command) => {
    const g = globals(cmd);
    const { items } = await (await apiClient(g, o, ['admin'])).listEnrollmentTokens(o.all);
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

  // ---- dlq ----------------------------------------------------------------------------------------------
  const dlq = program
    .command('dlq')
    .description(`dead letters: events that cloud ingest refused (stream ${DEAD_LETTER_STREAM}, over NATS)`)
    .addHelpText(
      'after',
      '\nConnects to --nats with the `cloud` service certificate from --pki (services/cloud.crt and .key).',
    );
  const withNats = async <T>(
    cmd: Command,
    fn: (h: NatsHandle, g: GlobalOptions) => Promise<T>,
  ): Promise<T> => {
    const g = globals(cmd);
    const h = await connectNats(g.nats, g.pki);
    try {
      return await fn(h, g);
    } finally {
      await h.close();
    }
  };

  dlq
    .command('list')
    .description('list dead letters, oldest first: sequence, time, reason, original subject, detail')
    .option('--limit <n>', 'at most this many', int(1, 100_000), 100)
    .action(async (o: { limit: number }, cmd: Command) =>
      withNats(cmd, async ({ js, jsm }, g) => {
        const rows: string[][] = [];
        for await (const dl of iterateDeadLetters(js, jsm, { limit: o.limit })) {
          if (g.json) io.out(JSON.stringify(deadLetterJson(dl)));
          else
            rows.push([
              String(dl.seq),
              dl.failedAt || dl.storedAt.toISOString(),
              dl.reason || '-',
              dl.originalSubject || '-',
              clip(dl.detail, 80),
            ]);
        }
        if (g.json) return;
        if (rows.length === 0) io.err(`${DEAD_LETTER_STREAM} is empty`);
        else io.out(table(['SEQ', 'FAILED AT', 'REASON', 'ORIGINAL SUBJECT', 'DETAIL'], rows));
      }),
    );

  dlq
    .command('show')
    .description(
      'show one dead letter: headers, then the payload decoded as a DetectionEvent (else a hex dump)',
    )
    .argument('<seq>', `sequence in ${DEAD_LETTER_STREAM}`, int(1))
    .action(async (seq: number, _o: unknown, cmd: Command) =>
      withNats(cmd, async ({ jsm }, g) => {
        const dl = await getDeadLetter(jsm, seq);
        if (dl === null) throw new CliError(`no message ${seq} in ${DEAD_LETTER_STREAM}`);
        const event = decodeEvent(dl.data);
        if (g.json) {
          io.out(
            JSON.stringify({
              ...deadLetterJson(dl),
              headers: dl.headers,
              decoded: event ? eventView(event) : null,
              payload_base64: Buffer.from(dl.data).toString('base64'),
            }),
          );
          return;
        }
        const lines = [
          `seq:         ${dl.seq}`,
          `stored at:   ${dl.storedAt.toISOString()}`,
          `subject:     ${dl.subject}`,
          'headers:',
          ...Object.entries(dl.headers).flatMap(([k, vs]) => vs.map((v) => `  ${k}: ${v}`)),
          `payload:     ${dl.data.length} bytes`,
        ];
        if (event) lines.push('decoded DetectionEvent:', JSON.stringify(eventView(event), null, 2));
        else lines.push('does not decode as a DetectionEvent; first bytes:', hexDump(dl.data));
        io.out(lines.join('\n'));
      }),
    );

  dlq
    .command('replay')
    .description('republish dead letters to their original subject (into EVENTS), then delete them')
    .argument('[seq...]', `sequences in ${DEAD_LETTER_STREAM}`)
    .option('--all', 'every dead letter present now', false)
    .option('--reason <reason>', 'with --all: only those with this Vigil-Dlq-Reason')
    .option('--dry-run', 'say what would be replayed; publish and delete nothing', false)
    .addHelpText(
      'after',
      `
Replay sends the ORIGINAL bytes back to Vigil-Original-Subject with a JetStream publish (msgID
replay-<seq>-<event id>), so ingest sees the event again; storage stays exactly-once (ingest is idempotent
on the event id), and replaying the same dead letter twice publishes it once.

Examples:
  pnpm vigil dlq replay 12 13
  pnpm vigil dlq replay --all --reason unknown_device --dry-run`,
    )
    .action(
      async (seqArgs: string[], o: { all: boolean; reason?: string; dryRun: boolean }, cmd: Command) => {
        const hasSeqs = seqArgs.length > 0;
        if (o.all === hasSeqs)
          throw new CliError('give sequences or --all (not both)\n(add --help for usage)', 2);
        if (o.reason !== undefined && !o.all) throw new CliError('--reason needs --all', 2);
        const seqs = seqArgs.map((s) => {
          try {
            return int(1)(s);
          } catch {
            throw new CliError(`not a sequence number: ${JSON.stringify(s)}`, 2);
          }
        });
        await withNats(cmd, async ({ js, jsm }, g) => {
          const counts: Record<string, number> = {};
          const report = (r: ReplayOutcome): void => {
            counts[r.status] = (counts[r.status] ?? 0) + 1;
            if (g.json) io.out(JSON.stringify(r));
            else
              io.out(
                `seq ${r.seq}: ${r.status}${r.subject ? ` -> ${r.subject}` : ''}` +
                  `${r.msgID ? ` (msgID ${r.msgID}${r.streamSeq !== undefined ? `, EVENTS seq ${r.streamSeq}` : ''})` : ''}: ${r.note}`,
              );
          };
          const opts = { dryRun: o.dryRun };
          if (o.all) await replayAll(js, jsm, { ...opts, reason: o.reason }, report);
          else await replaySequences(js, jsm, seqs, opts, report);
          const summary = Object.entries(counts)
            .map(([k, v]) => `${v} ${k}`)
            .join(', ');
          io.err(summary === '' ? 'nothing to replay' : summary);
          if ((counts.failed ?? 0) + (counts.kept ?? 0) + (counts['not-found'] ?? 0) > 0) state.exitCode = 1;
        });
      },
    );

  return program;
}

function deadLetterJson(dl: DeadLetter): Record<string, unknown> {
  return {
    seq: dl.seq,
    stored_at: dl.storedAt.toISOString(),
    subject: dl.subject,
    reason: dl.reason,
    detail: dl.detail,
    original_subject: dl.originalSubject,
    original_stream_seq: dl.originalStreamSeq,
    failed_at: dl.failedAt,
    size_bytes: dl.data.length,
  };
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

/** Runs the CLI on `argv` (without node and script) and returns the exit code; never calls process.exit. */
export async function runCli(argv: readonly string[], deps: CliDeps): Promise<number> {
  const state = { exitCode: 0 };
  const program = buildProgram(deps, state);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return state.exitCode;
  } catch (err) {
    // Commander already printed its message (usage errors) or the help text.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof CliError) {
      deps.io.err(`vigil: ${err.message}`);
      return err.exitCode;
    }
    deps.io.err(`vigil: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
