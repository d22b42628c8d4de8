import { sql, type Transaction } from 'kysely';
import { ALERT_JOB_SUBJECT } from '../integrations/jobs.js';
import type { Database } from '../storage/tables.js';
import { capIdentifier, capReference } from './cap.js';
import type { PlannedMessage, TrackEnd } from './plan.js';
import type { AlertIncident } from './store.js';

/*
 * The statements of the alert commit hook and the end sweeper, set-based: each one carries every row of a batch
 * as array parameters (`unnest`), so a batch costs the same few round trips whether one event matches or 500.
 */

type Tx = Transaction<Database>;

/** The job on `vigil.jobs.alerts.deliver`: which message to deliver (its content is in alert_messages). */
export interface AlertJob {
  tenant_id: string;
  message_id: string;
}

/**
 * Waits for each track's advisory lock, in the order given (sorted by the caller: two transactions locking
 * overlapping tracks take them in one order, no deadlock).
 */
export async function lockTracks(tx: Tx, keys: readonly string[]): Promise<void> {
  if (keys.length === 0) return;
  await sql`select pg_advisory_xact_lock(hashtextextended(k, 0))
              from unnest(${keys}::text[]) with ordinality as t(k, i) order by i`.execute(tx);
}

/** Takes the track locks that are free now, waiting for none; returns the keys it holds. */
export async function tryLockTracks(tx: Tx, keys: readonly string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const { rows } = await sql<{ k: string; ok: boolean }>`
    select k, pg_try_advisory_xact_lock(hashtextextended(k, 0)) as ok
      from unnest(${keys}::text[]) with ordinality as t(k, i) order by i`.execute(tx);
  return new Set(rows.filter((r) => r.ok).map((r) => r.k));
}

/** The incidents of these (rule, device, camera, track), row-locked (the caller holds their track locks). */
export async function lockIncidents(
  tx: Tx,
  keys: ReadonlyArray<{ rule_id: string; device_id: string; camera_id: string; track_id: string }>,
): Promise<AlertIncident[]> {
  if (keys.length === 0) return [];
  const { rows } = await sql<AlertIncident>`
    select i.* from unnest(${keys.map((k) => k.rule_id)}::uuid[], ${keys.map((k) => k.device_id)}::text[],
                           ${keys.map((k) => k.camera_id)}::text[], ${keys.map((k) => k.track_id)}::text[])
                    as k(rule_id, device_id, camera_id, track_id)
      join alert_incidents i
        on i.rule_id = k.rule_id and i.device_id = k.device_id and i.camera_id = k.camera_id
       and i.track_id = k.track_id
       for update of i`.execute(tx);
  return rows;
}

/**
 * The ENDs of these tracks at or after each one's `since`, committed or inserted by this transaction (this
 * statement sees what committed before it: the track locks order it after any transaction writing the
 * track). One index probe per track (events_track_idx).
 */
export async function trackEnds(
  tx: Tx,
  tracks: ReadonlyArray<{
    tenant_id: string;
    device_id: string;
    camera_id: string;
    track_id: string;
    since: Date;
  }>,
): Promise<TrackEnd[]> {
  if (tracks.length === 0) return [];
  const { rows } = await sql<TrackEnd>`
    select k.tenant_id, k.device_id, k.camera_id, k.track_id, e.event_id, e.occurred_at
      from unnest(${tracks.map((t) => t.tenant_id)}::text[], ${tracks.map((t) => t.device_id)}::text[],
                  ${tracks.map((t) => t.camera_id)}::text[], ${tracks.map((t) => t.track_id)}::text[],
                  ${tracks.map((t) => t.since)}::timestamptz[])
           as k(tenant_id, device_id, camera_id, track_id, since)
      cross join lateral (
        select event_id, occurred_at from events e
         where e.tenant_id = k.tenant_id and e.device_id = k.device_id and e.track_id = k.track_id
           and e.camera_id = k.camera_id and e.phase = 'end' and e.occurred_at >= k.since) e`.execute(tx);
  return rows;
}

/** Every column the hook and the sweeper change, with its array type; cancelled_by is the operator's. */
const INCIDENT_COLUMNS: ReadonlyArray<readonly [keyof AlertIncident, string]> = [
  ['id', 'uuid'],
  ['tenant_id', 'text'],
  ['rule_id', 'uuid'],
  ['site_id', 'text'],
  ['device_id', 'text'],
  ['camera_id', 'text'],
  ['track_id', 'text'],
  ['state', 'text'],
  ['first_seen_at', 'timestamptz'],
  ['last_seen_at', 'timestamptz'],
  ['last_event_id', 'uuid'],
  ['fingerprint', 'text'],
  ['seq', 'integer'],
  ['created_at', 'timestamptz'],
  ['updated_at', 'timestamptz'],
  ['end_at', 'timestamptz'],
  ['end_event_id', 'text'],
  ['end_due_at', 'timestamptz'],
];
/** What an update may change (the identity, the track and created_at stay). */
const MUTABLE = new Set<keyof AlertIncident>([
  'state',
  'first_seen_at',
  'last_seen_at',
  'last_event_id',
  'fingerprint',
  'seq',
  'updated_at',
  'end_at',
  'end_event_id',
  'end_due_at',
]);

function incidentArrays(rows: readonly AlertIncident[], columns: typeof INCIDENT_COLUMNS) {
  const names = sql.raw(columns.map(([name]) => name).join(', '));
  const arrays = sql.join(
    columns.map(([name, type]) => sql`${rows.map((r) => r[name])}::${sql.raw(type)}[]`),
  );
  return { names, arrays };
}

export async function insertIncidents(tx: Tx, rows: readonly AlertIncident[]): Promise<void> {
  if (rows.length === 0) return;
  const { names, arrays } = incidentArrays(rows, INCIDENT_COLUMNS);
  await sql`insert into alert_incidents (${names}) select * from unnest(${arrays}) as u(${names})`.execute(
    tx,
  );
}

/** Writes each row's state back (rows read and locked by the caller, changed in memory). */
export async function updateIncidents(tx: Tx, rows: readonly AlertIncident[]): Promise<void> {
  if (rows.length === 0) return;
  const columns = INCIDENT_COLUMNS.filter(([name]) => name === 'id' || MUTABLE.has(name));
  const { names, arrays } = incidentArrays(rows, columns);
  const set = sql.raw(
    columns
      .filter(([name]) => name !== 'id')
      .map(([name]) => `${name} = u.${name}`)
      .join(', '),
  );
  await sql`update alert_incidents i set ${set} from unnest(${arrays}) as u(${names}) where i.id = u.id`.execute(
    tx,
  );
}

/**
 * Writes each planned message for each of its enabled targets: the row in alert_messages (identifier from
 * incident + seq, `sent`, the reference to the previous message of the incident for that target, whether
 * written before or earlier in `msgs`) and its job in the outbox (relayed to JOBS). Four statements at most.
 * Returns how many rows each planned message wrote.
 */
export async function writeMessageBatch(tx: Tx, msgs: readonly PlannedMessage[]): Promise<number[]> {
  const written = msgs.map(() => 0);
  const ids = [...new Set(msgs.flatMap((m) => m.targetIds))];
  if (ids.length === 0) return written;
  const enabled = await tx
    .selectFrom('alert_targets')
    .select(['id', 'tenant_id'])
    .where(sql<boolean>`id = any(${ids}::uuid[])`)
    .where('enabled', '=', true)
    .execute();
  const tenantOf = new Map(enabled.map((t) => [t.id, t.tenant_id]));
  const rows = msgs.flatMap((m, n) =>
    [...new Set(m.targetIds)]
      .filter((t) => tenantOf.get(t) === m.incident.tenant_id)
      .map((target) => ({ m, n, target, pair: `${m.incident.id} ${target}` })),
  );
  if (rows.length === 0) return written;

  // The previous message of each (incident, target): the newest written before, below the first seq planned.
  const firstSeq = new Map<string, { incident: string; target: string; seq: number }>();
  for (const r of rows) {
    const seen = firstSeq.get(r.pair);
    if (!seen || r.m.seq < seen.seq)
      firstSeq.set(r.pair, { incident: r.m.incident.id, target: r.target, seq: r.m.seq });
  }
  const lookup = [...firstSeq.values()].filter((f) => f.seq > 1);
  const stored = new Map<string, { seq: number; identifier: string; sent: Date }>();
  if (lookup.length > 0) {
    const { rows: prev } = await sql<{
      incident_id: string;
      target_id: string;
      seq: number;
      identifier: string;
      sent: Date;
    }>`
      select distinct on (m.incident_id, m.target_id) m.incident_id, m.target_id, m.seq, m.identifier, m.sent
        from unnest(${lookup.map((f) => f.incident)}::uuid[], ${lookup.map((f) => f.target)}::uuid[],
                    ${lookup.map((f) => f.seq)}::integer[]) as k(incident_id, target_id, seq)
        join alert_messages m
          on m.incident_id = k.incident_id and m.target_id = k.target_id and m.seq < k.seq
       order by m.incident_id, m.target_id, m.seq desc`.execute(tx);
    for (const p of prev) stored.set(`${p.incident_id} ${p.target_id}`, p);
  }
  // Then, per (incident, target), each planned message references the one planned before it.
  const byPair = new Map<string, typeof rows>();
  for (const r of rows) {
    const list = byPair.get(r.pair);
    if (list) list.push(r);
    else byPair.set(r.pair, [r]);
  }
  const prevOf = new Map<(typeof rows)[number], { identifier: string; sent: Date }>();
  for (const [pair, list] of byPair) {
    let prev: { identifier: string; sent: Date } | undefined = stored.get(pair);
    for (const r of [...list].sort((a, b) => a.m.seq - b.m.seq)) {
      if (prev) prevOf.set(r, prev);
      prev = { identifier: capIdentifier(r.m.incident.id, r.m.seq), sent: r.m.sent };
    }
  }
  const values = rows.map((r) => {
    const { m } = r;
    const identifier = capIdentifier(m.incident.id, m.seq);
    const prev = prevOf.get(r);
    written[r.n] = (written[r.n] ?? 0) + 1;
    return {
      id: `${r.target}:${identifier}`,
      identifier,
      tenant_id: m.incident.tenant_id,
      incident_id: m.incident.id,
      target_id: r.target,
      seq: m.seq,
      msg_type: m.msgType,
      references_id: prev ? capReference(m.sender, prev.identifier, prev.sent) : null,
      sent: m.sent,
      event_id: m.eventId,
      info: JSON.stringify(m.info),
      updated_at: m.sent,
    };
  });
  const col = <K extends keyof (typeof values)[number]>(k: K) => values.map((v) => v[k]);
  await sql`insert into alert_messages
      (id, identifier, tenant_id, incident_id, target_id, seq, msg_type, references_id, sent, event_id, info,
       updated_at)
    select u.id, u.identifier, u.tenant_id, u.incident_id, u.target_id, u.seq, u.msg_type, u.references_id, u.sent,
           u.event_id, u.info::jsonb, u.updated_at
      from unnest(${col('id')}::text[], ${col('identifier')}::text[], ${col('tenant_id')}::text[],
                  ${col('incident_id')}::uuid[], ${col('target_id')}::uuid[], ${col('seq')}::integer[],
                  ${col('msg_type')}::text[], ${col('references_id')}::text[], ${col('sent')}::timestamptz[],
                  ${col('event_id')}::uuid[], ${col('info')}::text[], ${col('updated_at')}::timestamptz[])
           as u(id, identifier, tenant_id, incident_id, target_id, seq, msg_type, references_id, sent, event_id,
                info, updated_at)`.execute(tx);
  // In message order: the relay publishes by outbox id (delivery still waits for message n-1 per target).
  const jobs = values.map((v) =>
    JSON.stringify({ tenant_id: v.tenant_id, message_id: v.id } satisfies AlertJob),
  );
  await sql`insert into webhook_outbox (msg_id, payload, subject)
    select u.msg_id, u.payload, ${ALERT_JOB_SUBJECT}::text
      from unnest(${col('id')}::text[], ${jobs}::text[]) with ordinality as u(msg_id, payload, i)
     order by u.i`.execute(tx);
  return written;
}

/** {@link writeMessageBatch} of one message (an operator's cancel). The incident's seq must already be the new one. */
export async function writeMessages(tx: Tx, m: PlannedMessage): Promise<number> {
  return (await writeMessageBatch(tx, [m]))[0]!;
}
