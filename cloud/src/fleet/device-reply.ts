/*
 * The one way a cloud responder answers a device request. The reply subject is chosen by the device and is
 * hostile until proven otherwise: answered only when it lies in the inbox of the device that the REQUEST
 * SUBJECT names (`vigil.v1.<tenant>.<device>...`, the authenticated identity: NATS permissions bind a device
 * to its own subjects) — `_DEVINBOX.<tenant>.<device>.<token>...`. Anything else (a JetStream API subject,
 * another device's inbox or subjects, an internal subject) is dropped, counted by reason and logged at a
 * bounded rate.
 *
 * Each device lives in its own account (nats-device-accounts.ts): a request reaches VIGIL through a service
 * import, and nats-server replaces its reply with `_R_.<token>.<token>`, a mapping back into the requesting
 * device's account (to the reply the device chose there, where only the device itself listens). Such a
 * reply is accepted too; the responder's NATS user can publish on `_R_.>` only (nats-auth.ts). This check
 * stays as defence in depth should a device ever share VIGIL with the responder again.
 */
import { isDeviceInboxReply, parseSubject } from '@vigil/proto';
import type { Msg } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';

/** Why a reply was not sent (label `reason` of vigil_cloud_device_replies_refused_total). */
export const REPLY_REFUSALS = ['no_reply', 'not_device_subject', 'foreign_reply'] as const;
export type ReplyRefusal = (typeof REPLY_REFUSALS)[number];

export type ReplyCheck =
  { ok: true; tenant: string; device: string; reply: string } | { ok: false; reason: ReplyRefusal };

/** Pure: may the answer to a request on `subject` go to `reply`? */
export function checkDeviceReply(subject: string, reply: string | undefined): ReplyCheck {
  const route = parseSubject(subject);
  if (!route) return { ok: false, reason: 'not_device_subject' };
  if (!reply) return { ok: false, reason: 'no_reply' };
  if (!isDeviceInboxReply(reply, route.tenant, route.device) && !isServiceImportReply(reply))
    return { ok: false, reason: 'foreign_reply' };
  return { ok: true, tenant: route.tenant, device: route.device, reply };
}

/** `_R_.` and two to four plain tokens, bounded: the reply nats-server gives a request crossing an import. */
export function isServiceImportReply(reply: string): boolean {
  if (reply.length > 128 || !reply.startsWith('_R_.')) return false;
  const rest = reply.slice(4).split('.');
  return rest.length >= 2 && rest.length <= 4 && rest.every((t) => /^[A-Za-z0-9_-]+$/.test(t));
}

/** At most `max` log lines per `windowMs`; the rest are counted and reported with the next line. */
export class LogBudget {
  private windowStart = -Infinity;
  private used = 0;
  private suppressed = 0;

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {}

  /** undefined: do not log; else the number of lines suppressed since the last one that was logged. */
  take(): number | undefined {
    const t = this.now();
    if (t - this.windowStart >= this.windowMs) {
      this.windowStart = t;
      this.used = 0;
    }
    if (this.used >= this.max) {
      this.suppressed += 1;
      return undefined;
    }
    this.used += 1;
    const n = this.suppressed;
    this.suppressed = 0;
    return n;
  }
}

const REFUSED_METRIC = 'vigil_cloud_device_replies_refused_total';

/** Answers device requests for one responder (its name is the `responder` label). */
export class DeviceReplier {
  private readonly refused: Counter<'responder' | 'reason'>;
  private readonly budget: LogBudget;

  constructor(
    private readonly responder: string,
    metrics: Registry,
    private readonly log: Logger,
    now: () => number = Date.now,
    logsPerMinute = 10,
  ) {
    this.refused =
      (metrics.getSingleMetric(REFUSED_METRIC) as Counter<'responder' | 'reason'> | undefined) ??
      new Counter({
        name: REFUSED_METRIC,
        help: 'Device requests not answered because of their reply subject (no_reply, not_device_subject, foreign_reply: not the requesting device inbox)',
        labelNames: ['responder', 'reason'],
        registers: [metrics],
      });
    for (const reason of REPLY_REFUSALS) this.refused.inc({ responder, reason }, 0);
    this.budget = new LogBudget(logsPerMinute, 60_000, now);
  }

  /**
   * The request if its reply subject is the requesting device's own inbox, with the one way to answer it;
   * undefined (counted, logged at a bounded rate) otherwise. Call it before doing any work for the request.
   */
  accept(msg: Pick<Msg, 'subject' | 'reply' | 'respond'>): DeviceRequest | undefined {
    const c = checkDeviceReply(msg.subject, msg.reply);
    if (c.ok) return { tenant: c.tenant, device: c.device, respond: (data) => msg.respond(data) };
    this.refused.inc({ responder: this.responder, reason: c.reason });
    const suppressed = this.budget.take();
    if (suppressed !== undefined)
      this.log.warn(
        {
          responder: this.responder,
          reason: c.reason,
          subject: msg.subject.slice(0, 200),
          reply: (msg.reply ?? '').slice(0, 200),
          suppressed,
        },
        'device request with a reply subject outside its own inbox: not answered',
      );
    return undefined;
  }
}

/** A device request whose reply subject was checked. */
export interface DeviceRequest {
  tenant: string;
  device: string;
  /** Publishes to the checked reply subject (the requesting device's inbox); false if not sent. */
  respond(data: Uint8Array): boolean;
}
