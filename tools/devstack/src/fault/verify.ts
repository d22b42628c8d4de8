// The end-of-run check of the fault test, with bounded memory at any size (>= 1,000,000 events): the ack files
// are streamed into two tables of the tool's own PostgreSQL database (chunks of CHUNK ids) and PostgreSQL does
// the set arithmetic against `events` with anti-joins on its primary key. Nothing holds all ids in memory.
import { createReadStream, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { sql, type Kysely } from 'kysely';
import { readAckLog } from './ack-log.js';

const CHUNK = 5_000;
/** Ids of each failing kind written as evidence at most. */
const EVIDENCE_IDS = 1_000;

export interface EventCounts {
  /** Ids acknowledged (`A`: durable in an agent's outbox): every one must be stored. */
  acked: number;
  /** Ids with an intent line but no ack: killed between the two; stored or not, both are correct. */
  inDoubt: number;
  /** Of those, stored. */
  inDoubtStored: number;
  /** Rows in `events` and distinct event ids among them. */
  rows: number;
  distinct: number;
  /** Acknowledged ids not stored. */
  lost: number;
  /** Rows beyond the first of an event id. */
  duplicates: number;
  /** Rows whose id no agent ever wrote a line for. */
  unexplained: number;
  ackFiles: number;
  /** Last lines cut by a kill mid-write (skipped), and lines that are not ack lines at all (must be 0). */
  tornLines: number;
  malformedLines: number;
}

/** Loads every `acks-*.log` under `agentsDir/<agent>/` and compares them with `events`. */
export async function verifyEvents(
  db: Kysely<unknown>,
  agentsDir: string,
  evidenceDir: string,
): Promise<EventCounts> {
  await sql`drop schema if exists fault_check cascade`.execute(db);
  await sql`create schema fault_check`.execute(db);
  await sql`create table fault_check.intent (id uuid primary key)`.execute(db);
  await sql`create table fault_check.acked (id uuid primary key)`.execute(db);
  const files = existsSync(agentsDir)
    ? readdirSync(agentsDir).flatMap((agent) =>
        readdirSync(join(agentsDir, agent))
          .filter((f) => /^acks-\d+\.log$/.test(f))
          .map((f) => join(agentsDir, agent, f)),
      )
    : [];
  let torn = 0;
  let malformed = 0;
  const pending = { I: [] as string[], A: [] as string[] };
  const flush = async (kind: 'I' | 'A'): Promise<void> => {
    const ids = pending[kind];
    if (ids.length === 0) return;
    pending[kind] = [];
    const table = kind === 'I' ? sql`fault_check.intent` : sql`fault_check.acked`;
    // An id is written once per kind by construction; ON CONFLICT keeps a repeat (never seen) from failing.
    await sql`insert into ${table} (id) select unnest(${ids}::uuid[]) on conflict do nothing`.execute(db);
  };
  for (const file of files) {
    const r = await readAckLog(file, async (kind, id) => {
      pending[kind].push(id);
      if (pending[kind].length >= CHUNK) await flush(kind);
    });
    torn += r.torn;
    malformed += r.malformed;
  }
  await flush('I');
  await flush('A');
  await sql`analyze fault_check.intent`.execute(db);
  await sql`analyze fault_check.acked`.execute(db);

  const one = async (q: ReturnType<typeof sql>): Promise<number> => {
    const { rows } = await sql<{ n: string }>`${q}`.execute(db);
    return Number(rows[0]?.n ?? 0);
  };
  const lostQ = sql`from fault_check.acked a where not exists (select 1 from events e where e.event_id = a.id)`;
  const unexplainedQ = sql`from events e where not exists (select 1 from fault_check.intent i where i.id = e.event_id)`;
  const dupQ = sql`from events group by event_id having count(*) > 1`;
  const inDoubtQ = sql`from fault_check.intent i where not exists (select 1 from fault_check.acked a where a.id = i.id)`;
  const counts: EventCounts = {
    acked: await one(sql`select count(*) as n from fault_check.acked`),
    inDoubt: await one(sql`select count(*) as n ${inDoubtQ}`),
    inDoubtStored: await one(
      sql`select count(*) as n ${inDoubtQ} and exists (select 1 from events e where e.event_id = i.id)`,
    ),
    rows: await one(sql`select count(*) as n from events`),
    distinct: await one(sql`select count(distinct event_id) as n from events`),
    lost: await one(sql`select count(*) as n ${lostQ}`),
    duplicates: await one(sql`select coalesce(sum(c - 1), 0) as n from (select count(*) as c ${dupQ}) d`),
    unexplained: await one(sql`select count(*) as n ${unexplainedQ}`),
    ackFiles: files.length,
    tornLines: torn,
    malformedLines: malformed,
  };
  // An ack without its intent cannot be written (intent first); it would make `unexplained` miss rows.
  const ackedWithoutIntent = await one(
    sql`select count(*) as n from fault_check.acked a where not exists (select 1 from fault_check.intent i where i.id = a.id)`,
  );
  if (ackedWithoutIntent > 0) counts.malformedLines += ackedWithoutIntent;

  const evidence = async (name: string, n: number, q: ReturnType<typeof sql>): Promise<void> => {
    if (n === 0) return;
    const { rows } = await sql<{ id: string }>`${q} limit ${EVIDENCE_IDS}`.execute(db);
    writeFileSync(join(evidenceDir, name), rows.map((r) => r.id).join('\n') + '\n');
  };
  await evidence('lost-ids.txt', counts.lost, sql`select a.id::text as id ${lostQ}`);
  await evidence(
    'unexplained-ids.txt',
    counts.unexplained,
    sql`select e.event_id::text as id ${unexplainedQ}`,
  );
  await evidence('duplicate-ids.txt', counts.duplicates, sql`select event_id::text as id ${dupQ}`);
  return counts;
}

export interface WebhookCounts {
  /** Stored events (each must reach the one webhook, whose filter takes all). */
  expected: number;
  /** Stored events whose id the receiver never got. */
  missing: number;
  /** Requests beyond the first per event: HTTP delivery is at least once (a kill between the 200 and its
   * record), the receiver dedupes by (keyid, event id). Reported, not a failure. */
  repeatedPosts: number;
  /** Received ids that are not stored events (must be 0). */
  unexpected: number;
  /** (webhook, event) pairs the cloud recorded `delivered` more than once, and `dead` ones (both must be 0). */
  recordedTwice: number;
  dead: number;
  /**
   * Jobs the cloud dropped because its webhook outbox was full (a bounded queue: `webhook outbox full: jobs
   * dropped`, summed over every cloud process's log; each is counted in vigil_cloud_webhook_jobs_total
   * {result="dropped"}). Missing events are explained only when they equal this count.
   */
  droppedOutboxFull: number;
}

/** Loads the receiver's file (one event id per request) and compares it with `events` and the delivery records. */
export async function verifyWebhook(
  db: Kysely<unknown>,
  receivedFile: string,
  droppedOutboxFull: number,
): Promise<WebhookCounts> {
  await sql`create table fault_check.received (id uuid not null)`.execute(db);
  let ids: string[] = [];
  const flush = async (): Promise<void> => {
    if (ids.length === 0) return;
    const chunk = ids;
    ids = [];
    await sql`insert into fault_check.received (id) select unnest(${chunk}::uuid[])`.execute(db);
  };
  if (existsSync(receivedFile)) {
    const lines = createInterface({ input: createReadStream(receivedFile, 'utf8'), crlfDelay: Infinity });
    for await (const line of lines) {
      if (!/^[0-9a-f-]{36}$/.test(line)) continue;
      ids.push(line);
      if (ids.length >= CHUNK) await flush();
    }
  }
  await flush();
  await sql`create index on fault_check.received (id)`.execute(db);
  const one = async (q: ReturnType<typeof sql>): Promise<number> => {
    const { rows } = await sql<{ n: string }>`${q}`.execute(db);
    return Number(rows[0]?.n ?? 0);
  };
  return {
    expected: await one(sql`select count(distinct event_id) as n from events`),
    missing: await one(
      sql`select count(distinct e.event_id) as n from events e where not exists (select 1 from fault_check.received r where r.id = e.event_id)`,
    ),
    repeatedPosts: await one(sql`select count(*) - count(distinct id) as n from fault_check.received`),
    unexpected: await one(
      sql`select count(*) as n from fault_check.received r where not exists (select 1 from events e where e.event_id = r.id)`,
    ),
    recordedTwice: await one(
      sql`select count(*) as n from (select 1 from webhook_deliveries where state = 'delivered' group by webhook_id, event_id having count(*) > 1) d`,
    ),
    dead: await one(sql`select count(*) as n from webhook_deliveries where state = 'dead'`),
    droppedOutboxFull,
  };
}
