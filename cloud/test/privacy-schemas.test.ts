// The privacy API's shared field shapes (privacy/schemas.ts): a hold and an erasure scope accept the same ids, the
// same track ids and the same [from, to) ranges, and policy keys name exactly the ids their scope needs.
import { describe, expect, it } from 'vitest';
import { placeHoldBody, policyKeyBody, setPolicyBody } from '../src/privacy/api.js';
import { scopeSchema } from '../src/privacy/scope.js';

describe('privacy API shapes', () => {
  it('a track id an erasure accepts, a hold accepts too (tracker ids carry "." and ":")', () => {
    const track = { device_id: 'gw-1', camera_id: 'lobby', track_id: 'lobby:42.7' };
    expect(scopeSchema.safeParse({ kind: 'track', device_id: 'gw-1', track_id: 'lobby:42.7' }).success).toBe(
      true,
    );
    expect(placeHoldBody.safeParse({ kind: 'track', ...track, reason: 'case 1' }).success).toBe(true);
    for (const bad of ['', 'a b', 'x'.repeat(129), 'a/b'])
      expect(placeHoldBody.safeParse({ kind: 'track', ...track, track_id: bad, reason: 'r' }).success).toBe(
        false,
      );
  });

  it('camera ranges: the same shape and the same from < to check for holds and scopes', () => {
    const range = {
      device_id: 'gw-1',
      camera_id: 'lobby',
      from: '2026-12-01T10:00:00Z',
      to: '2026-12-01T11:00:00Z',
    };
    const back = { ...range, from: range.to, to: range.from };
    expect(placeHoldBody.safeParse({ kind: 'camera_range', ...range, reason: 'r' }).success).toBe(true);
    expect(scopeSchema.safeParse({ kind: 'camera', ...range }).success).toBe(true);
    const hold = placeHoldBody.safeParse({ kind: 'camera_range', ...back, reason: 'r' });
    const scope = scopeSchema.safeParse({ kind: 'camera', ...back });
    expect(hold.error?.issues.map((i) => [i.path, i.message])).toEqual([[['to'], 'must be later than from']]);
    expect(scope.error?.issues.map((i) => [i.path, i.message])).toEqual([
      [['to'], 'must be later than from'],
    ]);
    // Reasons: required (blank refused) and bounded, the same everywhere.
    expect(placeHoldBody.safeParse({ kind: 'device', device_id: 'gw-1', reason: '   ' }).success).toBe(false);
    expect(
      placeHoldBody.safeParse({ kind: 'device', device_id: 'gw-1', reason: 'x'.repeat(501) }).success,
    ).toBe(false);
  });

  it('policy keys name exactly the ids of their scope; audit is refused', () => {
    expect(
      policyKeyBody.safeParse({ scope: 'site', site_id: 'hq', data_class: 'redacted_media' }).success,
    ).toBe(true);
    const r = policyKeyBody.safeParse({ scope: 'site', device_id: 'gw-1', data_class: 'redacted_media' });
    expect(r.error?.issues.map((i) => i.path[0]).sort()).toEqual(['device_id', 'site_id']);
    expect(setPolicyBody.safeParse({ scope: 'tenant', data_class: 'audit', max_age_hours: 1 }).success).toBe(
      false,
    );
    expect(setPolicyBody.safeParse({ scope: 'tenant', data_class: 'personal_media' }).success).toBe(false);
  });
});
