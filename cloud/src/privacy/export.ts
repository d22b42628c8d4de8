import { createHash, randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import { sql, type Kysely } from 'kysely';
import type { AuditLog } from '../audit/audit-log.js';
import { toEventView } from '../api/event-store.js';
import { NotFoundError } from '../api/errors.js';
import type { MediaStore } from '../media/store.js';
import type { Database, EventsTable } from '../storage/tables.js';
import type { Selectable } from 'kysely';
import { ExportTooLargeError } from './evidence-errors.js';
import {
  EVIDENCE_FORMAT,
  MANIFEST_FILE,
  SIGNATURE_FILE,
  sha256Hex,
  signManifest,
  type EvidenceManifest,
  type ExportKey,
} from './evidence.js';
import { eventsInScope, mediaInScope, scopeDetail, type ExportScope } from './scope.js';
import { TAR_END, tarEntry, tarHeader, tarPadding } from './tar.js';

export interface ExportLimits {
  maxBytes: number;
  maxEvents: number;
  maxMedia: number;
}

interface MediaEntry {
  media_id: string;
  event_id: string;
  device_id: string;
  camera_id: string;
  content_type: string;
  sha256: string;
  size_bytes: number;
  redacted: boolean;
  captured_at: Date;
  storage_key: string | null;
  deleted_at: Date | null;
  deleted_reason: string | null;
}

/** What an export will contain, read (and bounded) before the first byte is sent. */
export interface ExportPlan {
  events: Selectable<EventsTable>[];
  media: MediaEntry[];
  /** Upper bound of the archive size (JSON files estimated from their text). */
  bytes: number;
}

/**
 * Reads the scope's events and media index rows. Refuses (ExportTooLargeError) a scope over the limits, from
 * counts taken first, so a huge scope costs two aggregates, not its rows. An empty scope, or an event id list
 * with an id the tenant does not have, is a 404 (another tenant's ids look exactly like missing ones).
 */
export async function planExport(
  db: Kysely<Database>,
  tenant: string,
  scope: ExportScope,
  limits: ExportLimits,
): Promise<ExportPlan> {
  const { rows: totals } = await sql<{ events: string; media: string; media_bytes: string | null }>`
    select (select count(*) from events e where ${eventsInScope(tenant, scope)}) as events,
           (select count(*) from media m where ${mediaInScope(tenant, scope)} and m.deleted_at is null) as media,
           (select sum(size_bytes) from media m where ${mediaInScope(tenant, scope)} and m.deleted_at is null) as media_bytes`.execute(
    db,
  );
  const events = Number(totals[0]?.events ?? 0);
  const media = Number(totals[0]?.media ?? 0);
  const mediaBytes = Number(totals[0]?.media_bytes ?? 0);
  // ~1.5 KiB of JSON and tar header per event and per object is generous.
  const bytes = mediaBytes + (events + media) * 1536 + 64 * 1024;
  const over: string[] = [];
  if (events > limits.maxEvents) over.push(`${events} events (limit ${limits.maxEvents})`);
  if (media > limits.maxMedia) over.push(`${media} media objects (limit ${limits.maxMedia})`);
  if (bytes > limits.maxBytes) over.push(`about ${bytes} bytes (limit ${limits.maxBytes})`);
  if (over.length > 0)
    throw new ExportTooLargeError(
      `This scope is too large for one evidence export: ${over.join(', ')}. Narrow it (a shorter time range, ` +
        'fewer events) and export it in parts (config privacy.export sets the limits).',
    );
  const eventRows = await sql<Selectable<EventsTable>>`
    select e.* from events e where ${eventsInScope(tenant, scope)}
     order by e.occurred_at, e.event_id limit ${limits.maxEvents}`.execute(db);
  if (scope.kind === 'event') {
    const found = new Set(eventRows.rows.map((r) => r.event_id));
    if (scope.event_ids.some((id) => !found.has(id.toLowerCase()))) throw new NotFoundError();
  }
  const mediaRows = await sql<MediaEntry>`
    select m.media_id, m.event_id, m.device_id, m.camera_id, m.content_type, m.sha256, m.size_bytes, m.redacted,
           m.captured_at, m.storage_key, m.deleted_at, m.deleted_reason
      from media m where ${mediaInScope(tenant, scope)}
     order by m.captured_at, m.media_id limit ${limits.maxMedia * 2}`.execute(db);
  if (eventRows.rows.length === 0 && mediaRows.rows.length === 0)
    throw new NotFoundError('Nothing is stored in this scope.');
  return { events: eventRows.rows, media: mediaRows.rows, bytes };
}

/** Writes to a stream, waiting for 'drain' when it is full (the archive never piles up in memory). */
async function put(out: Writable, chunk: Buffer): Promise<void> {
  if (out.destroyed) throw new Error('the client went away');
  if (!out.write(chunk))
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        out.off('drain', done);
        out.off('close', closed);
        resolve();
      };
      const closed = (): void => {
        out.off('drain', done);
        reject(new Error('the client went away'));
      };
      out.once('drain', done);
      out.once('close', closed);
    });
}

export interface WriteExportDeps {
  store: MediaStore | undefined;
  audit: AuditLog;
  key: ExportKey;
  now: () => Date;
}

export interface ExportWho {
  tenant: string;
  actor: string;
  requestId?: string | undefined;
}

/**
 * Streams the archive: events.json, media.json, each stored object's bytes (hashed as they pass), then the
 * manifest and its signature. Before the manifest goes out, the export is on the audit log
 * (`evidence.export`: who, when, scope, manifest digest, key id): if that fails, the stream is destroyed and
 * the client holds an archive without a manifest, which verifies as nothing. Returns the manifest.
 */
export async function writeExport(
  out: Writable,
  plan: ExportPlan,
  scope: ExportScope,
  who: ExportWho,
  deps: WriteExportDeps,
): Promise<{ manifest: EvidenceManifest; manifestSha256: string }> {
  const exportId = randomUUID();
  const createdAt = deps.now();
  const mtime = createdAt.getTime() / 1000;
  const files: EvidenceManifest['files'] = [];
  let total = 0;
  const addSmall = async (path: string, data: Buffer): Promise<void> => {
    await put(out, tarEntry(path, data, mtime));
    files.push({ path, sha256: sha256Hex(data), bytes: data.length });
    total += data.length;
  };
  const events = plan.events.map((r) => ({
    ...toEventView(r),
    erased_at: r.erased_at?.toISOString() ?? null,
  }));
  await addSmall('events.json', Buffer.from(JSON.stringify(events, null, 2) + '\n'));
  const unavailable: string[] = [];
  const mediaIndex = [];
  for (const m of plan.media) {
    const file = m.storage_key !== null && deps.store ? await deps.store.open(m.storage_key) : null;
    const path = `media/${m.media_id}.${m.content_type === 'image/jpeg' ? 'jpg' : 'bin'}`;
    mediaIndex.push({
      media_id: m.media_id,
      event_id: m.event_id,
      device_id: m.device_id,
      camera_id: m.camera_id,
      content_type: m.content_type,
      recorded_sha256: m.sha256,
      size_bytes: m.size_bytes,
      redacted: m.redacted,
      captured_at: m.captured_at.toISOString(),
      file: file ? path : null,
      deleted_at: m.deleted_at?.toISOString() ?? null,
      deleted_reason: m.deleted_reason,
    });
    if (!file) {
      if (m.deleted_at === null) unavailable.push(m.media_id);
      continue;
    }
    await put(out, tarHeader(path, file.size, mtime));
    const hash = createHash('sha256');
    let n = 0;
    try {
      for await (const chunk of file.stream as AsyncIterable<Buffer>) {
        n += chunk.length;
        if (n > file.size) throw new Error(`media ${m.media_id} grew while it was read`);
        hash.update(chunk);
        await put(out, chunk);
      }
    } finally {
      file.stream.destroy();
    }
    if (n !== file.size) throw new Error(`media ${m.media_id}: ${n} bytes read, ${file.size} expected`);
    await put(out, tarPadding(n));
    files.push({ path, sha256: hash.digest('hex'), bytes: n });
    total += n;
  }
  await addSmall('media.json', Buffer.from(JSON.stringify(mediaIndex, null, 2) + '\n'));
  const manifest: EvidenceManifest = {
    format: EVIDENCE_FORMAT,
    export_id: exportId,
    tenant: who.tenant,
    created_at: createdAt.toISOString(),
    created_by: who.actor,
    key_id: deps.key.keyId,
    scope: { ...scope },
    counts: { events: events.length, media: files.length - 2, media_unavailable: unavailable.length },
    files,
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
  const manifestSha256 = sha256Hex(manifestBytes);
  const jws = Buffer.from((await signManifest(manifestBytes, deps.key)) + '\n');
  await deps.audit.append({
    tenantId: who.tenant,
    actor: who.actor,
    actorKind: 'user',
    action: 'evidence.export',
    resource: `evidence:${who.tenant}/${exportId}`,
    outcome: 'allowed',
    detail: {
      export_id: exportId,
      scope: scopeDetail(scope),
      manifest_sha256: manifestSha256,
      key_id: deps.key.keyId,
      files: files.length,
      bytes: total,
      events: events.length,
      media_unavailable: unavailable.length,
    },
    requestId: who.requestId ?? null,
  });
  await put(out, tarEntry(MANIFEST_FILE, manifestBytes, mtime));
  await put(out, tarEntry(SIGNATURE_FILE, jws, mtime));
  await put(out, TAR_END);
  return { manifest, manifestSha256 };
}
