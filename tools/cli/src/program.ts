import { Command, CommanderError, Option } from 'commander';
import { defaultPkiDir } from '@vigil/certs';
import { versionLine } from '@vigil/proto';
import { CliError, type Io } from './errors.js';
import type { CliContext } from './commands/common.js';
import { register as registerConfig } from './commands/config.js';
import { register as registerDevices } from './commands/devices.js';
import { register as registerDlq } from './commands/dlq.js';
import { register as registerEnrollToken } from './commands/enroll-token.js';
import { register as registerEvents } from './commands/events.js';
import { register as registerMedia } from './commands/media.js';
import { register as registerRelease } from './commands/release.js';
import { register as registerPrivacy } from './commands/privacy.js';
import { register as registerWebhooks } from './commands/webhooks.js';
import { register as registerAlerts } from './commands/alerts.js';
import { register as registerRollout } from './commands/rollout.js';
import { register as registerRetention } from './commands/retention.js';
import { register as registerHolds } from './commands/holds.js';
import { register as registerToken } from './commands/token.js';

export const DEFAULT_API_URL = 'http://127.0.0.1:8080';
export const DEFAULT_NATS_URL = 'tls://localhost:14222';

export interface CliDeps {
  io: Io;
  now?: () => Date;
}

/**
 * Builds the `vigil` command tree: the root program and its global options here, each command group in
 * commands/<group>.ts. Output goes through `deps.io`; `state.exitCode` carries soft failures.
 */
export function buildProgram(deps: CliDeps, state: { exitCode: number }): Command {
  const { io } = deps;
  const program = new Command('vigil');
  program
    .description(
      'Administer a Vigil deployment: dev tokens, events and devices through the REST API, dead letters on NATS.',
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
    .version(versionLine('vigil'), '--version', 'print the version and the commit it was built from')
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
  pnpm vigil devices list --tenant dev --status offline
  pnpm vigil devices get gw-1 --tenant dev
  pnpm vigil devices revoke gw-1 --tenant dev --reason 'stolen from site hq' --yes
  pnpm vigil config set --scope site --id hq --file body.json --tenant dev
  pnpm vigil config device gw-1 --tenant dev
  pnpm vigil config issue gw-1 --tenant dev
  pnpm vigil models upload yolox_nano.onnx --tenant dev
  pnpm vigil rollout create --tenant dev --body-file body.json --canary 3 --waves 10,50,100 --min-fps-ratio 0.8
  pnpm vigil rollout status 0190f5c2-8a3e-7b1c-9d2e-4f5a6b7c8d9e --tenant dev --watch
  pnpm vigil rollout abort 0190f5c2-8a3e-7b1c-9d2e-4f5a6b7c8d9e --tenant dev --reason 'fps drop'
  pnpm vigil release root init --keys-dir /media/vigil-keys
  pnpm vigil release publish vigil-agent-1.4.0-linux-x64.tar.gz --version 1.4.0 --channel stable \\
    --min-version 1.0.0 --keys-dir /media/vigil-keys --tenant vigil
  pnpm vigil retention policies set --tenant dev --site hq --class redacted_media --max-age 30d --max-bytes 50GiB
  pnpm vigil retention check --tenant dev
  pnpm vigil holds place --tenant dev --device gw-1 --camera lobby --track 17 --reason 'incident 118'
  pnpm vigil erase --tenant dev --device gw-1 --camera lobby --from 2026-12-07T09:00:00Z --to 2026-12-07T10:00:00Z \\
    --reason 'DSR 4471' --yes
  pnpm vigil export --tenant dev --event 0190f5c2-8a3e-7b1c-9d2e-4f5a6b7c8d9e --reason 'case 17' -o evidence.tar
  pnpm vigil export verify evidence.tar --public-key export-key.pem
  pnpm vigil dlq list
  pnpm vigil dlq show 12
  pnpm vigil dlq replay 12 13
  pnpm vigil dlq replay --all --reason unknown_device --dry-run

Global options go before or after the command (pnpm vigil events list --json).
Exit codes: 0 done, 1 failed (or something was not replayed), 2 usage error.`,
    );

  const ctx: CliContext = { io, now: deps.now, state };
  registerToken(program, ctx);
  registerEvents(program, ctx);
  registerEnrollToken(program, ctx);
  registerDevices(program, ctx);
  registerDlq(program, ctx);
  registerRollout(program, ctx);
  registerConfig(program, ctx);
  registerMedia(program, ctx);
  registerWebhooks(program, ctx);
  registerAlerts(program, ctx);
  registerRelease(program, ctx);
  registerRetention(program, ctx);
  registerHolds(program, ctx);
  registerPrivacy(program, ctx);
  return program;
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
