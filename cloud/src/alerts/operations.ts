import type { AuditLog } from '../audit/audit-log.js';
import type { Principal } from '../auth/principal.js';
import { senderOf } from './plan.js';
import { writeMessages } from './writes.js';
import { ALERT_JOB_SUBJECT } from '../integrations/jobs.js';
import type { AlertIncident, AlertMessage, AlertStore } from './store.js';

interface OpDeps {
  store: AlertStore;
  audit: AuditLog;
  senderDomain: string;
  now: () => Date;
}

/**
 * An operator's cancel: in one transaction, the incident is closed (`cancelled`, by whom), an alerted one gets
 * its CAP Cancel for every target (through the outbox, like every message), and the audit entry is written.
 * Undefined when no such incident; an incident already closed is returned unchanged (no second Cancel).
 */
export async function cancelIncident(
  deps: OpDeps,
  p: Principal,
  id: string,
  reason: string,
): Promise<{ incident: AlertIncident; messages: number } | undefined> {
  return deps.store.db.transaction().execute(async (tx) => {
    const incident = await tx
      .selectFrom('alert_incidents')
      .selectAll()
      .where('tenant_id', '=', p.tenant)
      .where('id', '=', id)
      .forUpdate()
      .executeTakeFirst();
    if (!incident) return undefined;
    if (incident.state === 'cancelled' || incident.state === 'ended') return { incident, messages: 0 };
    const at = deps.now();
    const seq = incident.state === 'alerted' ? incident.seq + 1 : incident.seq;
    const updated = await tx
      .updateTable('alert_incidents')
      .set({ state: 'cancelled', seq, cancelled_by: p.subject, updated_at: at })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    let messages = 0;
    if (incident.state === 'alerted') {
      const rule = await tx
        .selectFrom('alert_rules')
        .selectAll()
        .where('id', '=', incident.rule_id)
        .executeTakeFirstOrThrow();
      const last = await tx
        .selectFrom('alert_messages')
        .select(['info', 'event_id'])
        .where('incident_id', '=', id)
        .orderBy('seq', 'desc')
        .limit(1)
        .executeTakeFirstOrThrow();
      messages = await writeMessages(tx, {
        incident,
        seq,
        msgType: 'Cancel',
        eventId: last.event_id,
        info: {
          ...last.info,
          rule: rule.cap,
          rule_name: rule.name,
          reason: `cancelled by an operator: ${reason}`,
        },
        targetIds: rule.target_ids,
        sender: senderOf(p.tenant, deps.senderDomain),
        sent: at,
      });
    }
    await deps.audit.append(
      {
        tenantId: p.tenant,
        actor: p.subject,
        actorKind: 'user',
        action: 'alert.cancel',
        resource: `alert_incident:${p.tenant}/${id}`,
        outcome: 'allowed',
        detail: { incident_id: id, reason, previous_state: incident.state, cancel_messages: messages },
      },
      tx,
    );
    return { incident: updated, messages };
  });
}

/**
 * Replays a dead letter: back to `pending` with its attempts reset, and a new job in the outbox (a new JOBS
 * msg id, so the stream's duplicate window does not swallow it). Same identifier, same `sent`: the agency sees
 * the same message. A message that is not dead is returned unchanged. Audited.
 */
export async function replayMessage(
  deps: OpDeps,
  p: Principal,
  id: string,
): Promise<AlertMessage | undefined> {
  return deps.store.db.transaction().execute(async (tx) => {
    const m = await tx
      .selectFrom('alert_messages')
      .selectAll()
      .where('tenant_id', '=', p.tenant)
      .where('id', '=', id)
      .forUpdate()
      .executeTakeFirst();
    if (!m || m.state !== 'dead') return m;
    const at = deps.now();
    const updated = await tx
      .updateTable('alert_messages')
      .set({ state: 'pending', attempts: 0, error: null, updated_at: at })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await tx
      .insertInto('webhook_outbox')
      .values({
        msg_id: `${id}:replay:${at.getTime()}`,
        payload: JSON.stringify({ tenant_id: p.tenant, message_id: id }),
        subject: ALERT_JOB_SUBJECT,
      })
      .execute();
    await deps.audit.append(
      {
        tenantId: p.tenant,
        actor: p.subject,
        actorKind: 'user',
        action: 'alert_message.replay',
        resource: `alert_message:${p.tenant}/${id}`,
        outcome: 'allowed',
        detail: { message_id: id, last_error: m.error, attempts: m.attempts },
      },
      tx,
    );
    return updated;
  });
}
