import type { Command } from 'commander';
import WebSocket from 'ws';
import type { ApiEvent } from '../adapters/api.js';
import { CliError } from '../errors.js';
import {
  bearerToken,
  globals,
  int,
  withAuth,
  type AuthOptions,
  type CliContext,
  type GlobalOptions,
} from './common.js';

interface WatchOptions extends AuthOptions {
  site?: string;
  device?: string;
  camera?: string;
  label?: string;
  count?: number;
  seconds?: number;
}

/** Close codes of the stream (cloud/src/realtime/hub.ts). */
const TOKEN_EXPIRED = 4001;
const SLOW_CONSUMER = 4008;

/** `vigil events watch`: committed events as they arrive, from the cloud's websocket stream (/v1/stream). */
export function registerWatch(events: Command, ctx: CliContext): void {
  withAuth(
    events
      .command('watch')
      .description('print events as the cloud commits them (websocket /v1/stream), until Ctrl-C')
      .option('--site <id>', 'only this site (required for a site-scoped token)')
      .option('--device <id>', 'only this device')
      .option('--camera <id>', 'only this camera')
      .option('--label <label>', 'only this label')
      .option('--count <n>', 'stop after n events', int(1))
      .option('--seconds <n>', 'stop after n seconds', int(1)),
  )
    .addHelpText(
      'after',
      `
A minted dev token lives 5 minutes: when the cloud closes the stream because it expired, watch mints a new
one and reconnects (with --token it stops and says so). Events that arrive while disconnected are not
replayed: list them with \`vigil events list --since <time>\`.

Examples:
  pnpm vigil events watch --tenant dev --label person
  pnpm vigil --json events watch --camera lobby --count 10`,
    )
    .action(async (o: WatchOptions, cmd: Command) => {
      const g = globals(cmd);
      let seen = 0;
      let stop = false;
      const deadline = o.seconds === undefined ? undefined : Date.now() + o.seconds * 1000;
      const onSignal = (): void => {
        stop = true;
      };
      process.once('SIGINT', onSignal);
      try {
        let attempt = 0;
        while (!stop) {
          const code = await watchOnce(
            ctx,
            g,
            o,
            (e) => {
              seen++;
              ctx.io.out(g.json ? JSON.stringify(e) : row(e));
              return (o.count !== undefined && seen >= o.count) || stop;
            },
            deadline,
            () => stop,
          );
          if (code === 'done') return;
          if (code === TOKEN_EXPIRED && o.token !== undefined)
            throw new CliError('the stream closed: the token expired (mint a new one, or omit --token)', 1);
          if (code === SLOW_CONSUMER)
            ctx.io.err('the cloud dropped this stream: output too slow; reconnecting');
          else if (code !== TOKEN_EXPIRED) ctx.io.err(`stream closed (${code}); reconnecting`);
          attempt = code === TOKEN_EXPIRED ? 0 : attempt + 1;
          if (attempt > 10) throw new CliError('the stream keeps closing; is the cloud up (`./dev up`)?', 1);
          await new Promise((r) => setTimeout(r, Math.min(10_000, 250 * 2 ** attempt)));
        }
      } finally {
        process.off('SIGINT', onSignal);
      }
    });
}

/** One connection; resolves 'done' when told to stop, else the close code. Rejects on a refused upgrade. */
async function watchOnce(
  ctx: CliContext,
  g: GlobalOptions,
  o: WatchOptions,
  onEvent: (e: ApiEvent) => boolean,
  deadline: number | undefined,
  stopped: () => boolean,
): Promise<'done' | number> {
  const token = await bearerToken(ctx, g, o);
  const url = new URL('/v1/stream', g.api.replace(/^http/, 'ws'));
  for (const k of ['site', 'device', 'camera', 'label'] as const) {
    const v = o[k];
    if (v !== undefined) url.searchParams.set(k, v);
  }
  const ws = new WebSocket(url, ['vigil.v1'], { headers: { authorization: `Bearer ${token}` } });
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (): void => {
      done = true;
      clearInterval(tick);
      ws.close(1000);
      resolve('done');
    };
    const tick = setInterval(() => {
      if (stopped() || (deadline !== undefined && Date.now() >= deadline)) finish();
    }, 200);
    ws.on('unexpected-response', (_req, res) => {
      clearInterval(tick);
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        let detail = body;
        try {
          detail = (JSON.parse(body) as { detail?: string }).detail ?? body;
        } catch {
          // not JSON
        }
        reject(new CliError(`the cloud refused the stream: ${res.statusCode} ${detail}`, 1));
      });
    });
    ws.on('error', (err) => {
      clearInterval(tick);
      if (!done)
        reject(
          new CliError(`cannot open the stream at ${url.origin} (${err.message}); is the cloud running?`, 1, {
            cause: err,
          }),
        );
    });
    ws.on('message', (data: Buffer) => {
      if (done) return;
      const msg = JSON.parse(data.toString()) as { type: string; event?: ApiEvent };
      if (msg.type === 'ready') ctx.io.err(`watching ${url.pathname}${url.search} (Ctrl-C to stop)`);
      if (msg.type === 'event' && msg.event && onEvent(msg.event)) finish();
    });
    ws.on('close', (code) => {
      clearInterval(tick);
      if (!done) resolve(code);
    });
  });
}

function row(e: ApiEvent): string {
  return [e.occurred_at, e.event_id, e.device_id, e.camera_id, e.label, e.score.toFixed(2), e.phase]
    .join('  ')
    .trimEnd();
}
