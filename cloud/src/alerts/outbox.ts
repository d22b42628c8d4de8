import { randomUUID } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { CommitHook, CommitWriter, NewEvent } from '../events/store.js';
import { ALERT_JOB_SUBJECT } from '../integrations/jobs.js';
import { committedView } from '../realtime/feed.js';
import type { AlertMessageInfo, Database } from '../storage/tables.js';
import { capIdentifier, capReference } from './cap.js';
import { decide, fingerprintOf, windowOf } from './rules.js';
import type { AlertIncident, AlertRule, AlertStore } from './store.js';

/** How long a batch's alert decisions wait for the batch fetched before it (see AlertOutbox.write). */
export const ORDER_WAIT_MAX_MS = 2000;

async function waitAtMost(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

/** The per-track advisory lock key (pg_advisory_xact_lock(hashtextextended(key, 0))) of the hook and the end sweeper. */
export function trackLockKey(r: {
  tenant_id: string;
  device_id: string;
  camera_id: string;
  track_id: string;
}): string {
  return `alert-track\n${r.tenant_id}\n${r.device_id}\n${r.camera_id}\n${r.track_id}`;
}

/** The job on `vigil.jobs.alerts.deliver`: which message to deliver (its content is in alert_messages). */
export interface AlertJob {
  tenant_id: string;
  message_id: string;
}

/** The CAP sender of a tenant's messages (no spaces or commas: it goes into `references`). */
export function senderOf(tenantId: string, domain: string): string {
  return `${tenantId}@${domain}`;
}

/**
 * Writes the next message of an incident for each of `targetIds` (in the caller's transaction): the row in
 * alert_messages (identifier from incident + seq, `sent`, the reference to the previous message) and its job in
 * the outbox (relayed to JOBS). The incident's seq must already be the new one.
 */
export async function writeMessages(
  tx: Transaction<Database>,
  m: {
    incident: Pick<AlertIncident, 'id' | 'tenant_id'>;
    seq: number;
    msgType: 'Alert' | 'Update' | 'Cancel';
    eventId: string;
    info: AlertMessageInfo;
    targetIds: readonly string[];
    sender: string;
    sent: Date;
  },
): Promise<number> {
  if (m.targetIds.length === 0) return 0;
  const targets = await tx
    .selectFrom('alert_targets')
    .select('id')
    .where('tenant_id', '=', m.incident.tenant_id)
    .where('id', 'in', [...m.targetIds])
    .where('enabled', '=', true)
    .execute();
  const identifier = capIdentifier(m.incident.id, m.seq);
  let written = 0;
  for (const t of targets) {
    const prev =
      m.seq > 1
        ? await tx
            .selectFrom('alert_messages')
            .select(['identifier', 'sent'])
            .where('incident_id', '=', m.incident.id)
            .where('target_id', '=', t.id)
            .where('seq', '<', m.seq)
            .orderBy('seq', 'desc')
            .limit(1)
            .executeTakeFirst()
        : undefined;
    const id = `${t.id}:${identifier}`;
    await tx
      .insertInto('alert_messages')
      .values({
        id,
        identifier,
        tenant_id: m.incident.tenant_id,
        incident_id: m.incident.id,
        target_id: t.id,
        seq: m.seq,
        msg_type: m.msgType,
        references_id: prev ? capReference(m.sender, prev.identifier, prev.sent) : null,
        sent: m.sent,
        event_id: m.eventId,
        info: JSON.stringify(m.info),
        updated_at: m.sent,
      })
      .execute();
    const job: AlertJob = { tenant_id: m.incident.tenant_id, message_id: id };
    await tx
      .insertInto('webhook_outbox')
      .values({ msg_id: id, payload: JSON.stringify(job), subject: ALERT_JOB_SUBJECT })
      .execute();
    written++;
  }
  return written;
}

function infoOf(rule: AlertRule, e: ReturnType<typeof committedView>): AlertMessageInfo {
  return {
    rule: rule.cap,
    rule_name: rule.name,
    label: e.label,
    score: e.score,
    zones: e.zones,
    site_id: e.site_id,
    camera_id: e.camera_id,
    device_id: e.device_id,
    track_id: e.track_id,
    occurred_at: e.occurred_at,
    snapshot: e.snapshot
      ? { media_id: e.snapshot.media_id, sha256: e.snapshot.sha256, bytes: e.snapshot.size_bytes }
      : null,
  };
}

/**
 * Alert incidents and their CAP messages as part of the ingest commit (like the webhook outbox, and through the
 * same outbox table and relay): the rules are read before the transaction (cached), incidents are read and
 * written inside it (row locks: two batches of one track serialize), so a crash leaves an event with its
 * incident change and message jobs, or none of them.
 */
export class AlertOutbox implements CommitHook {
  private readonly messages: Counter<'type'>;

  constructor(
    private readonly store: AlertStore,
    private readonly senderDomain: string,
    private readonly log: Logger,
    metrics: Registry,
    private readonly now: () => Date = () => new Date(),
    private readonly onWritten: () => void = () => undefined,
    private readonly endGraceMs = 3000,
  ) {
    this.messages = new Counter({
      name: 'vigil_cloud_alert_messages_total',
      help: 'CAP messages committed to the outbox, by msgType (one per target)',
      labelNames: ['type'],
      registers: [metrics],
    });
  }

  async prepare(rows: readonly NewEvent[], before?: Promise<void>): Promise<CommitWriter | undefined> {
    const rulesByTenant = new Map<string, AlertRule[]>();
    for (const tenant of new Set(rows.map((r) => r.tenant_id))) {
      const rules = await this.store.enabledRules(tenant);
      if (rules.length > 0) rulesByTenant.set(tenant, rules);
    }
    if (rulesByTenant.size === 0) return undefined;
    const counts = { Alert: 0, Update: 0, Cancel: 0 };
    return {
      write: async (tx, fresh) => {
        // Ingest commits batches concurrently: the batch fetched before this one (earlier events of the same
        // tracks, in the usual case) decides first, so that an END committed ahead of the ZONE_ENTER before it
        // does not close the incident and lose the Update. Bounded: this transaction already holds its event
        // rows, and the earlier batch may be waiting on one of them (the same event redelivered into both).
        if (before) await waitAtMost(before, ORDER_WAIT_MAX_MS);
        const at = this.now();
        // In the order they happened: an END in the same batch as the START must come after it.
        const ordered = [...fresh]
          .filter((r) => rulesByTenant.has(r.tenant_id))
          .sort((a, b) => a.occurred_at.getTime() - b.occurred_at.getTime());
        // One track's incidents are decided by one transaction at a time. Without the lock two batches in
        // flight (ingest.commitsInFlight) both see no incident, both insert one, and the loser's whole batch
        // fails on alert_incidents_track and is redelivered after later events of the track: out of order.
        // Sorted: two batches locking overlapping tracks take the locks in one order (no deadlock).
        const lockKeys = [...new Set(ordered.map(trackLockKey))].sort();
        if (lockKeys.length > 0)
          await sql`select pg_advisory_xact_lock(hashtextextended(k, 0))
                      from unnest(${lockKeys}::text[]) with ordinality as t(k, i) order by i`.execute(tx);
        for (const row of ordered) {
          const rules = rulesByTenant.get(row.tenant_id)!;
          const e = committedView(row, at);
          const incidents = await tx
            .selectFrom('alert_incidents')
            .selectAll()
            .where(
              'rule_id',
              'in',
              rules.map((r) => r.id),
            )
            .where('device_id', '=', e.device_id)
            .where('camera_id', '=', e.camera_id)
            .where('track_id', '=', e.track_id)
            .forUpdate()
            .execute();
          for (const rule of rules) {
            const incident = incidents.find((i) => i.rule_id === rule.id);
            const t = new Date(e.occurred_at);
            // After its track's recorded end: nothing of this track is news any more.
            if (incident?.end_at && t.getTime() > incident.end_at.getTime()) continue;
            if (e.phase === 'end') {
              // The END closes nothing here: another ingest process may still be committing earlier events of
              // the track (their Update goes first). The end sweeper closes it once due (migration 0032).
              if (!incident || (incident.state !== 'pending' && incident.state !== 'alerted')) continue;
              if (incident.end_at && incident.end_at.getTime() <= t.getTime()) continue;
              await tx
                .updateTable('alert_incidents')
                .set({
                  end_at: t,
                  end_event_id: e.event_id,
                  end_due_at: incident.end_due_at ?? new Date(at.getTime() + this.endGraceMs),
                  updated_at: at,
                })
                .where('id', '=', incident.id)
                .execute();
              continue;
            }
            const d = decide(rule.match, incident, e);
            // 'cancel' is an END's: handled above (the end sweeper sends the Cancel).
            if (d.kind === 'none' || d.kind === 'cancel') continue;
            if (d.kind === 'end') {
              await tx
                .updateTable('alert_incidents')
                .set({ state: 'ended', updated_at: at, last_event_id: e.event_id })
                .where('id', '=', incident!.id)
                .execute();
              continue;
            }
            // The incident's window and fingerprint after this event (an older event leaves the fingerprint).
            const w = incident ? windowOf(incident, e) : undefined;
            const fingerprint = !incident || w!.newest ? fingerprintOf(e) : incident.fingerprint;
            const seen = {
              first_seen_at: w?.first ?? new Date(e.occurred_at),
              last_seen_at: w?.last ?? new Date(e.occurred_at),
            };
            if (d.kind === 'seen') {
              await tx
                .updateTable('alert_incidents')
                .set({ ...seen, fingerprint, updated_at: at })
                .where('id', '=', incident!.id)
                .execute();
              continue;
            }
            let current: Pick<AlertIncident, 'id' | 'tenant_id' | 'seq'>;
            if (!incident) {
              // The track's END may already be committed (by another ingest process, ahead of this event):
              // the new incident starts with its end recorded, so the sweeper closes it.
              const ended = await endOfTrack(tx, row, t);
              current = await tx
                .insertInto('alert_incidents')
                .values({
                  id: randomUUID(),
                  tenant_id: row.tenant_id,
                  rule_id: rule.id,
                  site_id: e.site_id,
                  device_id: e.device_id,
                  camera_id: e.camera_id,
                  track_id: e.track_id,
                  state: 'pending',
                  ...seen,
                  last_event_id: e.event_id,
                  fingerprint,
                  created_at: at,
                  updated_at: at,
                  ...(ended
                    ? {
                        end_at: ended.occurred_at,
                        end_event_id: ended.event_id,
                        end_due_at: new Date(at.getTime() + this.endGraceMs),
                      }
                    : {}),
                })
                .returning(['id', 'tenant_id', 'seq'])
                .executeTakeFirstOrThrow();
              if (d.kind === 'pending') continue;
            } else current = incident;
            const msgType = d.kind === 'alert' ? 'Alert' : 'Update';
            const seq = current.seq + 1;
            await tx
              .updateTable('alert_incidents')
              .set({
                state: 'alerted',
                seq,
                ...seen,
                fingerprint,
                last_event_id: e.event_id,
                updated_at: at,
              })
              .where('id', '=', current.id)
              .execute();
            counts[msgType] += await writeMessages(tx, {
              incident: current,
              seq,
              msgType,
              eventId: e.event_id,
              info: infoOf(rule, e),
              targetIds: rule.target_ids,
              sender: senderOf(row.tenant_id, this.senderDomain),
              sent: at,
            });
          }
        }
      },
      committed: () => {
        let total = 0;
        for (const [type, n] of Object.entries(counts)) {
          if (n > 0) this.messages.inc({ type }, n);
          total += n;
        }
        if (total > 0) {
          this.log.debug({ messages: counts }, 'alert messages committed');
          this.onWritten();
        }
      },
    };
  }
}

/**
 * A committed END of the row's track at or after `t` (this transaction sees the ones committed before its
 * statement: the per-track advisory lock orders it after any transaction writing this track). events_track_idx.
 */
async function endOfTrack(
  tx: Transaction<Database>,
  row: NewEvent,
  t: Date,
): Promise<{ event_id: string; occurred_at: Date } | undefined> {
  return tx
    .selectFrom('events')
    .select(['event_id', 'occurred_at'])
    .where('tenant_id', '=', row.tenant_id)
    .where('device_id', '=', row.device_id)
    .where('track_id', '=', row.track_id)
    .where('camera_id', '=', row.camera_id)
    .where('phase', '=', 'end')
    .where('occurred_at', '>=', t)
    .orderBy('occurred_at')
    .limit(1)
    .executeTakeFirst();
}

/** Several commit hooks as one: prepared in turn, written in the same transaction, told in turn. */
export function combineHooks(...hooks: CommitHook[]): CommitHook {
  return {
    async prepare(rows, before) {
      const writers: CommitWriter[] = [];
      for (const h of hooks) {
        const w = await h.prepare(rows, before);
        if (w) writers.push(w);
      }
      if (writers.length === 0) return undefined;
      return {
        write: async (tx, fresh) => {
          for (const w of writers) await w.write(tx, fresh);
        },
        committed: () => {
          for (const w of writers) w.committed();
        },
      };
    },
  };
}
