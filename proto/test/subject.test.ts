import { describe, expect, it } from 'vitest';
import {
  deviceInboxPrefix,
  isDeviceInboxReply,
  SUBJECT_KINDS,
  parseSubject,
  subjectFor,
  type SubjectKind,
} from '../src/index.js';

describe('subjectFor', () => {
  it('builds device and camera subjects', () => {
    expect(subjectFor('acme', 'gw-001', 'hb')).toBe('vigil.v1.acme.gw-001.hb');
    expect(subjectFor('acme', 'gw-001', 'evt', 'cam_gate')).toBe('vigil.v1.acme.gw-001.evt.cam_gate');
    for (const kind of SUBJECT_KINDS) expect(subjectFor('t', 'd', kind)).toBe(`vigil.v1.t.d.${kind}`);
  });

  it.each([
    ['tenant', ['', 'gw', 'evt']],
    ['tenant', ['ac.me', 'gw', 'evt']],
    ['device', ['acme', '*', 'evt']],
    ['device', ['acme', 'gw>', 'evt']],
    ['device', ['acme', 'gw 1', 'evt']],
    ['device', ['acme', 'gw\t1', 'evt']],
    ['camera', ['acme', 'gw', 'evt', '']],
    ['camera', ['acme', 'gw', 'evt', 'cam.1']],
    ['camera', ['acme', 'gw', 'evt', 'cam\n']],
  ] as const)('rejects a bad %s token %j', (role, args) => {
    const [tenant, device, kind, camera] = args as readonly [string, string, SubjectKind, string?];
    expect(() => subjectFor(tenant, device, kind, camera)).toThrow(
      new RegExp(`^invalid ${role} subject token`),
    );
  });

  it('names the offending value in the error', () => {
    expect(() => subjectFor('acme', 'gw.1', 'evt')).toThrow('invalid device subject token "gw.1"');
  });

  it('rejects an unknown kind passed from untyped code', () => {
    expect(() => subjectFor('acme', 'gw', 'nope' as SubjectKind)).toThrow(/invalid subject kind "nope"/);
  });
});

describe('parseSubject', () => {
  it('parses what subjectFor builds', () => {
    expect(parseSubject('vigil.v1.acme.gw-001.hb')).toStrictEqual({
      tenant: 'acme',
      device: 'gw-001',
      kind: 'hb',
    });
    expect(parseSubject(subjectFor('acme', 'gw-001', 'evt', 'cam-1'))).toStrictEqual({
      tenant: 'acme',
      device: 'gw-001',
      kind: 'evt',
      camera: 'cam-1',
    });
  });

  it.each([
    '',
    'vigil.v1.acme.gw',
    'vigil.v1.acme.gw.evt.cam.extra',
    'vigil.v2.acme.gw.evt',
    'other.v1.acme.gw.evt',
    'vigil.v1.acme.gw.bogus',
    'vigil.v1.*.gw.evt',
    'vigil.v1.acme.gw.evt.>',
    'vigil.v1..gw.evt',
    'vigil.v1.acme.gw.evt.',
    'vigil.v1.acme.g w.evt',
  ])('returns null for %j', (subject) => {
    expect(parseSubject(subject)).toBeNull();
  });
});

describe('device inboxes', () => {
  it('puts every device inbox under one root token', () => {
    expect(deviceInboxPrefix('acme', 'gw-1')).toBe('_DEVINBOX.acme.gw-1');
    expect(() => deviceInboxPrefix('acme', 'gw.1')).toThrow(/device/);
    expect(() => deviceInboxPrefix('*', 'gw-1')).toThrow(/tenant/);
  });

  it.each(['_DEVINBOX.acme.gw-1.abc', '_DEVINBOX.acme.gw-1.NUID123.7'])('accepts %j for acme/gw-1', (r) => {
    expect(isDeviceInboxReply(r, 'acme', 'gw-1')).toBe(true);
  });

  it.each([
    '_DEVINBOX.acme.gw-1',
    '_DEVINBOX.acme.gw-1.',
    '_DEVINBOX.acme.gw-1.*',
    '_DEVINBOX.acme.gw-1.>',
    '_DEVINBOX.acme.gw-1.a..b',
    '_DEVINBOX.acme.gw-2.abc',
    '_DEVINBOX.globex.gw-1.abc',
    '_DEVINBOX.acme.gw-10.abc',
    '_INBOX.abc',
    '_INBOX_acme.gw-1.abc',
    '$JS.API.STREAM.DELETE.EVENTS',
    'vigil.v1.acme.gw-1.cfg',
    `_DEVINBOX.acme.gw-1.${'x'.repeat(300)}`,
  ])('refuses %j for acme/gw-1', (r) => {
    expect(isDeviceInboxReply(r, 'acme', 'gw-1')).toBe(false);
  });
});
