import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import { isValidSubjectToken } from '@vigil/proto';
import { DEAD_LETTER_STREAM } from './streams.js';
import type { DeadLetterReason } from './validate.js';

/** Headers of a DEAD_LETTER message (its data is the original message's bytes, untouched). */
export const DLQ_HEADERS = {
  reason: 'Vigil-Dlq-Reason',
  detail: 'Vigil-Dlq-Detail',
  originalSubject: 'Vigil-Original-Subject',
  originalStreamSeq: 'Vigil-Original-Stream-Seq',
  failedAt: 'Vigil-Failed-At',
} as const;

/** Which stream the refused message came from: EVENTS (ingest) or MEDIA (media ingest). */
export type DeadLetterSource = 'events' | 'media';

/**
 * `vigil.dlq.<source>.<tenant>.<device>` from the original subject's identity; `_` for a token that is
 * missing or not a valid subject token (so garbage from the wire cannot shape the dead-letter subject).
 */
export function deadLetterSubject(
  tenantId: string | undefined,
  deviceId: string | undefined,
  source: DeadLetterSource = 'events',
): string {
  const token = (v: string | undefined): string => (v !== undefined && isValidSubjectToken(v) ? v : '_');
  return `vigil.dlq.${source}.${token(tenantId)}.${token(deviceId)}`;
}

export interface DeadLetter<R extends string = DeadLetterReason> {
  reason: R;
  detail: string;
  tenantId: string | undefined;
  deviceId: string | undefined;
}

/**
 * Publishes the original message to DEAD_LETTER and resolves on its PubAck. Nats-Msg-Id is
 * `dlq-<original stream seq>` for events and `dlq-media-<seq>` for media (both streams count from 1, so the
 * prefix keeps them apart in the duplicate window): publishing again after a lost PubAck or a crash stores it
 * once.
 */
export async function publishDeadLetter<R extends string>(
  js: JetStreamClient,
  msg: Pick<JsMsg, 'subject' | 'data' | 'info'>,
  letter: DeadLetter<R>,
  failedAt: Date,
  source: DeadLetterSource = 'events',
): Promise<void> {
  const seq = msg.info.streamSequence;
  const h = headers();
  h.set(DLQ_HEADERS.reason, letter.reason);
  h.set(DLQ_HEADERS.detail, headerText(letter.detail));
  h.set(DLQ_HEADERS.originalSubject, headerText(msg.subject));
  h.set(DLQ_HEADERS.originalStreamSeq, String(seq));
  h.set(DLQ_HEADERS.failedAt, failedAt.toISOString());
  await js.publish(deadLetterSubject(letter.tenantId, letter.deviceId, source), msg.data, {
    msgID: source === 'events' ? `dlq-${seq}` : `dlq-${source}-${seq}`,
    headers: h,
    expect: { streamName: DEAD_LETTER_STREAM },
  });
}

/** A header value: one line of printable text, bounded. */
function headerText(s: string, max = 512): string {
  // eslint-disable-next-line no-control-regex -- control characters are what must not reach a header
  const line = s.replace(/[\u0000-\u001f\u007f]+/g, ' ');
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
