import type { Command } from 'commander';
import { connectNats, type NatsHandle } from '../adapters/nats.js';
import {
  DEAD_LETTER_STREAM,
  decodeEvent,
  getDeadLetter,
  iterateDeadLetters,
  replayAll,
  replaySequences,
  type DeadLetter,
  type ReplayOutcome,
} from '../dlq.js';
import { CliError } from '../errors.js';
import { clip, eventView, hexDump, table } from '../format.js';
import { globals, int, type CliContext, type GlobalOptions } from './common.js';

/** `vigil dlq`: dead letters on NATS JetStream (list, show, replay). */
export function register(program: Command, ctx: CliContext): void {
  const { io, state } = ctx;
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
