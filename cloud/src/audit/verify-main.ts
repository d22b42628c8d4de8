import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createDb } from '../storage/db.js';
import { AuditLog } from './audit-log.js';

const HELP = `Usage: audit-verify [--database-url <url>] [--from-seq <n>] [--batch-size <n>]

Walks the audit log in seq order, recomputes every hash and checks every link, and names the first entry
that does not verify. Reads only; safe while the cloud runs.
  --database-url  PostgreSQL URL (env DATABASE_URL)
  --from-seq      start at this entry (default 1)
  --batch-size    entries per query (default 1000)
  --help, -h      show this help
Prints "audit log OK: N entries, head <hash>" (keep the head hash elsewhere: the chain alone cannot show that
entries were cut off at its end) or "audit log BROKEN at seq N: <reason>".
Exit codes: 0 intact, 1 broken, 2 could not verify (usage, connection or query error).`;

const PROGRESS_EVERY_MS = 2_000;

function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[1-9][0-9]*$/.test(value)) throw new UsageError(`${name} must be a positive integer`);
  return Number(value);
}

class UsageError extends Error {}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      'database-url': { type: 'string' },
      'from-seq': { type: 'string' },
      'batch-size': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const url = values['database-url'] ?? process.env.DATABASE_URL;
  if (!url) throw new UsageError('no database given (--database-url or DATABASE_URL)');
  const fromSeq = positiveInt('--from-seq', values['from-seq']);
  const batchSize = positiveInt('--batch-size', values['batch-size']);

  const db = createDb(url, 1);
  try {
    const audit = new AuditLog(db, pino({ level: 'silent' }), new Registry());
    const started = Date.now();
    let lastReport = started;
    const result = await audit.verify({
      ...(fromSeq !== undefined ? { fromSeq } : {}),
      ...(batchSize !== undefined ? { batchSize } : {}),
      onProgress: ({ checked, seq }) => {
        const now = Date.now();
        if (now - lastReport < PROGRESS_EVERY_MS) return;
        lastReport = now;
        const rate = Math.round(checked / ((now - started) / 1000));
        console.error(`audit-verify: ${checked} entries checked (seq ${seq}), ${rate}/s`);
      },
    });
    if (result.firstBroken) {
      console.log(`audit log BROKEN at seq ${result.firstBroken.seq}: ${result.firstBroken.reason}`);
      console.error(`audit-verify: ${result.checked} entries before it verified`);
      return 1;
    }
    const head = result.head ? result.head.hash.toString('hex') : 'unknown';
    console.log(`audit log OK: ${result.checked} entries, head ${head}`);
    return 0;
  } finally {
    await db.destroy();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    console.error(`audit-verify: ${message}`);
    if (err instanceof UsageError) console.error(`\n${HELP}`);
    process.exit(2);
  },
);
