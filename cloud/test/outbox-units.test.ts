// Pure parts of issue 13 findings 4 and 5: which webhook jobs a commit writes into the outbox (planJobs), and
// where stranded messages are in EVENTS (strandedRange).
import { describe, expect, it } from 'vitest';
import type { NewEvent } from '../src/events/store.js';
import { strandedRange } from '../src/ingest/stranded.js';
import { JOBS_MAX_MSG_SIZE, type WebhookJob } from '../src/integrations/jobs.js';
import { planJobs } from '../src/integrations/outbox.js';
import type { Webhook } from '../src/integrations/store.js';

const at = new Date('2026-12-07T10:00:00Z');

function row(id: string, over: Partial<NewEvent> = {}): NewEvent {
  return {
    event_id: id,
    tenant_id: 'acme',
    site_id: 'hq',
    device_id: 'gw-1',
    camera_id: 'door',
    occurred_at: new Date('2026-12-07T09:59:59Z'),
    track_id: 't',
    phase: 'start',
    label: 'person',
    score: 0.9,
    box_x: 0,
    box_y: 0,
    box_w: 1,
    box_h: 1,
    zones: [],
    priority: 1,
    payload: Buffer.alloc(0),
    stream_seq: 1,
    ...over,
  } as NewEvent;
}

function hook(id: string, filter: Webhook['filter'], tenant = 'acme'): Webhook {
  return { id, tenant_id: tenant, filter, enabled: true } as Webhook;
}

describe('planJobs (outbox rows of one commit)', () => {
  it('one job per (matching webhook, fresh event), msg id <webhook>:<event>', () => {
    const hooks = new Map([
      ['acme', [hook('h-all', {}), hook('h-cars', { labels: ['car'] })]],
      ['globex', [hook('h-gx', {}, 'globex')]],
    ]);
    const { jobs, oversize } = planJobs(
      [row('e1'), row('e2', { label: 'car' }), row('e3', { tenant_id: 'initech' })],
      hooks,
      at,
    );
    expect(oversize).toBe(0);
    expect(jobs.map((j) => j.msgId)).toEqual(['h-all:e1', 'h-all:e2', 'h-cars:e2']);
    const job = JSON.parse(jobs[2]!.payload) as WebhookJob;
    expect(job).toMatchObject({ webhook_id: 'h-cars', tenant_id: 'acme' });
    expect(job.event).toMatchObject({ event_id: 'e2', label: 'car', received_at: at.toISOString() });
  });

  it('never crosses tenants, and writes nothing without webhooks', () => {
    const hooks = new Map([['globex', [hook('h-gx', {}, 'globex')]]]);
    expect(planJobs([row('e1')], hooks, at).jobs).toEqual([]);
    expect(planJobs([], hooks, at).jobs).toEqual([]);
  });

  it('leaves out (and counts) a job bigger than JOBS takes', () => {
    const big = row('big', { zones: ['z'.repeat(JOBS_MAX_MSG_SIZE)] });
    const { jobs, oversize } = planJobs([big, row('ok')], new Map([['acme', [hook('h', {})]]]), at);
    expect(oversize).toBe(1);
    expect(jobs.map((j) => j.msgId)).toEqual(['h:ok']);
  });
});

describe('strandedRange (messages below the ingest ack floor)', () => {
  it.each([
    // firstSeq, messages, ackFloor, range
    [1, 41, 41, { from: 1, to: 41 }],
    [5, 10, 7, { from: 5, to: 7 }],
    [8, 3, 7, undefined], // everything left is above the floor: the consumer's business
    [0, 0, 0, undefined], // empty stream
    [42, 0, 41, undefined],
    [3, 0, 10, undefined], // no messages, whatever first_seq says
  ])('first %i, %i messages, floor %i', (first, messages, floor, range) => {
    expect(strandedRange(first, messages, floor)).toEqual(range);
  });
});
