// Scoped erasure (issue 19) against the real cloud: PostgreSQL, a filesystem media store, the API and the
// background job. Erasing one camera's last hour must remove exactly those objects (the store is listed and the
// rows read back), leave held ones and report them, and record audit entries without personal data.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LegalHolds } from '../src/media/holds.js';
import type { ErasureView } from '../src/privacy/erasure-store.js';
import { useApiCloud } from './api-fixtures.js';
import { listStore, seedObjects, type SeedObject, type Seeded } from './support/privacy.js';

const HOUR = 3_600_000;
const REASON = 'data subject request DSR-4471 from Jane Example';

describe('scoped erasure', () => {
  const storeDir = mkdtempSync(join(tmpdir(), 'vigil-erasure-'));
  const api = useApiCloud({
    media: { dir: storeDir },
    privacy: { erasure: { batchSize: 7, pollIntervalSeconds: 1 } },
  });
  const now = Date.now();
  let seeded: Seeded[] = [];
  let admin: string;
  let holdId: string;
  const holdFrom = new Date(now - 40 * 60_000);
  const holdTo = new Date(now - 30 * 60_000);

  beforeAll(async () => {
    const objects: SeedObject[] = [];
    const add = (
      tenant: string,
      device: string,
      camera: string,
      n: number,
      spanMs: number,
      track = 't1',
    ): void => {
      for (let i = 0; i < n; i++)
        objects.push({
          tenant,
          site: tenant === 'acme' ? 'hq' : 'plant',
          device,
          camera,
          track: `${track}-${i % 3}`,
          // spread evenly over the span before now, the newest a second ago
          at: new Date(now - 1000 - Math.floor((spanMs * i) / n)),
        });
    };
    add('acme', 'gw-1', 'cam1', 48, 2 * HOUR); // half in the last hour
    add('acme', 'gw-1', 'cam2', 10, HOUR);
    add('acme', 'gw-2', 'cam1', 10, HOUR, 'x');
    add('globex', 'gw-1', 'cam1', 10, HOUR); // same device and camera ids, another tenant
    seeded = await seedObjects(api.cloud().db, storeDir, objects);
    admin = await api.token('acme', ['admin']);
    holdId = await new LegalHolds(api.cloud().db, api.cloud().audit).place(
      'acme',
      { kind: 'camera_range', deviceId: 'gw-1', cameraId: 'cam1', from: holdFrom, to: holdTo },
      'case 2026-17',
      { actor: 'counsel@acme', actorKind: 'user' },
    );
  });
  afterAll(() => rmSync(storeDir, { recursive: true, force: true }));

  const post = async (body: unknown, token = admin): Promise<Response> =>
    api.get('/v1/erasures', token, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  async function waitDone(id: string, token = admin): Promise<ErasureView> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const res = await api.get(`/v1/erasures/${id}`, token);
      expect(res.status).toBe(200);
      const view = (await res.json()) as ErasureView;
      if (view.state === 'done') return view;
      if (Date.now() > deadline) throw new Error(`erasure ${id} not done: ${JSON.stringify(view)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const inLastHour = (o: Seeded, t: number): boolean => o.at.getTime() >= t - HOUR && o.at.getTime() < t;
  const heldNow = (o: Seeded): boolean =>
    o.at.getTime() >= holdFrom.getTime() && o.at.getTime() < holdTo.getTime();

  it("erasing a camera's last hour removes exactly those objects; held ones survive and are reported", async () => {
    const to = now;
    const from = now - HOUR;
    const scope = {
      kind: 'camera',
      device_id: 'gw-1',
      camera_id: 'cam1',
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
    };
    const res = await post({ scope, reason: REASON });
    expect(res.status).toBe(202);
    const created = (await res.json()) as ErasureView;
    expect(created.state).toBe('pending');
    const done = await waitDone(created.id);

    const inScope = seeded.filter(
      (o) => o.tenant === 'acme' && o.device === 'gw-1' && o.camera === 'cam1' && inLastHour(o, to),
    );
    const held = inScope.filter(heldNow);
    const erased = inScope.filter((o) => !heldNow(o));
    expect(erased.length).toBeGreaterThan(10);
    expect(held.length).toBeGreaterThan(0);
    expect(done.counts).toEqual({
      erased: erased.length * 2,
      held: held.length * 2,
      failed: 0,
      media: { erased: erased.length, held: held.length, failed: 0 },
      events: { erased: erased.length, held: held.length },
    });
    expect(done.batches).toBeGreaterThan(2); // batches of 7

    // The store: exactly the erased objects' files are gone, nothing else (no temp files either).
    const erasedKeys = new Set(erased.map((o) => o.key));
    expect(listStore(storeDir)).toEqual(
      new Set(seeded.filter((o) => !erasedKeys.has(o.key)).map((o) => o.key)),
    );

    // The rows: tombstones for exactly those, everything else live and unchanged.
    const db = api.cloud().db;
    const media = await db.selectFrom('media').selectAll().execute();
    for (const m of media) {
      const gone = erasedKeys.has(seeded.find((o) => o.mediaId === m.media_id)!.key);
      expect(m.deleted_reason, m.media_id).toBe(gone ? 'erasure' : null);
      expect(m.storage_key === null, m.media_id).toBe(gone);
    }
    const events = await db.selectFrom('events').selectAll().execute();
    const erasedEvents = new Set(erased.map((o) => o.eventId));
    for (const e of events) {
      if (erasedEvents.has(e.event_id)) {
        expect(e.erased_at).not.toBeNull();
        expect(e.erasure_id).toBe(created.id);
        expect([e.track_id, e.snapshot_media_id, e.trigger_zone, e.zones, e.attributes]).toEqual([
          '',
          null,
          null,
          [],
          {},
        ]);
        expect(e.payload.length).toBe(0);
        expect([e.label, e.device_id, e.camera_id]).toEqual(['person', 'gw-1', 'cam1']);
      } else {
        expect(e.erased_at).toBeNull();
        expect(e.track_id).not.toBe('');
        expect(e.snapshot_media_id).not.toBeNull();
      }
    }
    expect(events.filter((e) => e.erased_at !== null)).toHaveLength(erased.length);

    // The audit log: the request and the completion, scope ids and counts only (never the reason).
    const audit = await db
      .selectFrom('audit_log')
      .selectAll()
      .where('resource', '=', `erasure:acme/${created.id}`)
      .orderBy('seq')
      .execute();
    expect(audit.map((a) => [a.action, a.actor, a.outcome])).toEqual([
      ['erasure.request', 'user@acme', 'allowed'],
      ['erasure.complete', 'system', 'allowed'],
    ]);
    expect(audit[1]!.detail).toMatchObject({
      media_erased: erased.length,
      media_held: held.length,
      events_erased: erased.length,
      scope: { kind: 'camera', device_id: 'gw-1', camera_id: 'cam1' },
    });
    expect(JSON.stringify(audit.map((a) => a.detail))).not.toMatch(/Jane|DSR-4471/);
  });

  it('is idempotent: the same request again erases nothing more and still reports the held items', async () => {
    const before = listStore(storeDir);
    const res = await post({
      scope: {
        kind: 'camera',
        device_id: 'gw-1',
        camera_id: 'cam1',
        from: new Date(now - HOUR).toISOString(),
        to: new Date(now).toISOString(),
      },
      reason: REASON,
    });
    const done = await waitDone(((await res.json()) as ErasureView).id);
    expect(done.counts.erased).toBe(0);
    expect(done.counts.held).toBeGreaterThan(0);
    expect(listStore(storeDir)).toEqual(before);
  });

  it('erases the held items once the hold is released', async () => {
    await new LegalHolds(api.cloud().db, api.cloud().audit).release('acme', holdId, 'case closed', {
      actor: 'counsel@acme',
      actorKind: 'user',
    });
    const res = await post({
      scope: {
        kind: 'camera',
        device_id: 'gw-1',
        camera_id: 'cam1',
        from: holdFrom.toISOString(),
        to: holdTo.toISOString(),
      },
      reason: REASON,
    });
    const done = await waitDone(((await res.json()) as ErasureView).id);
    const held = seeded.filter(
      (o) => o.tenant === 'acme' && o.device === 'gw-1' && o.camera === 'cam1' && heldNow(o),
    );
    expect(done.counts.media).toEqual({ erased: held.length, held: 0, failed: 0 });
    const left = listStore(storeDir);
    for (const o of held) expect(left.has(o.key)).toBe(false);
  });

  it('erases by event and by track, media and events together', async () => {
    const gw2 = seeded.filter((o) => o.tenant === 'acme' && o.device === 'gw-2');
    const one = gw2[0]!;
    const byEvent = await waitDone(
      (
        (await (
          await post({ scope: { kind: 'event', event_ids: [one.eventId] }, reason: 'x' })
        ).json()) as ErasureView
      ).id,
    );
    expect(byEvent.counts.media.erased).toBe(1);
    expect(byEvent.counts.events.erased).toBe(1);
    const track = gw2.filter((o) => o.track === 'x-1' && o !== one);
    const byTrack = await waitDone(
      (
        (await (
          await post({ scope: { kind: 'track', device_id: 'gw-2', track_id: 'x-1' }, reason: 'x' })
        ).json()) as ErasureView
      ).id,
    );
    expect(byTrack.counts.media.erased).toBe(track.length);
    expect(byTrack.counts.events.erased).toBe(track.length);
    const left = listStore(storeDir);
    for (const o of [one, ...track]) expect(left.has(o.key)).toBe(false);
    for (const o of gw2.filter((g) => g !== one && !track.includes(g))) expect(left.has(o.key)).toBe(true);
  });

  it("another tenant's erasure is a 404, and an erasure of another tenant's ids erases nothing of theirs", async () => {
    const globexAdmin = await api.token('globex', ['admin']);
    const mine = (await (
      await post({ scope: { kind: 'device', device_id: 'gw-nowhere' }, reason: 'x' })
    ).json()) as ErasureView;
    const other = await api.get(`/v1/erasures/${mine.id}`, globexAdmin);
    expect(other.status).toBe(404);
    const globex = seeded.filter((o) => o.tenant === 'globex');
    const res = await post(
      { scope: { kind: 'event', event_ids: globex.map((o) => o.eventId) }, reason: 'x' },
      admin,
    );
    const done = await waitDone(((await res.json()) as ErasureView).id);
    expect(done.counts).toMatchObject({ erased: 0, held: 0, failed: 0 });
    const left = listStore(storeDir);
    for (const o of globex) expect(left.has(o.key)).toBe(true);
  });

  it('refuses bad scopes (400) and callers without the grant (403)', async () => {
    const bad = [
      {
        scope: {
          kind: 'camera',
          device_id: 'gw-1',
          camera_id: 'cam1',
          from: '2026-01-02T00:00:00Z',
          to: '2026-01-01T00:00:00Z',
        },
        reason: 'x',
      },
      { scope: { kind: 'device', device_id: '../etc' }, reason: 'x' },
      { scope: { kind: 'event', event_ids: [] }, reason: 'x' },
      { scope: { kind: 'site', site_id: 'hq', extra: 1 }, reason: 'x' },
      { scope: { kind: 'site', site_id: 'hq' }, reason: ' ' },
      { scope: { kind: 'tenant' }, reason: 'x' },
    ];
    for (const body of bad) expect((await post(body)).status, JSON.stringify(body)).toBe(400);
    for (const role of ['operator', 'viewer', 'auditor'])
      expect(
        (await post({ scope: { kind: 'site', site_id: 'hq' }, reason: 'x' }, await api.token('acme', [role])))
          .status,
      ).toBe(403);
    const siteScoped = await api.token('acme', ['admin'], { sites: ['hq'] });
    expect((await post({ scope: { kind: 'site', site_id: 'hq' }, reason: 'x' }, siteScoped)).status).toBe(
      403,
    );
  });
});
