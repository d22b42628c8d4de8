import { createWriteStream, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Option, type Command } from 'commander';
import { EvidenceError, parseExportPublicKey, verifyEvidence, type ErasureView } from '@vigil/cloud';
import { ApiClient } from '../adapters/api.js';
import { CliError } from '../errors.js';
import {
  apiClient,
  bearerToken,
  collect,
  globals,
  int,
  MAX_REASON,
  reasonArg,
  withAuth,
  type AuthOptions,
  type CliContext,
} from './common.js';

/** Largest archive `vigil export verify` reads (it holds the archive in memory). */
const MAX_VERIFY_BYTES = 2 * 1024 * 1024 * 1024;

interface ScopeOptions {
  event: string[];
  track?: string;
  camera?: string;
  device?: string;
  site?: string;
  from?: string;
  to?: string;
}

/** The API scope of the options; exactly one kind, with what that kind needs (usage errors: exit 2). */
export function scopeOf(o: ScopeOptions, allowed: readonly string[]): Record<string, unknown> {
  const kinds = [
    o.event.length > 0 && 'event',
    o.track !== undefined && 'track',
    o.camera !== undefined && 'camera',
    o.site !== undefined && 'site',
  ].filter((k): k is string => k !== false);
  if (kinds.length === 0 && o.device !== undefined) kinds.push('device');
  const usage = (m: string): CliError => new CliError(m, 2);
  if (kinds.length !== 1)
    throw usage(
      `name one scope: ${allowed.map((k) => `--${k}`).join(', ')} (got ${kinds.length === 0 ? 'none' : kinds.join(' and ')})`,
    );
  const kind = kinds[0]!;
  if (!allowed.includes(kind))
    throw usage(`--${kind} is not a scope here; use ${allowed.map((k) => `--${k}`).join(', ')}`);
  if ((kind === 'track' || kind === 'camera') && o.device === undefined)
    throw usage(`--${kind} needs --device`);
  if (kind === 'camera' && (o.from === undefined || o.to === undefined))
    throw usage('--camera needs --from and --to');
  if (kind !== 'camera' && (o.from !== undefined || o.to !== undefined))
    throw usage('--from and --to go with --camera');
  if ((kind === 'event' || kind === 'site') && o.device !== undefined)
    throw usage(`--device does not go with --${kind}`);
  switch (kind) {
    case 'event':
      return { kind, event_ids: o.event };
    case 'track':
      return { kind, device_id: o.device, track_id: o.track };
    case 'camera':
      return { kind, device_id: o.device, camera_id: o.camera, from: o.from, to: o.to };
    case 'device':
      return { kind, device_id: o.device };
    default:
      return { kind, site_id: o.site };
  }
}

const scopeOptions = (cmd: Command, withDeviceAndSite: boolean): Command => {
  cmd
    .option('--event <id>', 'an event id (repeatable)', collect, [])
    .option('--track <id>', 'a track id (with --device)')
    .option('--camera <id>', 'a camera id (with --device, --from, --to)')
    .option(
      '--device <id>',
      withDeviceAndSite
        ? 'the device (alone: everything of the device)'
        : 'the device of --track or --camera',
    )
    .option('--from <time>', 'start of the camera time range, RFC 3339 (inclusive)')
    .option('--to <time>', 'end of the camera time range, RFC 3339 (exclusive)');
  if (withDeviceAndSite) cmd.option('--site <id>', 'everything of a site');
  return cmd;
};

function progressLine(v: ErasureView): string {
  const c = v.counts;
  return (
    `erasure ${v.id}: ${v.state}${v.state === 'done' ? '' : ` (${v.phase})`}; ` +
    `media ${c.media.erased} erased, ${c.media.held} held, ${c.media.failed} failed; ` +
    `events ${c.events.erased} erased, ${c.events.held} held`
  );
}

/** `vigil erase`, `vigil erasures get` and `vigil export` (create, verify, public-key). */
export function register(program: Command, ctx: CliContext): void {
  const { io } = ctx;

  withAuth(
    scopeOptions(
      program
        .command('erase')
        .description('erase everything stored in a scope (POST /v1/erasures), then follow it to the end'),
      true,
    )
      .requiredOption(
        '--reason <text>',
        `why (1-${MAX_REASON} characters; kept on the request, not on the audit log)`,
        reasonArg,
      )
      .option('--yes', 'confirm: erasure cannot be undone', false)
      .option('--no-wait', 'return once the request is accepted')
      .addOption(
        new Option('--timeout <seconds>', 'give up following after this long')
          .argParser(int(1, 86_400))
          .default(3600),
      ),
    'admin',
    'erasures:write',
  )
    .addHelpText(
      'after',
      `
Items under a legal hold are skipped and counted as held. Progress goes to stderr, the result to stdout.

Examples:
  pnpm vigil erase --tenant dev --device gw-1 --camera lobby --from 2026-12-07T09:00:00Z --to 2026-12-07T10:00:00Z --reason 'DSR 4471' --yes
  pnpm vigil erase --tenant dev --event 0193a0b4-... --event 0193a0b5-... --reason 'DSR 4472' --yes
  pnpm vigil erase --tenant dev --device gw-1 --track 17 --reason 'DSR 4473' --yes`,
    )
    .action(
      async (
        o: AuthOptions & ScopeOptions & { reason: string; yes: boolean; wait: boolean; timeout: number },
        cmd: Command,
      ) => {
        const scope = scopeOf(o, ['event', 'track', 'camera', 'device', 'site']);
        if (!o.yes)
          throw new CliError(
            `this erases everything stored in ${JSON.stringify(scope)} for good\nadd --yes to erase it`,
            2,
          );
        const g = globals(cmd);
        const client = await apiClient(ctx, g, o);
        let view = await client.call<ErasureView>('POST', '/v1/erasures', { scope, reason: o.reason });
        if (o.wait) {
          const deadline = Date.now() + o.timeout * 1000;
          let last = '';
          while (view.state !== 'done') {
            const line = progressLine(view);
            if (line !== last) io.err(line);
            last = line;
            if (Date.now() > deadline)
              throw new CliError(
                `erasure ${view.id} is not done after ${o.timeout} s; follow it with: vigil erasures get ${view.id}`,
                1,
              );
            await new Promise((r) => setTimeout(r, 500));
            view = await client.call<ErasureView>('GET', `/v1/erasures/${view.id}`);
          }
        }
        io.out(g.json ? JSON.stringify(view) : progressLine(view));
        if (view.counts.failed > 0) ctx.state.exitCode = 1;
      },
    );

  const erasures = program.command('erasures').description('erasure requests');
  withAuth(
    erasures
      .command('get')
      .description('an erasure request and its counts (GET /v1/erasures/<id>)')
      .argument('<id>', 'erasure id'),
    'admin',
    'erasures:read',
  ).action(async (id: string, o: AuthOptions, cmd: Command) => {
    const g = globals(cmd);
    const view = await (
      await apiClient(ctx, g, o)
    ).call<ErasureView>('GET', `/v1/erasures/${encodeURIComponent(id)}`);
    io.out(g.json ? JSON.stringify(view) : progressLine(view));
  });

  const exp = withAuth(
    scopeOptions(
      program
        .command('export')
        .description(
          'export the evidence of a scope as one signed archive (POST /v1/exports), then verify it',
        ),
      false,
    )
      .option('-o, --output <file>', 'write the archive here (tar)')
      .option('--reason <text>', `why (1-${MAX_REASON} characters)`, reasonArg),
    'admin',
    'exports:create',
  )
    .addHelpText(
      'after',
      `
Anyone can check an archive offline with the cloud's public key (vigil export public-key):
  pnpm vigil export verify evidence.tar --public-key export-key.pem

Examples:
  pnpm vigil export --tenant dev --device gw-1 --camera lobby --from 2026-12-07T09:00:00Z --to 2026-12-07T10:00:00Z --reason 'case 17' -o evidence.tar
  pnpm vigil export --tenant dev --event 0193a0b4-... --reason 'case 18' -o evidence.tar`,
    )
    .action(async (o: AuthOptions & ScopeOptions & { output?: string; reason?: string }, cmd: Command) => {
      if (!o.output) throw new CliError('-o, --output <file> is required', 2);
      if (!o.reason) throw new CliError('--reason <text> is required', 2);
      const scope = scopeOf(o, ['event', 'track', 'camera']);
      const g = globals(cmd);
      const client = new ApiClient(g.api, await bearerToken(ctx, g, o), 30 * 60_000);
      const res = await client.postForStream('/v1/exports', { scope, reason: o.reason });
      const tmp = `${o.output}.part`;
      try {
        if (!res.body) throw new CliError('the API answered without an archive', 1);
        await pipeline(Readable.fromWeb(res.body), createWriteStream(tmp, { mode: 0o600 }));
      } catch (err) {
        rmSync(tmp, { force: true });
        if (err instanceof CliError) throw err;
        throw new CliError(
          `the export broke off mid-stream (${(err as Error).message}); nothing was kept`,
          1,
          { cause: err },
        );
      }
      // Checked before it is kept: a stream cut short by the cloud (an audit failure) has no manifest.
      const key = await client.call<{ pem: string }>('GET', '/v1/exports/public-key');
      try {
        const v = await verifyEvidence(
          readFileSync(tmp),
          parseExportPublicKey(key.pem, 'the API public key'),
        );
        renameSync(tmp, o.output);
        io.out(
          g.json
            ? JSON.stringify({
                file: o.output,
                export_id: v.manifest.export_id,
                files: v.files,
                bytes: v.bytes,
                counts: v.manifest.counts,
              })
            : `wrote ${o.output}: export ${v.manifest.export_id}, ${v.manifest.counts.events} events, ${v.manifest.counts.media} media files ` +
                `(${v.bytes} bytes), signed by key ${v.manifest.key_id}` +
                (v.manifest.counts.media_unavailable > 0
                  ? `; ${v.manifest.counts.media_unavailable} media objects were missing from the store`
                  : ''),
        );
      } catch (err) {
        rmSync(tmp, { force: true });
        throw err instanceof EvidenceError
          ? new CliError(`the archive from the API does not verify: ${err.message}`, 1, { cause: err })
          : err;
      }
    });

  // Its options (--tenant, --token, -o ...) are those of `vigil export`: commander gives options of a command
  // with subcommands to the parent, so they are read from there.
  exp
    .command('public-key')
    .description(
      "print the cloud's evidence public key (PEM; GET /v1/exports/public-key); -o writes it to a file",
    )
    .action(async (_o: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<AuthOptions & { output?: string; json: boolean }>();
      const g = globals(cmd);
      const key = await (
        await apiClient(ctx, g, o)
      ).call<{ pem: string; kid: string }>('GET', '/v1/exports/public-key');
      if (o.output) {
        writeFileSync(o.output, key.pem);
        io.err(`wrote the public key ${key.kid} to ${o.output}`);
      } else io.out(g.json ? JSON.stringify(key) : key.pem.trimEnd());
    });

  exp
    .command('verify')
    .description('verify an evidence archive offline: every file digest and the manifest signature')
    .argument('<file>', 'the archive (tar)')
    .requiredOption('--public-key <file>', "the cloud's evidence public key (PEM, JWK, or the API's JSON)")
    .action(async (file: string, o: { publicKey: string }, cmd: Command) => {
      const g = globals(cmd);
      let size: number;
      try {
        size = statSync(file).size;
      } catch (err) {
        throw new CliError(`${file}: cannot be read (${(err as Error).message})`, 1, { cause: err });
      }
      if (size > MAX_VERIFY_BYTES)
        throw new CliError(
          `${file}: ${size} bytes, over the ${MAX_VERIFY_BYTES} bytes this command reads`,
          1,
        );
      let keyText: string;
      try {
        keyText = readFileSync(o.publicKey, 'utf8');
      } catch (err) {
        throw new CliError(`${o.publicKey}: cannot be read (${(err as Error).message})`, 1, { cause: err });
      }
      try {
        const v = await verifyEvidence(readFileSync(file), parseExportPublicKey(keyText, o.publicKey));
        const m = v.manifest;
        io.out(
          g.json
            ? JSON.stringify({
                ok: true,
                export_id: m.export_id,
                files: v.files,
                bytes: v.bytes,
                key_id: m.key_id,
                created_at: m.created_at,
                created_by: m.created_by,
                scope: m.scope,
              })
            : `OK ${file}: ${v.files} files (${v.bytes} bytes) match the manifest, signed by key ${m.key_id}; ` +
                `export ${m.export_id} of tenant ${m.tenant} by ${m.created_by} at ${m.created_at}, scope ${JSON.stringify(m.scope)}`,
        );
      } catch (err) {
        if (!(err instanceof EvidenceError)) throw err;
        if (g.json)
          io.out(JSON.stringify({ ok: false, code: err.code, message: err.message, problems: err.problems }));
        throw new CliError(
          [`FAILED ${file}: ${err.message}`, ...err.problems.map((p) => `  ${p}`)].join('\n'),
          1,
          { cause: err },
        );
      }
    });
}
