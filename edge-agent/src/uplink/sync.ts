/*
 * Pure parts of the uplink (no I/O): the connection state machine, which in-flight entries are due for a
 * ReceiptQuery, query batching, and the classification of publish errors. Unit-tested without NATS.
 */
import { deviceInboxPrefix } from '@vigil/proto';

/**
 * - `offline`: no connection; nothing is published, in-flight entries wait (their receipts may still come).
 * - `syncing`: (re)connected; asking the cloud which in-flight (or, at start, oldest pending) ids it has
 *   committed before publishing anything new.
 * - `online`: draining the outbox into the in-flight window.
 * - `backing_off`: the last publish failed (timeout, no stream, stream full...); waiting before the next one.
 */
export type UplinkState = 'offline' | 'syncing' | 'online' | 'backing_off';
export const UPLINK_STATES: readonly UplinkState[] = ['offline', 'syncing', 'online', 'backing_off'];

export type UplinkEvent =
  /** Connected at start or reconnected after a disconnect. */
  | 'connected'
  | 'disconnected'
  /** The sync queries after a (re)connect are answered (or given up on). */
  | 'synced'
  | 'publish_failed'
  | 'backoff_elapsed';

/** The state machine: every state handles every event (unlisted pairs keep the state). */
export function nextUplinkState(state: UplinkState, event: UplinkEvent): UplinkState {
  switch (event) {
    case 'disconnected':
      return 'offline';
    case 'connected':
      return 'syncing';
    case 'synced':
      return state === 'syncing' ? 'online' : state;
    case 'publish_failed':
      return state === 'online' ? 'backing_off' : state;
    case 'backoff_elapsed':
      return state === 'backing_off' ? 'online' : state;
  }
}

/** The part of an in-flight entry that decides when to ask the cloud about it. */
export interface FlightView {
  id: string;
  phase: 'publishing' | 'awaiting' | 'querying';
  /** When the PubAck arrived (or the last query about it failed). */
  sentAt: number;
  /** Publish attempts so far, this one included (1 = first). */
  attempts: number;
}

/** Largest factor on `receiptTimeoutMs` for an entry that has been sent many times. */
export const MAX_RECEIPT_TIMEOUT_FACTOR = 8;

/**
 * When to ask about an entry that got a PubAck but no receipt: `receiptTimeoutMs` after the PubAck for the
 * first attempt, doubling for each resend up to 8x, so that a slow cloud (whose answer "not committed yet" makes
 * the agent resend) is not flooded with resends of the same window.
 */
export function receiptDeadline(
  f: Pick<FlightView, 'sentAt' | 'attempts'>,
  receiptTimeoutMs: number,
): number {
  const factor = Math.min(MAX_RECEIPT_TIMEOUT_FACTOR, 2 ** Math.max(0, Math.min(f.attempts - 1, 10)));
  return f.sentAt + receiptTimeoutMs * factor;
}

/** Ids (in iteration order) of entries awaiting a receipt past their deadline; at most `limit`. */
export function dueForQuery(
  flights: Iterable<FlightView>,
  now: number,
  receiptTimeoutMs: number,
  limit: number,
): string[] {
  const out: string[] = [];
  if (limit <= 0) return out;
  for (const f of flights) {
    if (f.phase === 'awaiting' && now >= receiptDeadline(f, receiptTimeoutMs)) {
      out.push(f.id);
      if (out.length >= limit) break;
    }
  }
  return out;
}

/** Splits `ids` into batches of at most `size` (a ReceiptQuery carries at most 500), at most `maxBatches`. */
export function queryBatches(ids: readonly string[], size: number, maxBatches = Infinity): string[][] {
  const n = Math.max(1, Math.floor(size));
  const out: string[][] = [];
  for (let i = 0; i < ids.length && out.length < maxBatches; i += n) out.push(ids.slice(i, i + n));
  return out;
}

/** Why a JetStream publish failed; the label of `vigil_agent_uplink_publish_errors_total`. */
export type PublishErrorReason =
  /** No PubAck in `publishTimeoutMs` (server slow, connection dead without a disconnect yet). */
  | 'timeout'
  /** 503 no responders: no stream listens on the subject (EVENTS missing), or JetStream is off. */
  | 'no_stream'
  /** The stream refused the message: max bytes/messages reached with discard new, or storage resources. */
  | 'stream_full'
  /**
   * The message is larger than the server's max_payload or the stream's max_msg_size: it will never be
   * accepted, so the entry is parked (kept in the outbox, not retried by this process) instead of blocking.
   */
  | 'too_large'
  /** The connection closed, drained or dropped while the request was outstanding. */
  | 'disconnected'
  | 'permission'
  /** Any other JetStream API error (e.g. wrong stream expectations). */
  | 'api_error'
  | 'other';

export const PUBLISH_ERROR_REASONS: readonly PublishErrorReason[] = [
  'timeout',
  'no_stream',
  'stream_full',
  'too_large',
  'disconnected',
  'permission',
  'api_error',
  'other',
];

const STREAM_NOT_FOUND = 10059;
const MESSAGE_TOO_LARGE = 10054;
const TOO_LARGE_TEXT = /max_payload|message size exceeds maximum|maximum payload/i;
const FULL_TEXT =
  /maximum (bytes|messages|messages per subject|payload)? ?exceeded|insufficient (storage )?resources|resource limits exceeded|storage (is )?full/i;

/**
 * Classifies by error name, code and text rather than by `instanceof`, so it does not depend on which copy of
 * the nats.js modules built the error.
 */
export function classifyPublishError(err: unknown): PublishErrorReason {
  if (!(err instanceof Error)) return 'other';
  const name = err.name;
  const message = err.message;
  const cause = (err as { cause?: unknown }).cause;
  const causeName = cause instanceof Error ? cause.name : '';
  if (name === 'TimeoutError' || causeName === 'TimeoutError') return 'timeout';
  if (
    name === 'JetStreamNotEnabled' ||
    name === 'NoResponders' ||
    causeName === 'NoResponders' ||
    /no responders/i.test(message)
  )
    return 'no_stream';
  if (name === 'PermissionViolationError' || /permissions? violation/i.test(message)) return 'permission';
  if (
    name === 'ClosedConnectionError' ||
    name === 'DrainingConnectionError' ||
    name === 'ConnectionError' ||
    /connection (closed|disconnected|draining)/i.test(message)
  )
    return 'disconnected';
  const code = (err as { code?: unknown }).code;
  if (code === MESSAGE_TOO_LARGE || TOO_LARGE_TEXT.test(message)) return 'too_large';
  if (name === 'StreamNotFoundError' || code === STREAM_NOT_FOUND) return 'no_stream';
  if (FULL_TEXT.test(message)) return 'stream_full';
  if (name === 'JetStreamApiError' || name === 'JetStreamError') return 'api_error';
  return 'other';
}

/**
 * The inbox prefix a device uses for replies (PubAcks, query answers): `_DEVINBOX.<tenant>.<device>`
 * (@vigil/proto deviceInboxPrefix), the only inbox the device's NATS permissions let it subscribe to, and the
 * only reply subject cloud responders answer a request of this device on.
 */
export function inboxPrefixFor(device: { tenantId: string; deviceId: string }): string {
  return deviceInboxPrefix(device.tenantId, device.deviceId);
}
