import { capSchemaFile } from '@vigil/testkit';
import { describe, expect, it } from 'vitest';
import {
  areaXml,
  buildCap,
  capIdentifier,
  capReference,
  capTime,
  type CapMessageInput,
} from '../src/alerts/cap.js';
import { SnapshotUrls } from '../src/alerts/public-routes.js';
import {
  decide,
  fingerprintOf,
  inSchedule,
  matchesRule,
  windowOf,
  type RuleEvent,
} from '../src/alerts/rules.js';
import { parseAlertJob } from '../src/alerts/worker.js';
import { CapSchema, MAX_ANSWER_BYTES, parseAnswer } from '../src/alerts/xml.js';

const schema = CapSchema.fromFile(capSchemaFile());

const ev = (o: Partial<RuleEvent> = {}): RuleEvent => ({
  label: 'person',
  score: 0.9,
  zones: ['yard'],
  trigger_zone: null,
  site_id: 'hq',
  camera_id: 'gate',
  phase: 'update',
  occurred_at: '2026-12-07T10:00:00.000Z', // a Monday
  ...o,
});

describe('alert rules', () => {
  it('matches label, zone (or trigger zone), site, camera, score and schedule', () => {
    const m = { labels: ['person'], zones: ['yard'], sites: ['hq'], cameras: ['gate'], min_score: 0.5 };
    expect(matchesRule(m, ev())).toBe(true);
    expect(matchesRule(m, ev({ label: 'car' }))).toBe(false);
    expect(matchesRule(m, ev({ zones: [] }))).toBe(false);
    expect(matchesRule(m, ev({ zones: [], trigger_zone: 'yard' }))).toBe(true);
    expect(matchesRule(m, ev({ site_id: 'other' }))).toBe(false);
    expect(matchesRule(m, ev({ camera_id: 'lobby' }))).toBe(false);
    expect(matchesRule(m, ev({ score: 0.4 }))).toBe(false);
    expect(matchesRule({}, ev())).toBe(true);
  });

  it('schedules are UTC days and [from, to), wrapping past midnight', () => {
    const at = (iso: string) => new Date(iso);
    expect(inSchedule({ days: [1], from: '09:00', to: '17:00' }, at('2026-12-07T10:00:00Z'))).toBe(true);
    expect(inSchedule({ days: [0, 6] }, at('2026-12-07T10:00:00Z'))).toBe(false);
    expect(inSchedule({ from: '09:00', to: '10:00' }, at('2026-12-07T10:00:00Z'))).toBe(false);
    expect(inSchedule({ from: '22:00', to: '06:00' }, at('2026-12-07T23:30:00Z'))).toBe(true);
    expect(inSchedule({ from: '22:00', to: '06:00' }, at('2026-12-07T05:59:00Z'))).toBe(true);
    expect(inSchedule({ from: '22:00', to: '06:00' }, at('2026-12-07T12:00:00Z'))).toBe(false);
    expect(matchesRule({ schedule: { days: [0] } }, ev())).toBe(false);
  });

  it('one incident per track: pending until the dwell, Alert, Update on change only, Cancel at the end', () => {
    const m = { zones: ['yard'], min_dwell_seconds: 2 };
    const first = new Date('2026-12-07T10:00:00Z');
    expect(decide(m, undefined, ev({ phase: 'start' }))).toEqual({ kind: 'pending' });
    expect(decide(m, undefined, ev({ zones: ['door'] }))).toEqual({ kind: 'none' });
    expect(decide(m, undefined, ev({ phase: 'end' }))).toEqual({ kind: 'none' });
    expect(decide({}, undefined, ev())).toEqual({ kind: 'alert' }); // no dwell
    const pending = {
      state: 'pending' as const,
      first_seen_at: first,
      last_seen_at: null,
      fingerprint: fingerprintOf(ev()),
    };
    // Before the dwell: only the incident's window moves (its newest sighting), nothing is sent.
    expect(decide(m, pending, ev({ occurred_at: '2026-12-07T10:00:01.000Z' }))).toEqual({ kind: 'seen' });
    expect(decide(m, pending, ev({ occurred_at: '2026-12-07T10:00:02.000Z' }))).toEqual({ kind: 'alert' });
    expect(decide(m, pending, ev({ phase: 'end' }))).toEqual({ kind: 'end' });
    const alerted = { ...pending, state: 'alerted' as const };
    expect(decide(m, alerted, ev())).toEqual({ kind: 'none' });
    expect(decide(m, alerted, ev({ zones: ['yard', 'door'] }))).toEqual({ kind: 'update' });
    expect(decide(m, alerted, ev({ zones: [] }))).toEqual({ kind: 'update' }); // left the zone: news
    expect(decide(m, alerted, ev({ phase: 'end' }))).toEqual({ kind: 'cancel' });
    for (const state of ['cancelled', 'ended'] as const)
      expect(decide(m, { ...pending, state }, ev({ zones: ['door'] }))).toEqual({ kind: 'none' });
    expect(fingerprintOf({ label: 'p', zones: ['b', 'a'] })).toBe(
      fingerprintOf({ label: 'p', zones: ['a', 'b'] }),
    );
  });

  it('events of one track out of order: a late first sighting still counts the dwell, a stale one raises no Update', () => {
    const m = { zones: ['yard'], min_dwell_seconds: 2 };
    const at = (s: number) => `2026-12-07T10:00:0${s}.000Z`;
    // The UPDATE at +3 s was committed first (it opened the incident), the START at 0 s arrives after it.
    const opened = {
      state: 'pending' as const,
      first_seen_at: new Date(at(3)),
      last_seen_at: new Date(at(3)),
      fingerprint: fingerprintOf(ev()),
    };
    expect(decide(m, opened, ev({ phase: 'start', occurred_at: at(0) }))).toEqual({ kind: 'alert' });
    // Not yet: the window moves back (persisted), nothing is sent.
    expect(decide(m, opened, ev({ occurred_at: at(2) }))).toEqual({ kind: 'seen' });
    expect(windowOf(opened, ev({ occurred_at: at(2) }))).toEqual({
      first: new Date(at(2)),
      last: new Date(at(3)),
      newest: false,
    });
    expect(decide(m, opened, ev({ occurred_at: at(3) }))).toEqual({ kind: 'none' }); // nothing moved
    const alerted = { ...opened, state: 'alerted' as const, first_seen_at: new Date(at(0)) };
    // Older than the newest applied: the past, not news (even though its zones differ).
    expect(decide(m, alerted, ev({ zones: ['yard', 'door'], occurred_at: at(2) }))).toEqual({ kind: 'none' });
    expect(decide(m, alerted, ev({ zones: ['yard', 'door'], occurred_at: at(4) }))).toEqual({
      kind: 'update',
    });
    expect(decide(m, alerted, ev({ occurred_at: at(5) }))).toEqual({ kind: 'seen' }); // newest moves on
    // The end is the end, whenever it is committed.
    expect(decide(m, alerted, ev({ phase: 'end', occurred_at: at(1) }))).toEqual({ kind: 'cancel' });
    // A row written before migration 0027 (no last_seen_at): first_seen_at stands in.
    expect(
      decide(m, { ...alerted, last_seen_at: null }, ev({ zones: ['door'], occurred_at: at(0) })),
    ).toEqual({ kind: 'update' });
  });
});

describe('CAP 1.2 producer', () => {
  const input = (o: Partial<CapMessageInput> = {}): CapMessageInput => ({
    identifier: capIdentifier('0193a0a0-0000-7000-8000-000000000001', 2),
    sender: 'acme@vigil.test',
    sent: new Date('2026-12-07T10:00:00.123Z'),
    msgType: 'Update',
    references: capReference('acme@vigil.test', 'vigil-x-1', new Date('2026-12-07T09:59:00Z')),
    info: {
      rule: { event: 'Intrusion', urgency: 'Immediate', severity: 'Severe', certainty: 'Observed' },
      rule_name: 'yard <night> & "more"',
      label: 'person\u0001',
      score: 0.91,
      zones: ['yard'],
      site_id: 'hq',
      camera_id: 'gate',
      device_id: 'gw',
      track_id: 't1',
      occurred_at: '2026-12-07T10:00:00.000Z',
      snapshot: null,
    },
    location: { circle: { lat: 48.8566, lon: 2.3522, radius_km: 0.2 } },
    resource: {
      uri: 'https://vigil.example/public/alerts/media/acme/m?exp=1&sig=a',
      mimeType: 'image/jpeg',
      size: 1234,
      digest: 'ab'.repeat(32),
    },
    ...o,
  });

  it('writes messages the XSD accepts, with sent in its format and escaped text', () => {
    expect(capTime(new Date('2026-12-07T10:00:00.999Z'))).toBe('2026-12-07T10:00:00+00:00');
    for (const o of [
      {},
      { msgType: 'Alert' as const, references: null },
      { msgType: 'Cancel' as const, resource: null, location: null },
      {
        location: {
          polygon: [
            [1, 2],
            [1, 3],
            [2, 3],
          ] as Array<[number, number]>,
        },
      },
    ]) {
      const xml = buildCap(input(o));
      expect(schema.check(xml), xml).toBeNull();
    }
    const xml = buildCap(input());
    expect(xml).toContain('<sent>2026-12-07T10:00:00+00:00</sent>');
    expect(xml).toContain('<circle>48.8566,2.3522 0.2</circle>');
    expect(xml).toContain('&#60;night&#62; &#38; &#34;more&#34;');
    expect(xml).toContain('<uri>https://vigil.example/public/alerts/media/acme/m?exp=1&#38;sig=a</uri>');
    // The digest is SHA-256 (not CAP's SHA-1), and the message says so.
    expect(xml).toContain(`<digest>${'ab'.repeat(32)}</digest>`);
    expect(xml).toContain(
      '<parameter><valueName>vigil:resourceDigestAlgorithm</valueName><value>SHA-256</value></parameter>',
    );
    expect(buildCap(input({ resource: null }))).not.toContain('vigil:resourceDigestAlgorithm');
    expect(xml).not.toContain('\u0001');
    expect(
      areaXml('hq', {
        polygon: [
          [1, 2],
          [1, 3],
          [2, 3],
          [1, 2],
        ],
      }),
    ).toContain('<polygon>1,2 1,3 2,3 1,2</polygon>');
  });

  it('the XSD check names what is wrong', () => {
    const bad = buildCap(input()).replace('<urgency>Immediate</urgency>', '<urgency>Soon</urgency>');
    expect(schema.check(bad)).toMatch(/urgency.*Soon/);
    expect(schema.check('<alert')).toMatch(/^not well-formed/);
  });
});

describe('agency answers and jobs', () => {
  const ack =
    '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>a</identifier><sender>b</sender><sent>2026-01-01T00:00:00+00:00</sent><status>Actual</status><msgType>Ack</msgType><scope>Public</scope><note>ok</note></alert>';
  it('reads Ack and Error, refuses DTDs, oversize, wrong namespace, non-XML and invalid CAP', () => {
    expect(parseAnswer(Buffer.from(''), false)).toEqual({ kind: 'none' });
    expect(parseAnswer(Buffer.from(ack), false, schema)).toEqual({
      kind: 'ack',
      note: 'ok',
      references: null,
    });
    expect(parseAnswer(Buffer.from(ack.replace('Ack', 'Error')), false, schema)).toMatchObject({
      kind: 'error',
    });
    const reason = (s: string, truncated = false) => {
      const a = parseAnswer(Buffer.from(s), truncated, schema);
      return a.kind === 'refused' ? a.reason : a.kind;
    };
    expect(reason('<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>')).toBe('doctype');
    expect(reason('<?xml version="1.0"?>\n<!doctype a SYSTEM "http://x/y.dtd"><a/>')).toBe('doctype');
    expect(reason('x'.repeat(MAX_ANSWER_BYTES + 1))).toBe('oversized');
    expect(reason('<a/>', true)).toBe('oversized');
    expect(reason('<alert xmlns="urn:other"/>')).toBe('wrong_namespace');
    expect(reason('{"ok":1}')).toBe('not_xml');
    expect(reason(ack.replace('<scope>Public</scope>', ''))).toBe('invalid');
    expect(reason(ack.replace('Ack', 'Alert'))).toBe('not_cap');
  });

  it('a PubAck or anything else on the alert subject is not a job', () => {
    const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    expect(parseAlertJob(enc({ stream: 'EVENTS', seq: 1 }))).toBeNull();
    expect(parseAlertJob(enc({ tenant_id: 't', message_id: '' }))).toBeNull();
    expect(parseAlertJob(new Uint8Array([0xff]))).toBeNull();
    expect(parseAlertJob(enc({ tenant_id: 't', message_id: 'm', x: 1 }))).toEqual({
      tenant_id: 't',
      message_id: 'm',
    });
  });

  it('snapshot URLs: signed, expiring, bound to tenant and media', () => {
    const urls = new SnapshotUrls(Buffer.alloc(32, 7), 'https://vigil.example/', 60);
    const now = new Date('2026-12-07T10:00:00Z');
    const { url, expires } = urls.issue('acme', 'm1', now);
    expect(expires.toISOString()).toBe('2026-12-07T10:01:00.000Z');
    const u = new URL(url);
    expect(u.pathname).toBe('/public/alerts/media/acme/m1');
    const exp = u.searchParams.get('exp');
    const sig = u.searchParams.get('sig');
    expect(urls.check('acme', 'm1', exp, sig, now)).toBe('ok');
    expect(urls.check('acme', 'm1', exp, sig, new Date('2026-12-07T10:01:01Z'))).toBe('expired');
    expect(urls.check('globex', 'm1', exp, sig, now)).toBe('bad');
    expect(urls.check('acme', 'm2', exp, sig, now)).toBe('bad');
    expect(urls.check('acme', 'm1', String(Number(exp) + 1000), sig, now)).toBe('bad');
    expect(urls.check('acme', 'm1', exp, undefined, now)).toBe('bad');
  });
});
