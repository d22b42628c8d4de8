// The web console in a real browser (Debian chromium + playwright-core) against a real cloud (startCloud: NATS with
// mTLS, PostgreSQL, ingest) and a real OpenID Connect provider (oidc-provider). Events and snapshots arrive
// through the real ingest path (JetStream -> ingest -> PostgreSQL -> /v1/stream).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  CameraState,
  DetectionEvent,
  DeviceHealth,
  Heartbeat,
  MediaObject,
  subjectFor,
  TrackPhase,
} from '@vigil/proto';
import { freePort } from '@vigil/testkit';
import { sql } from 'kysely';
import { pino } from 'pino';
import type { Browser, BrowserContext, Dialog, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ensureDevConfigSigningKey } from '../src/config-ota/signing.js';
import { ACTIVE_STATES } from '../src/rollouts/store.js';
import { startCloud, type CloudApp } from '../src/index.js';
import { useApiCloud, uuidV7 } from './api-fixtures.js';
import {
  CLIENT_ID,
  CLIENT_SECRET,
  launchChromium,
  login,
  screenshot,
  seriousViolations,
  startIdp,
} from './support/console-browser.js';
import { sha256Hex, TINY_JPEG } from './support/media.js';

const tmp = mkdtempSync(join(tmpdir(), 'vigil-console-'));
const secretFile = join(tmp, 'client-secret');
writeFileSync(secretFile, `${CLIENT_SECRET}\n`, { mode: 0o600 });

describe('web console (chromium, OIDC login, real cloud)', () => {
  let cloudPort = 0;
  let idp: { issuer: string; close(): Promise<void> } | undefined;
  let signingKeyFile = '';
  const base = (): string => `http://localhost:${cloudPort}`;
  beforeAll(async () => {
    cloudPort = await freePort();
    idp = await startIdp(await freePort(), `${base()}/console/auth/callback`);
    signingKeyFile = (await ensureDevConfigSigningKey(join(tmp, 'keys'))).privateJwkFile;
  });
  afterAll(async () => {
    await idp?.close();
  });
  // Getters: read when the cloud starts (after the ports and the provider above exist).
  const api = useApiCloud({
    get http() {
      return { port: cloudPort };
    },
    get console() {
      return {
        enabled: true,
        oidc: {
          issuer: idp!.issuer,
          clientId: CLIENT_ID,
          clientSecretFile: secretFile,
          redirectUrl: `${base()}/console/auth/callback`,
        },
        cookieSecure: true,
      };
    },
    get configSigning() {
      return { privateJwkFile: signingKeyFile };
    },
    media: { dir: join(tmp, 'media') },
  });

  let browser: Browser;
  let admin: BrowserContext;
  let page: Page;
  let nc: NatsConnection;

  beforeAll(async () => {
    const db = api.cloud().db;
    await api.cloud().registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' });
    await sql`update devices set enrolled_at = now() where tenant_id = 'acme' and id = 'gw-1'`.execute(db);
    nc = await api.connectNats();
    nc.publish(
      subjectFor('acme', 'gw-1', 'hb'),
      Heartbeat.encode(
        Heartbeat.fromPartial({
          tenantId: 'acme',
          siteId: 'hq',
          deviceId: 'gw-1',
          sentAt: new Date(),
          agentVersion: '1.4.2',
          configVersion: 3n,
          health: DeviceHealth.DEVICE_HEALTH_OK,
          cameras: [
            {
              cameraId: 'lobby',
              state: CameraState.CAMERA_STATE_STREAMING,
              fps: 5,
              inferenceMsP50: 41.5,
              eventsPerMinute: 2,
            },
          ],
        }),
      ).finish(),
    );
    // The heartbeat went through the real consumer (TELEMETRY -> PostgreSQL).
    for (let t = Date.now(); (await api.cloud().registry.listDevices('acme'))[0]?.last_seen_at == null;) {
      if (Date.now() - t > 20_000) throw new Error('the heartbeat was not recorded');
      await new Promise((r) => setTimeout(r, 50));
    }
    browser = await launchChromium();
    admin = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await admin.newPage();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await nc?.close();
  });

  /** A real event (and its snapshot) through JetStream and ingest; resolves when the event row is committed. */
  async function ingestEvent(
    label: string,
  ): Promise<{ eventId: string; mediaId: string; committedAt: number }> {
    const js = jetstream(nc);
    const at = new Date();
    const eventId = uuidV7(at.getTime());
    const mediaId = uuidV7(at.getTime());
    const media = MediaObject.fromPartial({
      mediaId,
      tenantId: 'acme',
      siteId: 'hq',
      deviceId: 'gw-1',
      cameraId: 'lobby',
      eventId,
      capturedAt: at,
      contentType: 'image/jpeg',
      sha256: sha256Hex(TINY_JPEG),
      data: TINY_JPEG,
      redacted: true,
    });
    await js.publish(subjectFor('acme', 'gw-1', 'media', 'lobby'), MediaObject.encode(media).finish(), {
      msgID: mediaId,
    });
    await expect
      .poll(async () => (await api.cloud().media.repository.get('acme', mediaId))?.storage_key ?? null, {
        timeout: 20_000,
      })
      .not.toBeNull();
    const event = DetectionEvent.fromPartial({
      eventId,
      tenantId: 'acme',
      siteId: 'hq',
      deviceId: 'gw-1',
      cameraId: 'lobby',
      occurredAt: at,
      trackId: `t-${eventId.slice(-6)}`,
      phase: TrackPhase.TRACK_PHASE_START,
      label,
      score: 0.87,
      box: { x: 0.1, y: 0.2, w: 0.3, h: 0.4 },
      zones: ['door'],
      snapshot: {
        $case: 'snapshotRef',
        value: {
          mediaId,
          contentType: 'image/jpeg',
          sha256: sha256Hex(TINY_JPEG),
          sizeBytes: BigInt(TINY_JPEG.length),
        },
      },
    });
    await js.publish(subjectFor('acme', 'gw-1', 'evt', 'lobby'), DetectionEvent.encode(event).finish(), {
      msgID: eventId,
    });
    // The commit, seen from PostgreSQL (polled every 20 ms: at most that late).
    const deadline = Date.now() + 20_000;
    for (;;) {
      const row = await api
        .cloud()
        .db.selectFrom('events')
        .select('event_id')
        .where('tenant_id', '=', 'acme')
        .where('event_id', '=', eventId)
        .executeTakeFirst();
      if (row) return { eventId, mediaId, committedAt: Date.now() };
      if (Date.now() > deadline) throw new Error(`event ${eventId} not committed`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  const auditCount = async (
    action: string,
    resource: string,
    outcome: 'allowed' | 'denied' | 'failed' = 'allowed',
  ): Promise<number> =>
    Number(
      (
        await api
          .cloud()
          .db.selectFrom('audit_log')
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .where('action', '=', action)
          .where('resource', '=', resource)
          .where('outcome', '=', outcome)
          .executeTakeFirstOrThrow()
      ).n,
    );

  const csrfOf = (p: Page): Promise<string> => p.inputValue('form.logout input[name="_csrf"]');
  /** The nav's links, in order. */
  const navLinks = async (p: Page): Promise<Array<string | null>> =>
    Promise.all((await p.locator('nav[aria-label="Console"] a').all()).map((a) => a.getAttribute('href')));
  const ALL_PAGES = [
    '/console',
    '/console/events',
    '/console/rollouts',
    '/console/dead-letters',
    '/console/webhooks',
    '/console/audit',
  ];
  const VIEWER_PAGES = ['/console', '/console/events', '/console/rollouts'];
  /** The first live event (the review tests mark it). */
  let reviewedEventId = '';

  it('logs in with OpenID Connect (code + PKCE) and shows the device online on the fleet page', async () => {
    await login(page, base(), 'admin@acme');
    expect(new URL(page.url()).pathname).toBe('/console');
    const row = page.locator('tr[data-device="gw-1"]');
    await expect.poll(() => row.locator('.status').textContent()).toBe('online');
    const cells = await row.locator('td').allTextContents();
    expect(cells).toEqual(expect.arrayContaining(['ok', '5.0', '41.5', '3', '1.4.2']));
    // Per camera, from the same heartbeat (devices.last_cameras).
    expect((await row.locator('li[data-camera="lobby"]').textContent())?.replace(/\s+/g, ' ').trim()).toBe(
      'lobby streaming 5.0 fps, 41.5 ms',
    );
    const cookie = (await admin.cookies()).find((c) => c.name === '__Host-vigil_console');
    expect(cookie).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Lax', path: '/' });
    expect(cookie!.expires).toBeGreaterThan(Date.now() / 1000);
    const res = await page.request.get(`${base()}/console`);
    expect(res.headers()['content-security-policy']).toMatch(/script-src 'self'.*frame-ancestors 'none'/);
    // search and filter
    await page.fill('input[name="q"]', 'gw-');
    await page.click('form.filters button');
    await expect.poll(() => page.locator('tr[data-device]').count()).toBe(1);
    await page.goto(`${base()}/console?q=nomatch`);
    expect(await page.locator('tr[data-device]').count()).toBe(0);
    await page.goto(`${base()}/console`);
    await screenshot(page, 'fleet');
    expect(await seriousViolations(page)).toEqual([]);
  }, 90_000);

  it('shows a new event live within 2 s of its commit, with its snapshot; opening it writes media.read', async () => {
    await page.goto(`${base()}/console/events`);
    await page.waitForSelector('[data-stream][data-connected="true"]', { timeout: 15_000 });
    const { eventId, mediaId, committedAt } = await ingestEvent('person');
    reviewedEventId = eventId;
    const row = page.locator(`tr[data-event="${eventId}"]`);
    await row.waitFor({ timeout: 10_000 });
    const seenAfterMs = Date.now() - committedAt;
    console.log(
      `console live event: row on the page ${seenAfterMs} ms after the commit was seen in PostgreSQL`,
    );
    expect(seenAfterMs).toBeLessThan(2000);
    // The thumbnail came through the audited media route.
    await expect
      .poll(() =>
        row
          .locator('img.thumb')
          .evaluate(
            (img) =>
              (img as unknown as { complete: boolean; naturalWidth: number }).complete &&
              (img as unknown as { naturalWidth: number }).naturalWidth,
          ),
      )
      .toBe(8);
    const resource = `media:acme/${mediaId}`;
    await expect.poll(() => auditCount('media.read', resource)).toBe(1);
    expect(await seriousViolations(page)).toEqual([]);
    await screenshot(page, 'events');
    // Filters: zone and label, server-rendered.
    await page.goto(`${base()}/console/events?zone=door&label=person`);
    expect(await page.locator(`tr[data-event="${eventId}"]`).count()).toBe(1);
    await page.goto(`${base()}/console/events?zone=gate`);
    expect(await page.locator(`tr[data-event="${eventId}"]`).count()).toBe(0);

    await page.goto(`${base()}/console/events`);
    await page.locator(`tr[data-event="${eventId}"] a`).click();
    await page.waitForURL(`${base()}/console/events/${eventId}`);
    await expect
      .poll(() =>
        page
          .locator('img.snapshot')
          .evaluate(
            (img) =>
              (img as unknown as { complete: boolean; naturalWidth: number }).complete &&
              (img as unknown as { naturalWidth: number }).naturalWidth,
          ),
      )
      .toBe(8);
    // Opening the event read the picture once more: on the audit log, as the console user.
    await expect
      .poll(() => auditCount('media.read', resource), { timeout: 10_000 })
      .toBeGreaterThanOrEqual(3);
    const entry = await api
      .cloud()
      .db.selectFrom('audit_log')
      .select(['actor', 'detail'])
      .where('action', '=', 'media.read')
      .where('resource', '=', resource)
      .orderBy('seq', 'desc')
      .executeTakeFirstOrThrow();
    expect(entry.actor).toBe('admin@acme');
    expect(entry.detail).toMatchObject({ event_id: eventId, camera: 'lobby' });
    expect(await seriousViolations(page)).toEqual([]);
    await screenshot(page, 'event-detail');
  }, 90_000);

  it('marks an event reviewed on its page (audited), filters reviewed / not reviewed; the API un-reviews it', async () => {
    const id = reviewedEventId;
    await page.goto(`${base()}/console/events/${id}`);
    expect(await page.locator('[data-reviewed]').getAttribute('data-reviewed')).toBe('no');
    await page.click('button.op-review');
    await page.waitForURL(`${base()}/console/events/${id}`);
    expect(await page.locator('[data-reviewed]').getAttribute('data-reviewed')).toBe('yes');
    expect(await page.locator('[data-reviewed]').textContent()).toContain('Reviewed by admin@acme');
    expect(await auditCount('event.review', `event:acme/${id}`)).toBe(1);
    const stored = await api
      .cloud()
      .db.selectFrom('event_reviews')
      .select(['reviewed_by'])
      .where('tenant_id', '=', 'acme')
      .where('event_id', '=', id)
      .executeTakeFirstOrThrow();
    expect(stored.reviewed_by).toBe('admin@acme');
    expect(await seriousViolations(page)).toEqual([]);
    await screenshot(page, 'event-reviewed');
    // Filters: the reviewed one is in "reviewed", not in "not reviewed"; the other events the other way round.
    await page.goto(`${base()}/console/events?reviewed=yes`);
    expect(await page.locator('tr[data-event]').count()).toBe(1);
    expect(await page.locator(`tr[data-event="${id}"] td.review`).textContent()).toContain('by admin@acme');
    await page.goto(`${base()}/console/events?reviewed=no`);
    expect(await page.locator(`tr[data-event="${id}"]`).count()).toBe(0);
    // The API: the same mark; an operator may un-review and review (audited), a viewer may not.
    const operator = await api.token('acme', ['operator']);
    const viewer = await api.token('acme', ['viewer']);
    const call = (method: string, token: string) =>
      fetch(`${base()}/v1/events/${id}/review`, { method, headers: { authorization: `Bearer ${token}` } });
    expect(await (await call('GET', viewer)).json()).toMatchObject({
      reviewed: true,
      reviewed_by: 'admin@acme',
    });
    expect((await call('POST', viewer)).status).toBe(403);
    expect((await call('DELETE', viewer)).status).toBe(403);
    expect(await auditCount('event.review', `event:acme/${id}`, 'denied')).toBe(2);
    const off = await call('DELETE', operator);
    expect(off.status).toBe(200);
    expect(await off.json()).toMatchObject({ event_id: id, reviewed: false });
    expect(await auditCount('event.unreview', `event:acme/${id}`)).toBe(1);
    await page.goto(`${base()}/console/events/${id}`);
    expect(await page.locator('[data-reviewed]').getAttribute('data-reviewed')).toBe('no');
    const on = await call('POST', operator);
    expect(on.status).toBe(200);
    expect(await on.json()).toMatchObject({ reviewed: true, reviewed_by: 'user@acme' });
    expect(await auditCount('event.review', `event:acme/${id}`)).toBe(2);
  }, 90_000);

  it('lists, inspects and replays a dead letter (audited)', async () => {
    const db = api.cloud().db;
    const now = new Date();
    const target = '0190a0b0-0000-7000-8000-00000000d001';
    const rule = '0190a0b0-0000-7000-8000-00000000d002';
    const incident = '0190a0b0-0000-7000-8000-00000000d003';
    await sql`insert into alert_targets (id, tenant_id, name, url, auth, secret, created_by, created_at)
      values (${target}, 'acme', 'county PSAP', 'https://psap.example/cap', 'signature', 's', 'admin@acme', ${now})`.execute(
      db,
    );
    await sql`insert into alert_rules (id, tenant_id, name, match, cap, target_ids, created_by, created_at, updated_at)
      values (${rule}, 'acme', 'intrusion', '{}'::jsonb, '{}'::jsonb, array[${target}]::uuid[], 'admin@acme', ${now}, ${now})`.execute(
      db,
    );
    await sql`insert into alert_incidents (id, tenant_id, rule_id, site_id, device_id, camera_id, track_id, state,
        first_seen_at, last_event_id, fingerprint, created_at, updated_at)
      values (${incident}, 'acme', ${rule}, 'hq', 'gw-1', 'lobby', 't1', 'alerted', ${now}, ${reviewedEventId}, 'f', ${now}, ${now})`.execute(
      db,
    );
    const msg = `${incident}:1:${target}`;
    await sql`insert into alert_messages (id, identifier, tenant_id, incident_id, target_id, seq, msg_type, sent,
        event_id, info, state, attempts, http_status, error, body, updated_at)
      values (${msg}, 'vigil-acme-1', 'acme', ${incident}, ${target}, 1, 'Alert', ${now}, ${reviewedEventId},
        '{}'::jsonb, 'dead', 8, 503, 'gave up: too many attempts', '<alert><script>window.__xss=3</script></alert>', ${now})`.execute(
      db,
    );
    await page.goto(`${base()}/console/dead-letters`);
    const row = page.locator(`tr[data-message="${msg}"]`);
    expect(await row.locator('td').nth(4).textContent()).toBe('gave up: too many attempts');
    expect(await seriousViolations(page)).toEqual([]);
    await screenshot(page, 'dead-letters');
    await row.locator('a').click();
    await page.waitForURL(/\/console\/dead-letters\/.+/);
    expect(await page.locator('pre.document').textContent()).toBe(
      '<alert><script>window.__xss=3</script></alert>',
    );
    expect(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)).toBeUndefined();
    expect(await seriousViolations(page)).toEqual([]);
    await screenshot(page, 'dead-letter');
    page.once('dialog', (d) => void d.accept());
    await page.click('button.op-replay');
    await expect.poll(() => page.locator('button.op-replay').count()).toBe(0);
    const state = await db
      .selectFrom('alert_messages')
      .select(['state', 'attempts'])
      .where('id', '=', msg)
      .executeTakeFirstOrThrow();
    // Back to pending with its attempts reset (the worker may have tried it again since: never 8 times yet).
    expect(state.attempts).toBeLessThan(8);
    expect(await auditCount('alert_message.replay', `alert_message:acme/${msg}`)).toBe(1);
  }, 60_000);

  it('creates a webhook with its secret shown once, lists it, and shows its deliveries', async () => {
    await page.goto(`${base()}/console/webhooks`);
    await page.fill('form.create input[name="url"]', 'https://hooks.example.com/vigil');
    await page.fill('form.create input[name="description"]', 'SOC <b>feed</b>');
    await page.fill('form.create input[name="labels"]', 'person, car');
    await page.click('form.create button[type="submit"]');
    const secret = (await page.locator('[data-secret]').textContent())!.trim();
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const hook = await api
      .cloud()
      .db.selectFrom('webhooks')
      .select(['id', 'secret', 'filter', 'description', 'created_by'])
      .where('tenant_id', '=', 'acme')
      .executeTakeFirstOrThrow();
    expect(hook).toMatchObject({
      secret,
      filter: { labels: ['person', 'car'] },
      description: 'SOC <b>feed</b>',
      created_by: 'admin@acme',
    });
    expect(await auditCount('webhook.create', `webhook:acme/${hook.id}`)).toBe(1);
    expect(await seriousViolations(page)).toEqual([]);
    await screenshot(page, 'webhook-created');
    // Once: the list does not show it again.
    await page.goto(`${base()}/console/webhooks`);
    expect(await page.content()).not.toContain(secret);
    await page.locator(`tr[data-webhook="${hook.id}"] a`).click();
    await page.waitForURL(`${base()}/console/webhooks/${hook.id}`);
    expect(await page.locator('h2').first().textContent()).toBe('Recent deliveries');
    expect(await seriousViolations(page)).toEqual([]);
    await screenshot(page, 'webhook-deliveries');
    // A URL the policy refuses (loopback) is a validation error, nothing created.
    await page.goto(`${base()}/console/webhooks`);
    await page.fill('form.create input[name="url"]', 'https://127.0.0.1/x');
    await page.click('form.create button[type="submit"]');
    // Said at the form, next to the field it names; what was typed is kept.
    await page.locator('#e-url').waitFor();
    expect(await page.locator('#create-refused').textContent()).toContain('URL');
    expect(await page.locator('#f-url').getAttribute('aria-invalid')).toBe('true');
    expect(await page.inputValue('form.create input[name="url"]')).toBe('https://127.0.0.1/x');
    expect(await seriousViolations(page)).toEqual([]);
    await screenshot(page, 'webhook-refused');
    expect(
      (await api.cloud().db.selectFrom('webhooks').select('id').where('tenant_id', '=', 'acme').execute())
        .length,
    ).toBe(1);
  }, 60_000);

  it('creates a rollout in the console, shows its progress and aborts it there', async () => {
    await page.goto(`${base()}/console/rollouts`);
    await page.fill('textarea[name="document"]', '{"retention": {"eventDays": 30}}');
    await page.fill('input[name="waves"]', '50,100');
    await page.click('form.create button[type="submit"]');
    await page.waitForURL(`${base()}/console/rollouts`);
    const article = page.locator('article.rollout').first();
    await expect.poll(() => article.locator('.state').textContent()).toMatch(/pending|running/);
    const id = await article.getAttribute('data-rollout');
    expect(await auditCount('rollout.create', `rollout:acme/${id}`)).toBe(1);
    // Live progress: the canary wave gets its device (the executor issues it) without a reload.
    await expect
      .poll(
        async () => (await article.locator('tbody tr').first().locator('td').first().textContent())?.trim(),
        {
          timeout: 20_000,
        },
      )
      .toBe('1');
    expect(await seriousViolations(page)).toEqual([]);
    await screenshot(page, 'rollouts');
    page.once('dialog', (d) => void d.accept());
    await article.locator('button.op-abort').click();
    await page.waitForURL(`${base()}/console/rollouts`);
    await expect
      .poll(() => page.locator(`article[data-rollout="${id}"] .state`).textContent())
      .toMatch(/aborted|rolling_back|rolled_back/);
    expect(await auditCount('rollout.abort', `rollout:acme/${id}`)).toBe(1);
    const row = await api
      .cloud()
      .db.selectFrom('rollouts')
      .select(['state', 'abort_reason'])
      .where('id', '=', id!)
      .executeTakeFirstOrThrow();
    expect(row.abort_reason).toMatch(/^aborted by admin@acme/);
  }, 90_000);

  it('shows the audit log with filters and the chain verification', async () => {
    await page.goto(`${base()}/console/audit?action=media.read`);
    const actions = await page.locator('#audit tbody tr td:nth-child(4)').allTextContents();
    expect(actions.length).toBeGreaterThanOrEqual(3);
    expect(new Set(actions)).toEqual(new Set(['media.read']));
    await page.click('a[href="/console/audit?verify=1"]');
    await expect.poll(() => page.locator('[data-chain]').getAttribute('data-chain')).toBe('intact');
    expect(await seriousViolations(page)).toEqual([]);
    await screenshot(page, 'audit');
  }, 60_000);

  it('gives a viewer no admin controls, and refuses a viewer’s forged POST (audited as denied)', async () => {
    // An active rollout, so that an admin sees its buttons. One active rollout per tenant is a constraint: the
    // one aborted by an earlier test must have finished rolling back first, or this create is refused (409).
    await expect
      .poll(
        async () =>
          (
            await api
              .cloud()
              .db.selectFrom('rollouts')
              .select('id')
              .where('tenant_id', '=', 'acme')
              .where('state', 'in', [...ACTIVE_STATES])
              .execute()
          ).length,
        { timeout: 30_000 },
      )
      .toBe(0);
    await page.goto(`${base()}/console/rollouts`);
    await page.fill('textarea[name="document"]', '{}');
    await page.click('form.create button[type="submit"]');
    const active = page.locator('article.rollout').first();
    await expect.poll(() => active.locator('.state').textContent()).toMatch(/pending|running/);
    const id = (await active.getAttribute('data-rollout'))!;
    expect(await active.locator('button.op-abort').count()).toBe(1);

    const viewer = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const vpage = await viewer.newPage();
    await login(vpage, base(), 'viewer@acme');
    // The nav links only the pages Cedar lets each one open (each page's own question); the admin's has them all.
    expect(await navLinks(vpage)).toEqual(VIEWER_PAGES);
    expect(await navLinks(page)).toEqual(ALL_PAGES);
    await vpage.goto(`${base()}/console/rollouts`);
    expect(await navLinks(vpage)).toEqual(VIEWER_PAGES);
    await vpage.locator(`article[data-rollout="${id}"]`).waitFor();
    expect(await vpage.locator('form.create').count()).toBe(0);
    expect(await vpage.locator('article.rollout button').count()).toBe(0);
    expect(await seriousViolations(vpage)).toEqual([]);
    await screenshot(vpage, 'rollouts-viewer-phone');
    // The viewer forges the abort with its own valid session, token and Origin: the server asks Cedar and refuses.
    const forged = await vpage.request.post(`${base()}/console/rollouts/${id}/abort`, {
      form: { _csrf: await csrfOf(vpage) },
      headers: { origin: base() },
      maxRedirects: 0,
    });
    expect(forged.status()).toBe(403);
    expect(await auditCount('rollout.write', 'rollouts:acme', 'denied')).toBeGreaterThanOrEqual(1);
    const created = await vpage.request.post(`${base()}/console/rollouts`, {
      form: { _csrf: await csrfOf(vpage), scope: 'tenant', document: '{}' },
      headers: { origin: base() },
      maxRedirects: 0,
    });
    expect(created.status()).toBe(403);
    expect(
      (
        await api
          .cloud()
          .db.selectFrom('rollouts')
          .select('state')
          .where('id', '=', id)
          .executeTakeFirstOrThrow()
      ).state,
    ).toMatch(/pending|running/);
    // Nor a revoke form on a device page; a forged revoke is refused the same way.
    await vpage.goto(`${base()}/console/devices/gw-1`);
    expect(await vpage.locator('li[data-camera="lobby"]').count()).toBe(1);
    expect(await vpage.locator('form[action$="/revoke"]').count()).toBe(0);
    const revoke = await vpage.request.post(`${base()}/console/devices/gw-1/revoke`, {
      form: { _csrf: await csrfOf(vpage), reason: 'forged' },
      headers: { origin: base() },
      maxRedirects: 0,
    });
    expect(revoke.status()).toBe(403);
    expect(await auditCount('device.revoke', 'device:acme/gw-1', 'denied')).toBe(1);
    // No review button; a forged review is refused by Cedar (audited as denied) and changes nothing.
    await vpage.goto(`${base()}/console/events/${reviewedEventId}`);
    expect(await vpage.locator('[data-reviewed]').count()).toBe(1);
    expect(await vpage.locator('button.op-review, button.op-unreview').count()).toBe(0);
    // Nor a snapshot it may not open (media:read, the media route's question): no broken image, on either page.
    expect(await vpage.locator('img').count()).toBe(0);
    await vpage.goto(`${base()}/console/events`);
    const vrow = vpage.locator(`tr[data-event="${reviewedEventId}"]`);
    expect(await vrow.locator('td').first().textContent()).toContain('not shown');
    expect(await vpage.locator('img.thumb').count()).toBe(0);
    await vpage.goto(`${base()}/console/events/${reviewedEventId}`);
    const deniedReviews = await auditCount('event.review', `event:acme/${reviewedEventId}`, 'denied');
    for (const op of ['review', 'unreview']) {
      const forgedReview = await vpage.request.post(`${base()}/console/events/${reviewedEventId}/${op}`, {
        form: { _csrf: await csrfOf(vpage) },
        headers: { origin: base() },
        maxRedirects: 0,
      });
      expect(forgedReview.status()).toBe(403);
    }
    expect(await auditCount('event.review', `event:acme/${reviewedEventId}`, 'denied')).toBe(
      deniedReviews + 2,
    );
    expect(
      await api
        .cloud()
        .db.selectFrom('event_reviews')
        .select('reviewed_by')
        .where('event_id', '=', reviewedEventId)
        .executeTakeFirst(),
    ).toEqual({ reviewed_by: 'user@acme' });
    // Dead letters, webhooks, the audit log: not in the nav, and a direct GET is refused (the 403 page, which keeps
    // the viewer's nav); so are forged replays/creates.
    const vtoken = await csrfOf(vpage);
    const msg = (await api.cloud().db.selectFrom('alert_messages').select('id').executeTakeFirstOrThrow()).id;
    const hookId = (
      await api
        .cloud()
        .db.selectFrom('webhooks')
        .select('id')
        .where('tenant_id', '=', 'acme')
        .executeTakeFirstOrThrow()
    ).id;
    for (const path of [
      '/console/dead-letters',
      `/console/dead-letters/${encodeURIComponent(msg)}`,
      '/console/webhooks',
      `/console/webhooks/${hookId}`,
      '/console/audit',
    ]) {
      const refused = await vpage.goto(`${base()}${path}`);
      expect(refused?.status(), path).toBe(403);
      expect(await vpage.locator('h1').textContent()).toBe('Not allowed');
      expect(await navLinks(vpage)).toEqual(VIEWER_PAGES);
      expect(await vpage.locator('table, form.create, button.op-replay').count()).toBe(0);
    }
    await vpage.goto(`${base()}/console/dead-letters`);
    expect(await seriousViolations(vpage)).toEqual([]);
    await screenshot(vpage, 'dead-letters-viewer-phone');
    await sql`update alert_messages set state = 'dead' where id = ${msg}`.execute(api.cloud().db);
    const replay = await vpage.request.post(
      `${base()}/console/dead-letters/${encodeURIComponent(msg)}/replay`,
      {
        form: { _csrf: vtoken },
        headers: { origin: base() },
        maxRedirects: 0,
      },
    );
    expect(replay.status()).toBe(403);
    expect(await auditCount('alert.write', 'alerts:acme', 'denied')).toBeGreaterThanOrEqual(1);
    expect(
      (
        await api
          .cloud()
          .db.selectFrom('alert_messages')
          .select('state')
          .where('id', '=', msg)
          .executeTakeFirstOrThrow()
      ).state,
    ).toBe('dead');
    const hooks = async () =>
      (await api.cloud().db.selectFrom('webhooks').select('id').where('tenant_id', '=', 'acme').execute())
        .length;
    const before = await hooks();
    const forgedHook = await vpage.request.post(`${base()}/console/webhooks`, {
      form: { _csrf: vtoken, url: 'https://evil.example/x' },
      headers: { origin: base() },
      maxRedirects: 0,
    });
    expect(forgedHook.status()).toBe(403);
    expect(await auditCount('webhook.write', 'webhooks:acme', 'denied')).toBeGreaterThanOrEqual(1);
    expect(await hooks()).toBe(before);
    await viewer.close();

    // A second rollout while this one is active: refused (409, one active rollout per tenant). The form says why,
    // links the active one, and keeps what was typed.
    const rollouts = async () =>
      (await api.cloud().db.selectFrom('rollouts').select('id').where('tenant_id', '=', 'acme').execute())
        .length;
    const rolloutsBefore = await rollouts();
    const doc = '{"retention": {"eventDays": 7}}';
    await page.goto(`${base()}/console/rollouts`);
    await page.fill('textarea[name="document"]', doc);
    await page.fill('input[name="waves"]', '20,100');
    const createdAgain = page.waitForResponse(
      (r) => r.url() === `${base()}/console/rollouts` && r.request().method() === 'POST',
    );
    await page.click('form.create button[type="submit"]');
    expect((await createdAgain).status()).toBe(409);
    const refusal = page.locator('#create-refused');
    await refusal.waitFor();
    expect(await refusal.textContent()).toContain(`rollout ${id} is still`);
    expect(await refusal.locator('a[data-active-rollout]').getAttribute('href')).toBe(
      `/console/rollouts#r-${id}`,
    );
    expect(await page.inputValue('textarea[name="document"]')).toBe(doc);
    expect(await page.inputValue('input[name="waves"]')).toBe('20,100');
    expect(await seriousViolations(page)).toEqual([]);
    await screenshot(page, 'rollout-refused-active');
    // A validation refusal (400) names its field, next to the field, the input kept.
    await page.fill('input[name="waves"]', '50,20');
    await page.click('form.create button[type="submit"]');
    await page.locator('#e-waves').waitFor();
    expect(await page.locator('#e-waves').textContent()).toContain('strictly increasing');
    expect(await page.locator('#f-waves').getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('#create-refused').textContent()).toContain('Waves');
    expect(await page.inputValue('input[name="waves"]')).toBe('50,20');
    expect(await page.inputValue('textarea[name="document"]')).toBe(doc);
    expect(await seriousViolations(page)).toEqual([]);
    await screenshot(page, 'rollout-refused-field');
    expect(await rollouts()).toBe(rolloutsBefore);

    // Clean up: the admin aborts it.
    await page.goto(`${base()}/console/rollouts`);
    page.once('dialog', (d) => void d.accept());
    await page.locator(`article[data-rollout="${id}"] button.op-abort`).click();
    await expect
      .poll(() => page.locator(`article[data-rollout="${id}"] .state`).textContent())
      .toMatch(/aborted|rolling_back|rolled_back/);
    // A stale page's second abort: refused (409), said above the list instead of an error page.
    const again = await page.request.post(`${base()}/console/rollouts/${id}/abort`, {
      form: { _csrf: await csrfOf(page) },
      headers: { origin: base() },
      maxRedirects: 0,
    });
    expect(again.status()).toBe(409);
    expect(await again.text()).toContain('id="operation-refused"');
  }, 120_000);

  it('refuses forged cross-site requests: no or foreign CSRF token, foreign or missing Origin, a foreign page’s websocket', async () => {
    await page.goto(`${base()}/console/rollouts`);
    const token = await csrfOf(page);
    const target = `${base()}/console/rollouts/00000000-0000-4000-8000-000000000000/abort`;
    const post = (form: Record<string, string>, headers: Record<string, string>) =>
      page.request.post(target, { form, headers, maxRedirects: 0 }).then((r) => r.status());
    expect(await post({}, { origin: base() })).toBe(403); // no token
    expect(await post({ _csrf: 'x'.repeat(43) }, { origin: base() })).toBe(403); // foreign token
    expect(await post({ _csrf: token }, { origin: 'http://evil.example' })).toBe(403); // foreign Origin
    expect(await post({ _csrf: token }, {})).toBe(403); // no Origin
    expect(await post({ _csrf: token }, { origin: base() })).toBe(404); // the real thing reaches the handler
    const metrics = await (await fetch(`${base()}/metrics`)).text();
    expect(metrics).toMatch(/vigil_cloud_console_csrf_refused_total\{reason="token"\} 2/);
    expect(metrics).toMatch(/vigil_cloud_console_csrf_refused_total\{reason="origin"\} 2/);
    // Logout is a POST too: refused without the token, works with it.
    expect(
      (
        await page.request.post(`${base()}/console/logout`, { headers: { origin: base() }, maxRedirects: 0 })
      ).status(),
    ).toBe(403);
    // The live stream: the session cookie opens it only from the console's own Origin.
    const cookie = (await admin.cookies()).find((c) => c.name === '__Host-vigil_console')!;
    const open = (origin: string) =>
      new Promise<string>((resolve) => {
        const ws = new WebSocket(`ws://localhost:${cloudPort}/v1/stream`, ['vigil.v1'], {
          headers: { cookie: `${cookie.name}=${cookie.value}`, origin },
        });
        ws.once('open', () => {
          ws.close();
          resolve('open');
        });
        ws.once('unexpected-response', (_req, res) => resolve(`HTTP ${res.statusCode}`));
        ws.once('error', (e) => resolve(e.message));
      });
    expect(await open('http://evil.example')).toBe('HTTP 401');
    expect(await open(base())).toBe('open');
  }, 60_000);

  it('renders an injected script in a label inert (escaping + CSP), live and server-rendered', async () => {
    const evil = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';
    let fired = false;
    const onDialog = (d: Dialog): void => {
      fired = true;
      void d.dismiss();
    };
    page.on('dialog', onDialog);
    await page.goto(`${base()}/console/events`);
    await page.waitForSelector('[data-stream][data-connected="true"]', { timeout: 15_000 });
    const { eventId } = await ingestEvent(evil);
    const live = page.locator(`tr[data-event="${eventId}"]`);
    await live.waitFor({ timeout: 10_000 });
    expect(await live.locator('td').nth(5).textContent()).toBe(evil);
    await page.goto(`${base()}/console/events`);
    expect(await page.locator(`tr[data-event="${eventId}"] td`).nth(5).textContent()).toBe(evil);
    await page.goto(`${base()}/console/events/${eventId}`);
    expect(await page.locator('h1').textContent()).toContain(evil);
    expect(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)).toBeUndefined();
    expect(await page.locator('main img[src="x"], main script').count()).toBe(0);
    expect(fired).toBe(false);
    page.off('dialog', onDialog);
  }, 60_000);

  it('shows a device page (cameras, recent events, certificates) and revokes the device with a confirmation', async () => {
    await page.goto(`${base()}/console`);
    await page.click('tr[data-device="gw-1"] a');
    await page.waitForURL(`${base()}/console/devices/gw-1`);
    expect(await page.locator('li[data-camera="lobby"]').count()).toBe(1);
    expect(await page.locator('tr[data-event]').count()).toBeGreaterThanOrEqual(2);
    expect(await seriousViolations(page)).toEqual([]);
    await screenshot(page, 'device');
    await page.fill('input[name="reason"]', 'stolen <b>gateway</b>');
    page.once('dialog', (d) => void d.accept());
    await page.click('form[action$="/revoke"] button');
    await page.waitForURL(`${base()}/console/devices/gw-1`);
    await page.locator('.status-revoked').waitFor();
    expect(await page.locator('main').textContent()).toContain('stolen <b>gateway</b>');
    expect(await auditCount('device.revoke', 'device:acme/gw-1')).toBe(1);
    const row = await api
      .cloud()
      .db.selectFrom('devices')
      .select(['revoked_by', 'revoke_reason'])
      .where('tenant_id', '=', 'acme')
      .where('id', '=', 'gw-1')
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ revoked_by: 'admin@acme', revoke_reason: 'stolen <b>gateway</b>' });
  }, 60_000);

  it('logs out (POST with the token): the session is gone', async () => {
    await page.goto(`${base()}/console`);
    await page.click('form.logout button');
    await page.waitForURL(`${base()}/console/logged-out`);
    const after = await page.request.get(`${base()}/console`, { maxRedirects: 0 });
    expect(after.status()).toBe(303);
    expect(after.headers().location).toMatch(/^\/console\/login/);
  }, 30_000);

  it('serves one login from two API processes: logged in through A, the session works on B; logout on B ends it on A', async () => {
    // A second cloud of the same deployment (same database and NATS, same public origin): behind a load balancer
    // either may get any request. Only the API role, on its own port.
    const config = api.config();
    const b: CloudApp = await startCloud(
      { ...config, http: { ...config.http, port: 0 }, roles: ['api'] },
      { logger: pino({ level: 'silent' }) },
    );
    try {
      const baseB = `http://localhost:${b.httpPort}`;
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const p = await context.newPage();
      await login(p, base(), 'admin@acme'); // the OIDC login runs on A
      // Cookies are per host, not per port: the browser sends the session cookie to B as it would through one
      // load-balanced name.
      await p.goto(`${baseB}/console/events/${reviewedEventId}`);
      expect(new URL(p.url()).pathname).toBe(`/console/events/${reviewedEventId}`);
      expect(await p.locator('.who').textContent()).toContain('admin@acme');
      // A state-changing request on B with the CSRF token A's page carries (stored with the session).
      await p.goto(`${base()}/console/events/${reviewedEventId}`);
      const token = await csrfOf(p);
      const res = await p.request.post(`${baseB}/console/events/${reviewedEventId}/unreview`, {
        form: { _csrf: token },
        headers: { origin: base() },
        maxRedirects: 0,
      });
      expect(res.status()).toBe(303);
      expect(await auditCount('event.unreview', `event:acme/${reviewedEventId}`)).toBe(2);
      // Logout on B deletes the session: A refuses the cookie now.
      const out = await p.request.post(`${baseB}/console/logout`, {
        form: { _csrf: token },
        headers: { origin: base() },
        maxRedirects: 0,
      });
      expect(out.status()).toBe(303);
      const after = await p.request.get(`${base()}/console`, { maxRedirects: 0 });
      expect(after.status()).toBe(303);
      expect(after.headers().location).toMatch(/^\/console\/login/);
      await context.close();
    } finally {
      await b.stop();
    }
  }, 120_000);
});
