// The agents' acknowledgements in the fault test, written to files rather than a pipe: a kill -9 can cut a pipe
// short, losing the line of an event that is durable (and then never checked), while a line fsync'd to a file
// survives the kill. One file per producer process, so no two writers share one.
//
// Per batch a producer writes `I <id>` lines (intent) and fsyncs BEFORE appending the events to its outbox, then
// `A <id>` lines and fsyncs AFTER the appends returned. So an `A` id is durable in the outbox (never to be lost),
// and every id that can reach the cloud has at least an `I` line: a row in PostgreSQL with no line at all is
// unexplained. An `I` without `A` (killed between the two) is in doubt: stored or not, both are correct.
import { closeSync, createReadStream, fsyncSync, openSync, writeSync } from 'node:fs';

export type AckKind = 'I' | 'A';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class AckLogWriter {
  private readonly fd: number;

  constructor(path: string) {
    // 'wx': a file that exists already belongs to another process's run (refused, never appended to).
    this.fd = openSync(path, 'wx');
  }

  /** Appends one line per id and fsyncs: when it returns, the lines survive a kill -9 of this process. */
  write(kind: AckKind, ids: readonly string[]): void {
    if (ids.length === 0) return;
    writeSync(this.fd, ids.map((id) => `${kind} ${id}\n`).join(''));
    fsyncSync(this.fd);
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Parses one complete line; undefined for anything else (a torn or foreign line). */
export function parseAckLine(line: string): { kind: AckKind; id: string } | undefined {
  const kind = line[0];
  if ((kind !== 'I' && kind !== 'A') || line[1] !== ' ') return undefined;
  const id = line.slice(2);
  return UUID.test(id) ? { kind, id } : undefined;
}

/**
 * Streams an ack file's lines to `onLine` (bounded memory, any file size). A last line without its newline was
 * torn by a kill in mid-write: skipped, as are malformed lines (counted in the result).
 */
export async function readAckLog(
  path: string,
  onLine: (kind: AckKind, id: string) => void | Promise<void>,
): Promise<{ intents: number; acks: number; torn: number; malformed: number }> {
  const r = { intents: 0, acks: 0, torn: 0, malformed: 0 };
  let rest = '';
  for await (const chunk of createReadStream(path, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
    const lines = (rest + (chunk as string)).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      const p = parseAckLine(line);
      if (!p) {
        if (line !== '') r.malformed++;
        continue;
      }
      if (p.kind === 'I') r.intents++;
      else r.acks++;
      await onLine(p.kind, p.id);
    }
  }
  if (rest !== '') r.torn++;
  return r;
}
