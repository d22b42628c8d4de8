import { describe, expect, it } from 'vitest';
import { committedJson, committedView } from '../src/realtime/feed.js';
import type { NewEvent } from '../src/events/store.js';

// The feed spells each event's JSON itself (the attributes text goes in as stored): it must parse to exactly
// what the API view is.
describe('realtime feed JSON', () => {
  const at = new Date('2026-05-01T10:00:01.000Z');
  const row: NewEvent = {
    event_id: '0196891e-6a18-7000-8000-000000000001',
    occurred_at: new Date('2026-05-01T10:00:00.123Z'),
    tenant_id: 'acme',
    site_id: 'hq',
    device_id: 'gw-1',
    camera_id: 'cam1',
    track_id: 't-"1"',
    phase: 'start',
    label: 'per\\son',
    score: 0.75,
    box_x: 0.1,
    box_y: 0.2,
    box_w: 0.3,
    box_h: 0.4,
    zones: ['door', 'a"b'],
    trigger_zone: 'door',
    model_name: 'yolox',
    model_sha256: 'ab'.repeat(32),
    snapshot_media_id: 'm-1',
    snapshot_sha256: 'cd'.repeat(32),
    snapshot_bytes: 1234,
    priority: 2,
    attributes: JSON.stringify({ 'k"': 'v\\', empty: '', ü: '✓' }),
    payload: Buffer.from([1, 2]),
    stream_seq: 7,
  };

  it('parses to committedView, with string and object attributes', () => {
    const iso = at.toISOString();
    expect(JSON.parse(committedJson(row, iso))).toEqual(committedView(row, at));
    const plain = { ...row, attributes: { a: 'b' } as unknown as string, snapshot_media_id: null };
    expect(JSON.parse(committedJson(plain, iso))).toEqual(committedView(plain, at));
  });

  it('spells absent model, snapshot, trigger zone and zones as the view does', () => {
    const bare: NewEvent = {
      ...row,
      zones: [],
      trigger_zone: null,
      model_name: null,
      model_sha256: null,
      snapshot_media_id: null,
      snapshot_sha256: null,
      snapshot_bytes: null,
      attributes: '{}',
    };
    const json = committedJson(bare, at.toISOString());
    expect(JSON.parse(json)).toEqual(committedView(bare, at));
    expect(json).toContain('"model":null,"snapshot":null');
    const sizeless = { ...row, snapshot_sha256: null, snapshot_bytes: null, model_sha256: null };
    expect(JSON.parse(committedJson(sizeless, at.toISOString()))).toEqual(committedView(sizeless, at));
  });
});
