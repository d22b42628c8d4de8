import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { EventView } from '../api/event-store.js';
import type { NewEvent } from '../events/store.js';

/*
 * The committed-events feed between the ingest role and the realtime hubs of every API process (DESIGN.md:
 * "realtime: websocket hub fed after commit"). Ingest publishes each committed batch on core NATS, one
 * message per tenant and chunk, on `vigil.internal.v1.committed.<tenant>`; hubs subscribe to the wildcard.
 * Core NATS, not JetStream: a live feed has nothing to replay (a client that missed something reads
 * GET /v1/events), and a lost message costs a live update, never data. At-least-once towards clients: a
 * redelivered batch is published again, clients deduplicate on event_id.
 */

export const COMMITTED_SUBJECT_PREFIX = 'vigil.internal.v1.committed';
/** Events per feed message; keeps a message far below NATS max_payload (an event view is ~1 KiB). */
export const FEED_CHUNK = 200;

export interface CommittedMessage {
  events: EventView[];
}

/** The API view of a row ingest just committed (received_at: the commit time, close to the DB default). */
export function committedView(row: NewEvent, receivedAt: Date): EventView {
  const attributes =
    typeof row.attributes === 'string'
      ? (JSON.parse(row.attributes) as Record<string, string>)
      : ((row.attributes ?? {}) as Record<string, string>);
  return viewOf(row, receivedAt.toISOString(), attributes);
}

/** The view with `attributes` as given (undefined: left out by JSON.stringify). */
function viewOf<A extends Record<string, string> | undefined>(
  row: NewEvent,
  receivedAt: string,
  attributes: A,
): Omit<EventView, 'attributes'> & { attributes: A } {
  const num = (v: unknown): number => Number(v);
  return {
    event_id: row.event_id,
    tenant_id: row.tenant_id,
    site_id: String(row.site_id),
    device_id: row.device_id,
    camera_id: String(row.camera_id),
    occurred_at: row.occurred_at.toISOString(),
    received_at: receivedAt,
    track_id: String(row.track_id),
    phase: String(row.phase),
    label: String(row.label),
    score: num(row.score),
    box: { x: num(row.box_x), y: num(row.box_y), w: num(row.box_w), h: num(row.box_h) },
    zones: row.zones ?? [],
    trigger_zone: row.trigger_zone ?? null,
    model: row.model_name ? { name: row.model_name, sha256: row.model_sha256 ?? null } : null,
    snapshot: row.snapshot_media_id
      ? {
          media_id: row.snapshot_media_id,
          sha256: row.snapshot_sha256 ?? null,
          size_bytes:
            row.snapshot_bytes === null || row.snapshot_bytes === undefined ? null : num(row.snapshot_bytes),
        }
      : null,
    priority: num(row.priority),
    attributes,
  };
}

/** Publishes committed batches for the realtime hubs; never throws (the feed must not fail ingest). */
export class CommittedFeed {
  private readonly published: Counter<'result'>;

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    metrics: Registry,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.published = new Counter({
      name: 'vigil_cloud_realtime_feed_events_total',
      help: 'Committed events put on the realtime feed, by result (ok, error)',
      labelNames: ['result'],
      registers: [metrics],
    });
  }

  publish(rows: readonly NewEvent[]): void {
    if (rows.length === 0) return;
    const at = this.now().toISOString();
    const byTenant = new Map<string, string[]>();
    for (const r of rows) {
      let list = byTenant.get(r.tenant_id);
      if (!list) byTenant.set(r.tenant_id, (list = []));
      list.push(committedJson(r, at));
    }
    for (const [tenant, views] of byTenant)
      for (let i = 0; i < views.length; i += FEED_CHUNK) {
        const chunk = views.slice(i, i + FEED_CHUNK);
        try {
          // A CommittedMessage, spelled from the events' JSON (committedJson).
          this.nc.publish(`${COMMITTED_SUBJECT_PREFIX}.${tenant}`, `{"events":[${chunk.join(',')}]}`);
          this.published.inc({ result: 'ok' }, chunk.length);
        } catch (err) {
          this.published.inc({ result: 'error' }, chunk.length);
          this.log.warn({ err, tenant, events: chunk.length }, 'realtime feed publish failed');
        }
      }
  }
}

/**
 * `JSON.stringify(committedView(row, receivedAt))` (`receivedAt` in ISO form), spelled directly: no view object,
 * and the row's attributes go in as they are (ingest keeps them as the JSON text of a string map,
 * ingest/validate.ts). Parsing them back and building the view per event were most of the feed's cost
 * (cloud/bench/ingest.bench.ts --cpu-prof). Strings go through JSON.stringify (its escaping), numbers as JSON
 * spells them (non-finite: null).
 */
export function committedJson(row: NewEvent, receivedAt: string): string {
  if (typeof row.attributes !== 'string')
    return JSON.stringify(viewOf(row, receivedAt, (row.attributes ?? {}) as Record<string, string>));
  const str = JSON.stringify;
  const snapshot = row.snapshot_media_id
    ? `{"media_id":${str(row.snapshot_media_id)},"sha256":${nullable(row.snapshot_sha256)},"size_bytes":${
        row.snapshot_bytes === null || row.snapshot_bytes === undefined ? 'null' : num(row.snapshot_bytes)
      }}`
    : 'null';
  const model = row.model_name
    ? `{"name":${str(row.model_name)},"sha256":${nullable(row.model_sha256)}}`
    : 'null';
  return (
    `{"event_id":${str(row.event_id)},"tenant_id":${str(row.tenant_id)},"site_id":${str(String(row.site_id))}` +
    `,"device_id":${str(row.device_id)},"camera_id":${str(String(row.camera_id))}` +
    `,"occurred_at":"${row.occurred_at.toISOString()}","received_at":${str(receivedAt)}` +
    `,"track_id":${str(String(row.track_id))},"phase":${str(String(row.phase))},"label":${str(String(row.label))}` +
    `,"score":${num(row.score)},"box":{"x":${num(row.box_x)},"y":${num(row.box_y)},"w":${num(row.box_w)}` +
    `,"h":${num(row.box_h)}},"zones":${str(row.zones ?? [])},"trigger_zone":${nullable(row.trigger_zone)}` +
    `,"model":${model},"snapshot":${snapshot},"priority":${num(row.priority)},"attributes":${row.attributes}}`
  );
}

/** A number as JSON spells it (NaN and infinities: null). */
function num(v: unknown): string {
  const n = Number(v);
  return Number.isFinite(n) ? String(n) : 'null';
}

function nullable(v: string | null | undefined): string {
  return v === null || v === undefined ? 'null' : JSON.stringify(v);
}
