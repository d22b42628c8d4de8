// EXPLAIN (ANALYZE, BUFFERS) of the statements one GET /v1/events page runs, against a database an api-load run
// kept (--database): the windows EventReader.list walks (api/event-windows.ts), or with --single the one
// statement over every partition that lists ran before them. Prints the plans and the rows each window gave.
//
//   node --conditions=@vigil/source --import tsx cloud/bench/events-explain.ts --database vigil_apiload \
//     [--tenant acme] [--site hq] [--label car] [--device gw-3] [--camera cam-2] [--since ISO] [--until ISO]
//     [--cursor-at ISO-with-microseconds --cursor-id UUID] [--limit 50] [--single]
import { parseArgs } from 'node:util';
import { sql, type Kysely } from 'kysely';
import { EventReader, readPartitionSpan, type EventFilter } from '../src/api/event-store.js';
import { planWindows, type TimeWindow } from '../src/api/event-windows.js';
import { createDb } from '../src/index.js';
import type { Database } from '../src/storage/tables.js';

const { values } = parseArgs({
  options: {
    database: { type: 'string', default: 'vigil_apiload' },
    url: { type: 'string' },
    tenant: { type: 'string', default: 'acme' },
    site: { type: 'string' },
    device: { type: 'string' },
    camera: { type: 'string' },
    label: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    'cursor-at': { type: 'string' },
    'cursor-id': { type: 'string' },
    limit: { type: 'string', default: '50' },
    single: { type: 'boolean', default: false },
    // Walk this many times in one session and print the last (the first plans with a cold relation cache).
    repeat: { type: 'string', default: '3' },
  },
});
const url = values.url ?? `postgres://postgres@127.0.0.1:5432/${values.database}`;
const date = (s: string | undefined): Date | undefined => (s === undefined ? undefined : new Date(s));
const f: EventFilter = {
  site: values.site,
  device: values.device,
  camera: values.camera,
  label: values.label,
  since: date(values.since),
  until: date(values.until),
  after:
    values['cursor-at'] === undefined
      ? undefined
      : {
          occurredAt: values['cursor-at'],
          eventId: values['cursor-id'] ?? 'ffffffff-ffff-7fff-bfff-ffffffffffff',
        },
  limit: Number(values.limit),
};

const db: Kysely<Database> = createDb(url, 1);
try {
  const reader = new EventReader(db);
  const span = await readPartitionSpan(db);
  const windows: TimeWindow[] = values.single
    ? [{ from: null, to: null }]
    : planWindows({
        upper: f.after === undefined ? f.until : new Date(`${f.after.occurredAt.slice(0, 19)}Z`),
        since: f.since,
        span,
        now: new Date(),
      });
  process.stdout.write(`partitions: ${JSON.stringify(span)}; windows planned: ${windows.length}\n`);
  let found = 0;
  let out = '';
  for (let k = Number(values.repeat); k > 1; k--) {
    let n = 0;
    for (const w of windows) {
      n += (await reader.listQuery(db, values.tenant, f, w, f.limit + 1 - n).execute()).length;
      if (n > f.limit) break;
    }
  }
  for (const w of windows) {
    const q = reader.listQuery(db, values.tenant, f, w, f.limit + 1 - found);
    const plan = await q.explain<{ 'QUERY PLAN': string }>(undefined, sql`analyze, buffers`);
    const rows = (await q.execute()).length;
    found += rows;
    out +=
      `\n-- window [${w.from?.toISOString() ?? '-inf'}, ${w.to?.toISOString() ?? '+inf'}): ${rows} rows\n` +
      `${plan.map((r) => r['QUERY PLAN']).join('\n')}\n`;
    if (found >= f.limit + 1) break;
  }
  process.stdout.write(out);
} finally {
  await db.destroy();
}
