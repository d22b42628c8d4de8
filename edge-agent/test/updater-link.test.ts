// The agent's end of the updater contract on a real filesystem: requests written atomically and only when they
// change, withdrawn when the config asks for the running version, not repeated for a version the updater gave
// up on; status.json read as hostile input (size, links, JSON, schema), each refusal counted; heartbeats carry it.
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry, type Counter } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Heartbeat, UpdateState } from '@vigil/proto';
import { updateRequestSchema, type UpdateStatus } from '../src/updater/contract.js';
import { UpdateLink } from '../src/updater/link.js';
import { buildHeartbeat } from '../src/uplink/heartbeat.js';

const root = mkdtempSync(join(tmpdir(), 'vigil-updater-link-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

function link(version = '1.0.0') {
  const dir = join(root, `d${++n}`, 'update');
  mkdirSync(dir, { recursive: true });
  const registry = new Registry();
  let clock = Date.parse('2026-12-07T12:00:00Z');
  const l = new UpdateLink({
    dir,
    agentVersion: version,
    registry,
    log: pino({ level: 'silent' }),
    now: () => new Date((clock += 1000)),
  });
  const refused = async (file: string, reason: string): Promise<number> => {
    const c = registry.getSingleMetric('vigil_agent_update_file_refused_total') as Counter;
    return (
      (await c.get()).values.find((v) => v.labels.file === file && v.labels.reason === reason)?.value ?? 0
    );
  };
  const status = (s: Partial<UpdateStatus> & Pick<UpdateStatus, 'state'>): void =>
    writeFileSync(
      join(dir, 'status.json'),
      JSON.stringify({
        current: version,
        previous: null,
        target: null,
        reason: null,
        updatedAt: '2026-12-07T12:00:30Z',
        ...s,
      }),
    );
  const request = () =>
    updateRequestSchema.parse(JSON.parse(readFileSync(join(dir, 'request.json'), 'utf8')));
  return { l, dir, refused, status, request };
}

describe('UpdateLink: requests to the updater', () => {
  it('writes the request whole, once per (version, channel, rollout), and leaves no temporary file', () => {
    const { l, dir, request } = link();
    expect(l.sync(undefined)).toBe('none');
    expect(l.sync({ version: '', channel: '', rolloutId: '' })).toBe('none');
    expect(l.sync({ version: '1.1.0', channel: 'stable', rolloutId: 'r1' })).toBe('requested');
    const first = request();
    expect(first).toMatchObject({ version: '1.1.0', channel: 'stable', rolloutId: 'r1' });
    expect(l.sync({ version: '1.1.0', channel: 'stable', rolloutId: 'r1' })).toBe('unchanged');
    expect(request().requestedAt).toBe(first.requestedAt);
    // A new rollout of the same version is a new request; no rollout id is null.
    expect(l.sync({ version: '1.1.0', channel: 'stable', rolloutId: 'r2' })).toBe('requested');
    expect(l.sync({ version: '1.1.0', channel: 'stable', rolloutId: '' })).toBe('requested');
    expect(request().rolloutId).toBeNull();
    expect(readdirSync(dir)).toEqual(['request.json']);
  });

  it('withdraws a request for another version when the config asks for the running one (a rollback)', () => {
    const { l, dir } = link('1.1.0');
    expect(l.sync({ version: '1.2.0', channel: 'stable', rolloutId: 'bad' })).toBe('requested');
    expect(l.sync({ version: '1.1.0', channel: 'stable', rolloutId: 'bad' })).toBe('withdrawn');
    expect(readdirSync(dir)).toEqual([]);
    expect(l.sync({ version: '1.1.0', channel: 'stable', rolloutId: 'bad' })).toBe('none');
  });

  it('does not ask again for a version the updater rolled back or failed for this request', () => {
    const { l, status, request } = link();
    expect(l.sync({ version: '1.2.0', channel: 'stable', rolloutId: 'r' })).toBe('requested');
    status({ state: 'rolled_back', target: '1.2.0', reason: 'health gate' });
    // The restarted old agent applies the same config again: no loop.
    expect(l.sync({ version: '1.2.0', channel: 'stable', rolloutId: 'r' })).toBe('given_up');
    // Another rollout of that version (after a fix) is asked for.
    expect(l.sync({ version: '1.2.0', channel: 'stable', rolloutId: 'r-again' })).toBe('requested');
    expect(request().rolloutId).toBe('r-again');
  });
});

describe('UpdateLink: status.json is hostile input', () => {
  it('reads a valid status, and heartbeats carry it', () => {
    const { l, status } = link();
    expect(l.status()).toBeUndefined(); // no updater yet: nothing, not a refusal
    status({ state: 'committed', current: '1.1.0', previous: '1.0.0', target: '1.1.0' });
    const s = l.status()!;
    expect(s).toMatchObject({ state: 'committed', current: '1.1.0' });
    const hb = Heartbeat.decode(
      Heartbeat.encode(
        buildHeartbeat(
          {
            tenantId: 't',
            siteId: 's',
            deviceId: 'd',
            agentVersion: '1.1.0',
            startedAt: new Date(0),
            cameras: () => [],
            update: () => s,
          },
          new Date(),
        ),
      ).finish(),
    );
    expect(hb.update).toMatchObject({
      state: UpdateState.UPDATE_STATE_COMMITTED,
      current: '1.1.0',
      previous: '1.0.0',
      target: '1.1.0',
      reason: '',
    });
    expect(hb.update?.updatedAt?.toISOString()).toBe('2026-12-07T12:00:30.000Z');
  });

  it('refuses oversized, linked, non-JSON and off-schema files, each counted by reason', async () => {
    const { l, dir, refused, status } = link();
    status({ state: 'idle' });
    const file = join(dir, 'status.json');
    writeFileSync(file, `{"state":"idle","pad":"${'x'.repeat(20_000)}"}`);
    expect(l.status()).toBeUndefined();
    expect(await refused('status.json', 'too_large')).toBe(1);
    writeFileSync(file, '{"state": idle');
    expect(l.status()).toBeUndefined();
    expect(await refused('status.json', 'not_json')).toBe(1);
    for (const bad of [
      {
        state: 'exploded',
        current: '1.0.0',
        previous: null,
        target: null,
        reason: null,
        updatedAt: '2026-12-07T12:00:00Z',
      },
      {
        state: 'idle',
        current: '../../etc',
        previous: null,
        target: null,
        reason: null,
        updatedAt: '2026-12-07T12:00:00Z',
      },
      { state: 'idle', current: '1.0.0', previous: null, target: null, reason: null, updatedAt: 'yesterday' },
      {
        state: 'idle',
        current: '1.0.0',
        previous: null,
        target: null,
        reason: null,
        updatedAt: '2026-12-07T12:00:00Z',
        extra: 1,
      },
      {
        state: 'failed',
        current: '1.0.0',
        previous: null,
        target: null,
        reason: 'r'.repeat(2001),
        updatedAt: '2026-12-07T12:00:00Z',
      },
    ]) {
      writeFileSync(file, JSON.stringify(bad));
      expect(l.status(), JSON.stringify(bad).slice(0, 80)).toBeUndefined();
    }
    expect(await refused('status.json', 'schema')).toBe(5);
    rmSync(file);
    const elsewhere = join(root, `secret-${n}.json`);
    writeFileSync(
      elsewhere,
      JSON.stringify({
        state: 'idle',
        current: '1.0.0',
        previous: null,
        target: null,
        reason: null,
        updatedAt: '2026-12-07T12:00:00Z',
      }),
    );
    symlinkSync(elsewhere, file);
    expect(l.status()).toBeUndefined();
    expect(await refused('status.json', 'not_a_file')).toBe(1);
  });

  it('a refused request.json is replaced by a good one', async () => {
    const { l, dir, refused, request } = link();
    expect(l.sync({ version: '1.1.0', channel: 'stable', rolloutId: 'r' })).toBe('requested');
    writeFileSync(join(dir, 'request.json'), '{"version":"1.1.0"}');
    expect(l.sync({ version: '1.1.0', channel: 'stable', rolloutId: 'r' })).toBe('requested');
    expect(await refused('request.json', 'schema')).toBe(1);
    expect(request().version).toBe('1.1.0');
  });
});
