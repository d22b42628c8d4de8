import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { CommitHook, CommitWriter, NewEvent } from '../events/store.js';
import { incidentKey, planBatch, trackLockKey, tracksNeedingEnd } from './plan.js';
import type { AlertRule, AlertStore } from './store.js';
import {
  insertIncidents,
  lockIncidents,
  lockTracks,
  trackEnds,
  updateIncidents,
  writeMessageBatch,
} from './writes.js';

/** How long a batch's alert decisions wait for the batch fetched before it (see AlertOutbox.write). */
export const ORDER_WAIT_MAX_MS = 2000;

async function waitAtMost(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
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
    let counts = { Alert: 0, Update: 0, Cancel: 0 };
    return {
      write: async (tx, fresh) => {
        // Ingest commits batches concurrently: the batch fetched before this one (earlier events of the same
        // tracks, in the usual case) decides first, so that an END committed ahead of the ZONE_ENTER before it
        // does not close the incident and lose the Update. Bounded: this transaction already holds its event
        // rows, and the earlier batch may be waiting on one of them (the same event redelivered into both).
        if (before) await waitAtMost(before, ORDER_WAIT_MAX_MS);
        // Again from zero if the transaction runs again (insertBatchIds retries after a unique violation).
        counts = { Alert: 0, Update: 0, Cancel: 0 };
        const at = this.now();
        // In the order they happened: an END in the same batch as the START must come after it.
        const ordered = [...fresh]
          .filter((r) => rulesByTenant.has(r.tenant_id))
          .sort((a, b) => a.occurred_at.getTime() - b.occurred_at.getTime());
        if (ordered.length === 0) return;
        // One track's incidents are decided by one transaction at a time. Without the lock two batches in
        // flight (ingest.commitsInFlight) both see no incident, both insert one, and the loser's whole batch
        // fails on alert_incidents_track and is redelivered after later events of the track: out of order.
        // Sorted: two batches locking overlapping tracks take the locks in one order (no deadlock).
        await lockTracks(tx, [...new Set(ordered.map((r) => trackLockKey(r)))].sort());
        // The batch is decided in memory on its tracks' incidents, read and locked once after the locks (this
        // statement sees every commit of those tracks before it), then written back in a few statements.
        const keys = new Map<
          string,
          { rule_id: string; device_id: string; camera_id: string; track_id: string }
        >();
        for (const r of ordered)
          for (const rule of rulesByTenant.get(r.tenant_id)!) {
            const k = {
              rule_id: rule.id,
              device_id: r.device_id,
              camera_id: r.camera_id,
              track_id: r.track_id,
            };
            keys.set(incidentKey(rule.id, k), k);
          }
        const incidents = await lockIncidents(tx, [...keys.values()]);
        // Only the tracks that may open an incident here look for their committed END (one statement).
        const ends = await trackEnds(tx, tracksNeedingEnd(ordered, rulesByTenant, incidents, at));
        const plan = planBatch({
          ordered,
          rulesByTenant,
          incidents,
          ends,
          at,
          endGraceMs: this.endGraceMs,
          senderDomain: this.senderDomain,
          newId: randomUUID,
        });
        await insertIncidents(tx, plan.inserts);
        await updateIncidents(tx, plan.updates);
        const written = await writeMessageBatch(tx, plan.messages);
        plan.messages.forEach((m, n) => (counts[m.msgType] += written[n]!));
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
