import {
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StoredMsg,
} from '@nats-io/jetstream';
import { headers as makeHeaders, type MsgHdrs } from '@nats-io/transport-node';
import { DEAD_LETTER_STREAM, DLQ_HEADERS, EVENTS_STREAM } from '@vigil/cloud';
import { DetectionEvent, parseSubject } from '@vigil/proto';
import { CliError } from './errors.js';

/*
 * The dead-letter queue as cloud ingest writes it (cloud/src/ingest/dead-letter.ts): stream DEAD_LETTER on
 * `vigil.dlq.>`, the original message's bytes as data, the why in headers. Replay publishes the original
 * bytes back to the original subject (so EVENTS and ingest see them again) and then deletes the dead letter.
 * Functions here take built JetStream clients; connecting is adapters/nats.ts.
 */

// One definition of the dead-letter format: the cloud's (importing it keeps the CLI and ingest in step).
export { DEAD_LETTER_STREAM, DLQ_HEADERS, EVENTS_STREAM };

/** Set on a replayed message: the DEAD_LETTER sequence it came from (recognises our own earlier replay). */
export const REPLAY_HEADER = 'Vigil-Replayed-From-Dlq-Seq';

export interface DeadLetter {
  seq: number;
  /** When DEAD_LETTER stored it. */
  storedAt: Date;
  subject: string;
  reason: string;
  detail: string;
  originalSubject: string;
  originalStreamSeq: string;
  failedAt: string;
  headers: Record<string, string[]>;
  data: Uint8Array;
}

function headerRecord(h: MsgHdrs | undefined): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const k of h?.keys() ?? []) out[k] = h!.values(k);
  return out;
}

export function toDeadLetter(
  m: Pick<StoredMsg, 'seq' | 'subject' | 'data' | 'time'> & { headers: MsgHdrs | undefined },
): DeadLetter {
  const h = (k: string): string => m.headers?.get(k) ?? '';
  return {
    seq: m.seq,
    storedAt: m.time,
    subject: m.subject,
    reason: h(DLQ_HEADERS.reason),
    detail: h(DLQ_HEADERS.detail),
    originalSubject: h(DLQ_HEADERS.originalSubject),
    originalStreamSeq: h(DLQ_HEADERS.originalStreamSeq),
    failedAt: h(DLQ_HEADERS.failedAt),
    headers: headerRecord(m.headers),
    data: m.data,
  };
}

/** The payload as a DetectionEvent, or null when it does not decode into one with a UUID event id. */
export function decodeEvent(data: Uint8Array): DetectionEvent | null {
  try {
    const ev = DetectionEvent.decode(data);
    return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(ev.eventId) ? ev : null;
  } catch {
    return null;
  }
}

/** One dead letter by sequence, or null. */
export async function getDeadLetter(jsm: JetStreamManager, seq: number): Promise<DeadLetter | null> {
  const m = await jsm.streams.getMessage(DEAD_LETTER_STREAM, { seq });
  return m === null
    ? null
    : toDeadLetter({ seq: m.seq, subject: m.subject, data: m.data, time: m.time, headers: m.header });
}

export interface IterateOptions {
  /** Stop after this many (default: all). */
  limit?: number;
  /** Batch size of each fetch (bounded memory). */
  batch?: number;
}

/**
 * Dead letters oldest first, read with an ordered consumer (ephemeral, no acks, nothing changes on the
 * server). Stops at the last sequence that existed when it started, so replaying while new dead letters
 * arrive terminates; memory is bounded by one batch.
 */
export async function* iterateDeadLetters(
  js: JetStreamClient,
  jsm: JetStreamManager,
  opts: IterateOptions = {},
): AsyncGenerator<DeadLetter> {
  const info = await streamInfo(jsm);
  if (info.state.messages === 0) return;
  const lastSeq = info.state.last_seq;
  const limit = opts.limit ?? Number.POSITIVE_INFINITY;
  const consumer = await js.consumers.get(DEAD_LETTER_STREAM, {
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: info.state.first_seq,
  });
  let yielded = 0;
  for (;;) {
    const batch = await consumer.fetch({
      max_messages: Math.min(opts.batch ?? 100, limit - yielded),
      expires: 2_000,
    });
    let got = 0;
    let done = false;
    for await (const m of batch) {
      got++;
      if (m.seq > lastSeq) {
        done = true;
        break;
      }
      yield toDeadLetter(jsMsgFields(m));
      yielded++;
      if (yielded >= limit || m.seq === lastSeq || m.info.pending === 0) {
        done = true;
        break;
      }
    }
    if (done || got === 0) return;
  }
}

function jsMsgFields(m: JsMsg): Parameters<typeof toDeadLetter>[0] {
  return { seq: m.seq, subject: m.subject, data: m.data, time: m.time, headers: m.headers };
}

async function streamInfo(jsm: JetStreamManager) {
  try {
    return await jsm.streams.info(DEAD_LETTER_STREAM);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)
      throw new CliError(
        `there is no ${DEAD_LETTER_STREAM} stream on this server (the cloud creates it at start)`,
      );
    throw err;
  }
}

export type ReplayStatus = 'replayed' | 'would-replay' | 'kept' | 'failed' | 'not-found';

export interface ReplayOutcome {
  seq: number;
  status: ReplayStatus;
  subject?: string;
  msgID?: string;
  /** Sequence in EVENTS of the republished message (or of the message that made it a duplicate). */
  streamSeq?: number;
  /** What happened, for humans. */
  note: string;
}

export interface ReplayOptions {
  dryRun?: boolean;
}

/**
 * Replays one dead letter: JetStream-publishes its original bytes to `Vigil-Original-Subject` (which must be
 * a device event subject that EVENTS captures) with msgID `replay-<seq>[-<event id>]`, then deletes it from
 * DEAD_LETTER. When EVENTS reports a duplicate, it is this dead letter's earlier replay (a crash between
 * publish and delete), which is finished by deleting it; any other duplicate keeps the dead letter.
 */
export async function replayDeadLetter(
  js: JetStreamClient,
  jsm: JetStreamManager,
  dl: DeadLetter,
  opts: ReplayOptions = {},
): Promise<ReplayOutcome> {
  const subject = dl.originalSubject;
  const parts = parseSubject(subject);
  if (!parts || parts.kind !== 'evt' || parts.camera === undefined)
    return {
      seq: dl.seq,
      status: 'failed',
      note: `${DLQ_HEADERS.originalSubject} ${JSON.stringify(subject)} is not a device event subject (vigil.v1.<tenant>.<device>.evt.<camera>); not replayed`,
    };
  const event = decodeEvent(dl.data);
  // A replay-specific msgID: the event's own id would be dropped by EVENTS while its duplicate window still
  // remembers the original publish (it does, right after a poison message). Exactly-once storage does not
  // depend on it (ingest is idempotent on the event id); it only makes a repeated replay of the same dead
  // letter a no-op inside the window.
  const msgID = `replay-${dl.seq}${event ? `-${event.eventId}` : ''}`;
  if (opts.dryRun)
    return { seq: dl.seq, status: 'would-replay', subject, msgID, note: 'dry run: nothing published' };

  const h = makeHeaders();
  h.set(REPLAY_HEADER, String(dl.seq));
  let ack: { seq: number; duplicate: boolean };
  try {
    ack = await js.publish(subject, dl.data, { msgID, headers: h, expect: { streamName: EVENTS_STREAM } });
  } catch (err) {
    return {
      seq: dl.seq,
      status: 'failed',
      subject,
      msgID,
      note: `publish failed: ${(err as Error).message}`,
    };
  }
  if (ack.duplicate) {
    const prior = await jsm.streams.getMessage(EVENTS_STREAM, { seq: ack.seq }).catch(() => null);
    if (prior?.header?.get(REPLAY_HEADER) !== String(dl.seq))
      return {
        seq: dl.seq,
        status: 'kept',
        subject,
        msgID,
        streamSeq: ack.seq,
        note:
          `${EVENTS_STREAM} already accepted msgID ${msgID} inside its duplicate window, so this copy was dropped; ` +
          'kept in DEAD_LETTER: replay again once the window has passed',
      };
  }
  try {
    await jsm.streams.deleteMessage(DEAD_LETTER_STREAM, dl.seq);
  } catch (err) {
    return {
      seq: dl.seq,
      status: 'failed',
      subject,
      msgID,
      streamSeq: ack.seq,
      note: `published, but deleting it from DEAD_LETTER failed (${(err as Error).message}); a second replay is harmless`,
    };
  }
  return {
    seq: dl.seq,
    status: 'replayed',
    subject,
    msgID,
    streamSeq: ack.seq,
    note: ack.duplicate
      ? 'finished an earlier replay; deleted from DEAD_LETTER'
      : 'published; deleted from DEAD_LETTER',
  };
}

/** Replays the given sequences, one at a time (a missing one is reported, not fatal). */
export async function replaySequences(
  js: JetStreamClient,
  jsm: JetStreamManager,
  seqs: readonly number[],
  opts: ReplayOptions = {},
  onOutcome: (o: ReplayOutcome) => void = () => {},
): Promise<ReplayOutcome[]> {
  const outcomes: ReplayOutcome[] = [];
  for (const seq of seqs) {
    const dl = await getDeadLetter(jsm, seq);
    const o: ReplayOutcome =
      dl === null
        ? { seq, status: 'not-found', note: `no message ${seq} in ${DEAD_LETTER_STREAM}` }
        : await replayDeadLetter(js, jsm, dl, opts);
    onOutcome(o);
    outcomes.push(o);
  }
  return outcomes;
}

/**
 * Replays every dead letter present at the start (optionally only those with `reason`), streaming: each is
 * reported through `onOutcome` as it happens; returns counts, never an array that grows with the stream.
 */
export async function replayAll(
  js: JetStreamClient,
  jsm: JetStreamManager,
  opts: ReplayOptions & { reason?: string | undefined } = {},
  onOutcome: (o: ReplayOutcome) => void = () => {},
): Promise<Record<ReplayStatus, number>> {
  const counts: Record<ReplayStatus, number> = {
    replayed: 0,
    'would-replay': 0,
    kept: 0,
    failed: 0,
    'not-found': 0,
  };
  for await (const dl of iterateDeadLetters(js, jsm)) {
    if (opts.reason !== undefined && dl.reason !== opts.reason) continue;
    const o = await replayDeadLetter(js, jsm, dl, opts);
    counts[o.status]++;
    onOutcome(o);
  }
  return counts;
}
