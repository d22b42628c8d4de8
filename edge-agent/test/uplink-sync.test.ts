import { describe, expect, it } from 'vitest';
import {
  classifyPublishError,
  dueForQuery,
  inboxPrefixFor,
  nextUplinkState,
  queryBatches,
  receiptDeadline,
  UPLINK_STATES,
  type FlightView,
  type UplinkEvent,
  type UplinkState,
} from '../src/uplink/index.js';

// Pure parts of the uplink: state machine, receipt deadlines, query batching, error classification.
describe('uplink state machine', () => {
  const table: Array<[UplinkState, UplinkEvent, UplinkState]> = [
    ['offline', 'connected', 'syncing'],
    ['offline', 'synced', 'offline'],
    ['offline', 'publish_failed', 'offline'],
    ['offline', 'backoff_elapsed', 'offline'],
    ['syncing', 'synced', 'online'],
    ['syncing', 'disconnected', 'offline'],
    ['syncing', 'publish_failed', 'syncing'],
    ['syncing', 'connected', 'syncing'],
    ['online', 'publish_failed', 'backing_off'],
    ['online', 'disconnected', 'offline'],
    ['online', 'synced', 'online'],
    ['online', 'backoff_elapsed', 'online'],
    ['online', 'connected', 'syncing'],
    ['backing_off', 'backoff_elapsed', 'online'],
    ['backing_off', 'publish_failed', 'backing_off'],
    ['backing_off', 'disconnected', 'offline'],
    ['backing_off', 'connected', 'syncing'],
    ['backing_off', 'synced', 'backing_off'],
  ];
  it.each(table)('%s + %s -> %s', (state, event, next) => {
    expect(nextUplinkState(state, event)).toBe(next);
  });

  it('goes offline on a disconnect from every state and syncs on every (re)connect', () => {
    for (const s of UPLINK_STATES) {
      expect(nextUplinkState(s, 'disconnected')).toBe('offline');
      expect(nextUplinkState(s, 'connected')).toBe('syncing');
    }
  });
});

describe('receipt deadlines and query batching', () => {
  const flight = (id: string, phase: FlightView['phase'], sentAt: number, attempts = 1): FlightView => ({
    id,
    phase,
    sentAt,
    attempts,
  });

  it('asks after receiptTimeoutMs, doubling per resend up to 8x', () => {
    expect(receiptDeadline({ sentAt: 1000, attempts: 1 }, 100)).toBe(1100);
    expect(receiptDeadline({ sentAt: 1000, attempts: 2 }, 100)).toBe(1200);
    expect(receiptDeadline({ sentAt: 1000, attempts: 3 }, 100)).toBe(1400);
    expect(receiptDeadline({ sentAt: 1000, attempts: 4 }, 100)).toBe(1800);
    expect(receiptDeadline({ sentAt: 1000, attempts: 50 }, 100)).toBe(1800);
  });

  it('selects only PubAcked entries past their deadline, up to the limit', () => {
    const flights = [
      flight('a', 'awaiting', 0),
      flight('b', 'publishing', 0),
      flight('c', 'querying', 0),
      flight('d', 'awaiting', 950),
      flight('e', 'awaiting', 0, 2),
      flight('f', 'awaiting', 100),
      flight('g', 'awaiting', 0),
    ];
    expect(dueForQuery(flights, 1000, 100, 10)).toEqual(['a', 'e', 'f', 'g']);
    expect(dueForQuery(flights, 1000, 100, 2)).toEqual(['a', 'e']);
    expect(dueForQuery(flights, 1000, 100, 0)).toEqual([]);
    expect(dueForQuery(flights, 150, 100, 10)).toEqual(['a', 'g']);
  });

  it('splits ids into batches of at most the query size, at most maxBatches', () => {
    const ids = Array.from({ length: 1234 }, (_, i) => `id${i}`);
    const batches = queryBatches(ids, 500);
    expect(batches.map((b) => b.length)).toEqual([500, 500, 234]);
    expect(batches.flat()).toEqual(ids);
    expect(queryBatches(ids, 500, 2).map((b) => b.length)).toEqual([500, 500]);
    expect(queryBatches([], 500)).toEqual([]);
  });
});

describe('publish error classification', () => {
  const named = (name: string, message: string, extra: Record<string, unknown> = {}): Error =>
    Object.assign(new Error(message), { name }, extra);

  it.each([
    [named('TimeoutError', 'timeout'), 'timeout'],
    [named('JetStreamNotEnabled', 'jetstream is not enabled'), 'no_stream'],
    [
      named('RequestError', "no responders: 'x'", { cause: named('NoResponders', 'no responders') }),
      'no_stream',
    ],
    [named('StreamNotFoundError', 'stream not found', { code: 10059 }), 'no_stream'],
    [named('JetStreamApiError', 'maximum bytes exceeded', { code: 10077 }), 'stream_full'],
    [named('JetStreamApiError', 'maximum messages exceeded', { code: 10077 }), 'stream_full'],
    [named('JetStreamApiError', 'insufficient resources', { code: 10023 }), 'stream_full'],
    [named('JetStreamApiError', 'message size exceeds maximum allowed', { code: 10054 }), 'too_large'],
    [named('InvalidArgumentError', "'payload' max_payload size exceeded"), 'too_large'],
    [named('ClosedConnectionError', 'closed connection'), 'disconnected'],
    [named('RequestError', 'connection closed'), 'disconnected'],
    [named('DrainingConnectionError', 'connection draining'), 'disconnected'],
    [named('PermissionViolationError', "Permissions Violation for Publish to 'x'"), 'permission'],
    [named('JetStreamApiError', 'expected stream does not match', { code: 10060 }), 'api_error'],
    [new Error('boom'), 'other'],
    ['not an error', 'other'],
  ])('%s -> %s', (err, reason) => {
    expect(classifyPublishError(err)).toBe(reason);
  });
});

describe('device inbox prefix', () => {
  it('is the device own namespace, disjoint from the default _INBOX.<nuid> inboxes', () => {
    expect(inboxPrefixFor({ tenantId: 'acme', deviceId: 'gw-1' })).toBe('_DEVINBOX.acme.gw-1');
  });
});
