import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { EventView } from '../api/event-store.js';
import { COMMITTED_SUBJECT_PREFIX, type CommittedMessage } from './feed.js';

/** What a connection asked for; every field narrows (absent: any). */
export interface StreamFilter {
  site?: string | undefined;
  device?: string | undefined;
  camera?: string | undefined;
  label?: string | undefined;
}

/** Pure: does `e` pass `f`? */
export function matches(f: StreamFilter, e: EventView): boolean {
  return (
    (f.site === undefined || f.site === e.site_id) &&
    (f.device === undefined || f.device === e.device_id) &&
    (f.camera === undefined || f.camera === e.camera_id) &&
    (f.label === undefined || f.label === e.label)
  );
}

/** One subscriber: its tenant, filter and a sink that says whether it took the message. */
export interface HubClient {
  readonly tenant: string;
  readonly filter: StreamFilter;
  /** Sends one event; returns false when the client is too slow (the hub then drops it: `close`). */
  send(event: EventView): boolean;
  close(code: number, reason: string): void;
}

/** WebSocket close codes of the stream (4000-4999: application). */
export const CLOSE_SLOW_CONSUMER = 4008;
export const CLOSE_TOKEN_EXPIRED = 4001;
export const CLOSE_SHUTDOWN = 1001;

/**
 * Fans committed events out to the connections of this process (realtime/server.ts makes them). One NATS
 * subscription per process on the feed; per event, only the connections of its tenant whose filter matches.
 * A connection that cannot keep up (its send buffer over the limit) is closed with 4008 and counted, never
 * allowed to grow memory.
 */
export class RealtimeHub {
  private readonly byTenant = new Map<string, Set<HubClient>>();
  private sub: Subscription | undefined;
  private readonly connections: Gauge;
  private readonly sent: Counter;
  private readonly closed: Counter<'reason'>;
  private readonly feedErrors: Counter;

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    metrics: Registry,
  ) {
    this.connections = new Gauge({
      name: 'vigil_cloud_realtime_connections',
      help: 'Open event-stream websocket connections in this process',
      registers: [metrics],
    });
    this.sent = new Counter({
      name: 'vigil_cloud_realtime_events_sent_total',
      help: 'Events sent to event-stream connections',
      registers: [metrics],
    });
    this.closed = new Counter({
      name: 'vigil_cloud_realtime_closed_total',
      help: 'Event-stream connections closed by the server, by reason (slow_consumer, token_expired, limit, shutdown)',
      labelNames: ['reason'],
      registers: [metrics],
    });
    this.feedErrors = new Counter({
      name: 'vigil_cloud_realtime_feed_invalid_total',
      help: 'Feed messages that could not be parsed (ignored)',
      registers: [metrics],
    });
  }

  start(): void {
    this.sub = this.nc.subscribe(`${COMMITTED_SUBJECT_PREFIX}.*`, {
      callback: (err, msg) => {
        if (err) return;
        let parsed: CommittedMessage;
        try {
          parsed = msg.json<CommittedMessage>();
          if (!Array.isArray(parsed.events)) throw new Error('no events');
        } catch {
          this.feedErrors.inc();
          return;
        }
        const tenant = msg.subject.slice(COMMITTED_SUBJECT_PREFIX.length + 1);
        this.dispatch(tenant, parsed.events);
      },
    });
  }

  /** Delivers `events` of `tenant` to the matching connections (exposed for tests). */
  dispatch(tenant: string, events: readonly EventView[]): void {
    const set = this.byTenant.get(tenant);
    if (!set) return;
    const clients = [...set]; // once per message: drop() below changes the set
    for (const e of events) {
      if (e.tenant_id !== tenant) continue; // the subject is the tenant: a mismatch is never delivered
      for (const c of clients) {
        if (!set.has(c) || !matches(c.filter, e)) continue;
        if (c.send(e)) this.sent.inc();
        else this.drop(c, CLOSE_SLOW_CONSUMER, 'slow consumer', 'slow_consumer');
      }
    }
  }

  /** How many connections `tenant` has open here. */
  count(tenant: string): number {
    return this.byTenant.get(tenant)?.size ?? 0;
  }

  add(c: HubClient): void {
    const set = this.byTenant.get(c.tenant) ?? new Set<HubClient>();
    set.add(c);
    this.byTenant.set(c.tenant, set);
    this.connections.inc();
  }

  remove(c: HubClient): void {
    const set = this.byTenant.get(c.tenant);
    if (!set?.delete(c)) return;
    if (set.size === 0) this.byTenant.delete(c.tenant);
    this.connections.dec();
  }

  /** Closes and forgets a connection the server gives up on. */
  drop(c: HubClient, code: number, reason: string, label: string): void {
    this.closed.inc({ reason: label });
    this.remove(c);
    try {
      c.close(code, reason);
    } catch (err) {
      this.log.debug({ err }, 'realtime: close failed');
    }
  }

  stop(): void {
    if (this.sub && !this.sub.isClosed()) this.sub.unsubscribe();
    for (const set of [...this.byTenant.values()])
      for (const c of [...set]) this.drop(c, CLOSE_SHUTDOWN, 'server shutting down', 'shutdown');
  }
}
