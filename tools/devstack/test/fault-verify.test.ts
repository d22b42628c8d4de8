// The fault test's own checks must be able to fail: torn and foreign ack lines, lost, duplicated, unexplained
// and in-doubt rows are each told apart (against a real PostgreSQL), and the verdict names every failure.
import { randomUUID } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '@vigil/cloud';
import { useDatabase } from '@vigil/testkit';
import { AckLogWriter, parseAckLine, readAckLog } from '../src/fault/ack-log.js';
import { FAULT_KINDS, judge, summary, type FaultResult } from '../src/fault/verdict.js';
import { verifyEvents, verifyWebhook, type EventCounts } from '../src/fault/verify.js';

const dir = mkdtempSync(join(tmpdir(), 'vigil-fault-verify-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('ack log', () => {
  it('reads back what was written, skipping a torn last line and foreign lines', async () => {
    const file = join(dir, 'acks-1.log');
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    const w = new AckLogWriter(file);
    w.write('I', ids);
    w.write('A', ids.slice(0, 2));
    w.close();
    appendFileSync(file, 'garbage\n');
    appendFileSync(file, `A ${ids[2]!.slice(0, 20)}`); // cut by a kill -9 in mid-write
    const seen: string[] = [];
    const r = await readAckLog(file, (kind, id) => void seen.push(`${kind} ${id}`));
    expect(r).toEqual({ intents: 3, acks: 2, torn: 1, malformed: 1 });
    expect(seen).toEqual([...ids.map((id) => `I ${id}`), `A ${ids[0]}`, `A ${ids[1]}`]);
  });

  it('parses only complete, well-formed lines', () => {
    const id = randomUUID();
    expect(parseAckLine(`A ${id}`)).toEqual({ kind: 'A', id });
    expect(parseAckLine(`A ${id.slice(0, -1)}`)).toBeUndefined();
    expect(parseAckLine(`X ${id}`)).toBeUndefined();
    expect(parseAckLine(`ack ${id}`)).toBeUndefined();
  });
});

describe('verifyEvents against PostgreSQL', () => {
  const url = useDatabase();
  let db: Kysely<unknown>;
  beforeAll(async () => {
    db = createDb(url(), 2) as unknown as Kysely<unknown>;
    // Just the column the verifier reads, with the real table's primary key shape (event_id, occurred_at).
    await sql`create table events (event_id uuid not null, occurred_at timestamptz not null default now(), primary key (event_id, occurred_at))`.execute(
      db,
    );
  });
  afterAll(() => db?.destroy());

  it('counts lost, duplicated, unexplained and in-doubt events', async () => {
    const agents = join(dir, 'agents');
    mkdirSync(join(agents, 'agent-1'), { recursive: true });
    mkdirSync(join(agents, 'agent-2'), { recursive: true });
    const acked = Array.from({ length: 12_000 }, () => randomUUID()); // more than one insert chunk
    const lost = acked.slice(0, 3);
    const duplicated = acked.slice(3, 5);
    const inDoubt = [randomUUID(), randomUUID(), randomUUID()];
    const unexplained = [randomUUID()];
    const w1 = new AckLogWriter(join(agents, 'agent-1', 'acks-10.log'));
    w1.write('I', acked.slice(0, 7_000));
    w1.write('A', acked.slice(0, 7_000));
    w1.close();
    const w2 = new AckLogWriter(join(agents, 'agent-2', 'acks-20.log'));
    w2.write('I', [...acked.slice(7_000), ...inDoubt]);
    w2.write('A', acked.slice(7_000));
    w2.close();
    writeFileSync(join(agents, 'agent-2', 'outbox.db'), ''); // other files in an agent dir are ignored
    const stored = [...acked.filter((id) => !lost.includes(id)), inDoubt[0]!, ...unexplained];
    await sql`insert into events (event_id) select unnest(${stored}::uuid[])`.execute(db);
    await sql`insert into events (event_id, occurred_at) select unnest(${duplicated}::uuid[]), now() - interval '1 hour'`.execute(
      db,
    );

    const c = await verifyEvents(db, agents, dir);
    expect(c).toEqual({
      acked: 12_000,
      inDoubt: 3,
      inDoubtStored: 1,
      rows: stored.length + 2,
      distinct: stored.length,
      lost: 3,
      duplicates: 2,
      unexplained: 1,
      ackFiles: 2,
      tornLines: 0,
      malformedLines: 0,
    } satisfies EventCounts);
    expect(readFileSync(join(dir, 'lost-ids.txt'), 'utf8').trim().split('\n').sort()).toEqual(
      [...lost].sort(),
    );
    expect(readFileSync(join(dir, 'unexplained-ids.txt'), 'utf8').trim()).toBe(unexplained[0]);
    expect(readFileSync(join(dir, 'duplicate-ids.txt'), 'utf8').trim().split('\n').sort()).toEqual(
      [...duplicated].sort(),
    );

    // The webhook check, on the same events: one never received, one received twice, one foreign id; one
    // (webhook, event) recorded delivered twice and one dead.
    await sql`create table webhook_deliveries (webhook_id uuid not null, event_id uuid not null, state text not null)`.execute(
      db,
    );
    const hook = randomUUID();
    await sql`insert into webhook_deliveries values (${hook}, ${stored[0]!}, 'delivered'), (${hook}, ${stored[0]!}, 'delivered'), (${hook}, ${stored[1]!}, 'dead')`.execute(
      db,
    );
    const received = join(dir, 'received.log');
    const got = [...stored.slice(1), stored[1]!, randomUUID()];
    writeFileSync(received, got.join('\n') + '\nnot-an-id\n');
    expect(await verifyWebhook(db, received, 7)).toEqual({
      expected: stored.length,
      missing: 1,
      repeatedPosts: 1,
      unexpected: 1,
      recordedTwice: 1,
      dead: 1,
      droppedOutboxFull: 7,
    });
  });
});

describe('verdict', () => {
  const clean = (): FaultResult => ({
    target: 100,
    events: {
      acked: 100,
      inDoubt: 2,
      inDoubtStored: 1,
      rows: 101,
      distinct: 101,
      lost: 0,
      duplicates: 0,
      unexplained: 0,
      ackFiles: 3,
      tornLines: 1,
      malformedLines: 0,
    },
    stream: {
      eventsLeft: 0,
      deadLetters: 0,
      strandedRepaired: { removed: 0, reingested: 0, deadLettered: 0 },
      strandedMetric: [],
    },
    faults: { agentKill: 1, ingestKill: 1, natsKill: 1, pgCrash: 1, pgFreeze: 1, uplinkCut: 1 },
    phases: { setup: 1, produce: 1, drain: 1, check: 1 },
    seconds: 4,
    workDir: '/tmp/x',
  });

  it('passes a clean run and prints every fault kind', () => {
    expect(judge(clean())).toEqual([]);
    expect(summary(clean(), [])).toMatch(/^PASS/m);
    expect(summary(clean(), []).match(/^ {2}\S.*\s1$/gm)?.length).toBeGreaterThanOrEqual(FAULT_KINDS.length);
  });

  it('fails on any loss, duplicate, unexplained row, stranded message or missing fault kind', () => {
    const r = clean();
    r.events.lost = 1;
    r.events.duplicates = 1;
    r.events.unexplained = 1;
    r.stream.eventsLeft = 5;
    r.faults.pgFreeze = 0;
    const why = judge(r);
    expect(why).toEqual(
      expect.arrayContaining([
        '1 acknowledged events lost',
        '1 duplicated rows',
        '1 rows no agent wrote',
        '5 messages stranded in EVENTS',
        'no PostgreSQL freeze (SIGSTOP) happened',
      ]),
    );
    expect(summary(r, why)).toContain('evidence kept in /tmp/x');
  });

  it('explains missing webhook events only by exactly as many jobs the full outbox dropped (counted)', () => {
    const hook = (missing: number, dropped: number): FaultResult => ({
      ...clean(),
      webhook: {
        expected: 101,
        missing,
        repeatedPosts: 3,
        unexpected: 0,
        recordedTwice: 0,
        dead: 0,
        droppedOutboxFull: dropped,
      },
    });
    expect(judge(hook(0, 0))).toEqual([]);
    expect(judge(hook(5, 5))).toEqual([]);
    expect(summary(hook(5, 5), [])).toMatch(/dropped: outbox full \(counted\)\s+5/);
    expect(judge(hook(6, 5))).toEqual([
      '6 events never reached the webhook, 5 dropped by the full outbox (counted)',
    ]);
    expect(judge(hook(1, 0))).toHaveLength(1);
  });

  it('cluster mode: judges the kinds it injects, and fails a fault that never recovered', () => {
    const cluster = (recoverMs: number | undefined): FaultResult => ({
      ...clean(),
      faults: { natsLeaderKill: 1, ingestKill: 1, pgCrash: 1 },
      recoveries: [
        {
          kind: 'natsLeaderKill',
          target: 'n2',
          atSecond: 12,
          baselinePerSecond: 400,
          recoverMs: 2_400,
          duringPerSecond: 150,
        },
        {
          kind: 'pgCrash',
          target: 'postgres',
          atSecond: 40,
          baselinePerSecond: 400,
          recoverMs,
          duringPerSecond: 90,
        },
      ],
    });
    expect(judge(cluster(5_100))).toEqual([]);
    const text = summary(cluster(5_100), []);
    expect(text).toMatch(
      /EVENTS leader node kill -9 \(n2\)\s+at 12 s: recovered in 2\.4 s, 150\/s during it \(400\/s before\)/,
    );
    expect(text).toMatch(/every fault recovered/);
    expect(judge(cluster(undefined))).toEqual([
      'no recovery from the PostgreSQL crash (-m immediate) at 40 s (postgres)',
    ]);
    expect(judge({ ...cluster(1_000), faults: { natsLeaderKill: 0, ingestKill: 1, pgCrash: 1 } })).toEqual([
      'no EVENTS leader node kill -9 happened',
    ]);
  });
});
