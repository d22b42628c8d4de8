import { describe, expect, it } from 'vitest';
import { useCliCloud, uuidV7 } from './support/cloud.js';

// `vigil retention` and `vigil holds` against the real cloud: a policy set with the CLI makes `retention check`
// report an old event as kept past its policy (exit 1), a hold lists it as held, and the two-admin rule runs
// with two admins (two token subjects).
describe('vigil retention / vigil holds (against the cloud)', () => {
  const { cli, cloud, publish } = useCliCloud();

  it('sets, lists and deletes policies; check reports kept past policy, held, and next deletions', async () => {
    const fresh = await publish('door', 'person');
    const old = uuidV7(Date.now() - 3 * 3_600_000);
    await cloud()
      .db.insertInto('events')
      .values({
        event_id: old,
        occurred_at: new Date(Date.now() - 3 * 3_600_000),
        tenant_id: 'acme',
        site_id: 'hq',
        device_id: 'gw-1',
        camera_id: 'door',
        track_id: 't-old',
        phase: 'end',
        label: 'person',
        score: 0.8,
        box_x: 0,
        box_y: 0,
        box_w: 0.1,
        box_h: 0.1,
        payload: Buffer.from([1, 2, 3]),
      } as never)
      .execute();
    await expect
      .poll(async () => (await cli('events', 'get', fresh, '--tenant', 'acme')).code, { timeout: 20_000 })
      .toBe(0);

    const set = await cli(
      'retention',
      'policies',
      'set',
      '--tenant',
      'acme',
      '--device',
      'gw-1',
      '--camera',
      'door',
      '--class',
      'event_metadata',
      '--max-age',
      '2h',
    );
    expect(set.code, set.err).toBe(0);
    expect(set.out).toBe('camera gw-1/door event_metadata: max age 2h, max bytes none');
    const site = await cli(
      'retention',
      'policies',
      'set',
      '--tenant',
      'acme',
      '--site',
      'hq',
      '--class',
      'redacted_media',
      '--max-age',
      '30d',
      '--max-bytes',
      '2GiB',
    );
    expect(site.out).toBe(`site hq redacted_media: max age 30d, max bytes ${2 * 2 ** 30}`);
    // Refused before any request: audit has a fixed retention; nothing to set.
    const audit = await cli(
      'retention',
      'policies',
      'set',
      '--tenant',
      'acme',
      '--class',
      'audit',
      '--max-age',
      '1d',
    );
    expect(audit.code).toBe(2);
    expect(audit.err).toContain('audit has a fixed retention');
    expect(
      (await cli('retention', 'policies', 'set', '--tenant', 'acme', '--class', 'event_metadata')).code,
    ).toBe(2);

    const list = await cli('retention', 'policies', 'list', '--tenant', 'acme');
    expect(list.out).toMatch(/^camera\s+gw-1\/door\s+event_metadata\s+2h\s+none/m);
    expect(list.out).toMatch(/^site\s+hq\s+redacted_media\s+30d\s+2147483648/m);
    expect(list.out).toMatch(/^default\s+-\s+event_metadata\s+365d/m);

    const check = await cli('retention', 'check', '--tenant', 'acme');
    expect(check.code).toBe(1); // the old event is kept past its 2 h
    expect(check.out).toMatch(/^camera\s+gw-1\/door\s+2h\s+2\s+1\s+0\s+1\s/m);
    expect(check.out).toContain(`KEPT PAST POLICY:\n  ${old}`);
    expect(check.out).toMatch(
      new RegExp(`next deletions:\\n  ${old}.*\\n  ${fresh}  at \\S+  age \\(camera\\)  due `),
    );
    expect(check.out).toContain('kept past policy: 1, held past policy: 0');

    const placed = await cli(
      'holds',
      'place',
      '--tenant',
      'acme',
      '--event',
      old,
      '--reason',
      'court order 9',
    );
    expect(placed.code, placed.err).toBe(0);
    const id = /^hold (\S+) active \(holding\): event /.exec(placed.out)?.[1];
    expect(id).toBeDefined();
    const held = await cli('retention', 'check', '--tenant', 'acme');
    expect(held.code).toBe(0);
    expect(held.out).toContain(`held past policy:\n  ${old}`);
    expect(held.out).toContain('kept past policy: 0, held past policy: 1');
    expect((await cli('holds', 'list', '--tenant', 'acme')).out).toMatch(
      new RegExp(`^${id}\\s+active\\s+event ${old}\\s+dev-admin@acme\\s+-\\s+court order 9$`, 'm'),
    );
    // An auditor reads the holds, may not release them.
    expect((await cli('holds', 'list', '--tenant', 'acme', '--role', 'auditor')).code).toBe(0);
    const denied = await cli(
      'holds',
      'release',
      id!,
      '--tenant',
      'acme',
      '--role',
      'auditor',
      '--reason',
      'x',
    );
    expect(denied.code).toBe(1);
    expect(denied.err).toContain('403');
    expect((await cli('holds', 'release', id!, '--tenant', 'acme', '--reason', 'order lifted')).out).toBe(
      `hold ${id} released (not holding): event ${old}`,
    );

    const del = await cli(
      'retention',
      'policies',
      'delete',
      '--tenant',
      'acme',
      '--device',
      'gw-1',
      '--camera',
      'door',
      '--class',
      'event_metadata',
    );
    expect(del.out).toBe('deleted camera gw-1/door event_metadata');
    expect((await cli('retention', 'check', '--tenant', 'acme')).code).toBe(0);
  });

  it('two-admin rule: a placement waits for another admin', async () => {
    expect((await cli('holds', 'settings', '--tenant', 'acme', '--two-admin', 'on')).out).toBe(
      'two-admin rule: on',
    );
    const placed = await cli(
      'holds',
      'place',
      '--tenant',
      'acme',
      '--device',
      'gw-1',
      '--camera',
      'lobby',
      '--from',
      '2026-12-01T10:00:00Z',
      '--to',
      '2026-12-01T11:00:00Z',
      '--reason',
      'claim 4',
      '--sub',
      'alice@acme',
    );
    expect(placed.err).toContain('another admin must approve it');
    const id = /^hold (\S+) place_pending \(not holding\): camera gw-1\/lobby/.exec(placed.out)?.[1];
    expect(id).toBeDefined();
    const self = await cli('holds', 'approve', id!, '--tenant', 'acme', '--sub', 'alice@acme');
    expect(self.code).toBe(1);
    expect(self.err).toContain('409');
    const ok = await cli('holds', 'approve', id!, '--tenant', 'acme', '--sub', 'bob@acme', '--note', 'seen');
    expect(ok.out).toMatch(
      / active \(holding\): camera gw-1\/lobby \[2026-12-01T10:00:00.000Z, 2026-12-01T11:00:00.000Z\)$/,
    );
    const off = await cli(
      'holds',
      'settings',
      '--tenant',
      'acme',
      '--two-admin',
      'off',
      '--sub',
      'alice@acme',
    );
    expect(off.out).toBe('two-admin rule: on');
    expect(off.err).toContain('asked by alice@acme');
    expect(
      (await cli('holds', 'settings', '--tenant', 'acme', '--two-admin', 'off', '--sub', 'bob@acme')).out,
    ).toBe('two-admin rule: off');
  });
});
