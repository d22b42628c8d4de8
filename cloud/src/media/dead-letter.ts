import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import { isValidSubjectToken } from '@vigil/proto';
import { DLQ_HEADERS } from '../ingest/dead-letter.js';
import { DEAD_LETTER_STREAM } from '../ingest/streams.js';
import type { MediaDeadLetterReason } from './validate.js';

/**
 * `vigil.dlq.media.<tenant>.<device>`; `_` for a token that is missing or not a valid subject token. Media
 * dead letters share DEAD_LETTER and its headers (DLQ_HEADERS) with events, under their own subject prefix.
 */
export function mediaDeadLetterSubject(tenantId: string | undefined, deviceId: string | undefined): string {
  const token = (v: string | undefined): string => (v !== undefined && isValidSubjectToken(v) ? v : '_');
  return `vigil.dlq.media.${token(tenantId)}.${token(deviceId)}`;
}

export interface MediaDeadLetter {
  reason: MediaDeadLetterReason;
  detail: string;
  tenantId: string | undefined;
  deviceId: string | undefined;
}

/**
 * Publishes the original MEDIA message (its bytes untouched) to DEAD_LETTER and resolves on its PubAck.
 * Nats-Msg-Id is `dlq-media-<MEDIA stream seq>`: a retry after a lost PubAck is stored once, and it can
 * never collide with an event's `dlq-<EVENTS stream seq>` (both streams count from 1).
 */
export async function publishMediaDeadLetter(
  js: JetStreamClient,
  msg: Pick<JsMsg, 'subject' | 'data' | 'info'>,
  letter: MediaDeadLetter,
  failedAt: Date,
): Promise<void> {
  const seq = msg.info.streamSequence;
  const h = headers();
  h.set(DLQ_HEADERS.reason, letter.reason);
  h.set(DLQ_HEADERS.detail, headerText(letter.detail));
  h.set(DLQ_HEADERS.originalSubject, headerText(msg.subject));
  h.set(DLQ_HEADERS.originalStreamSeq, String(seq));
  h.set(DLQ_HEADERS.failedAt, failedAt.toISOString());
  await js.publish(mediaDeadLetterSubject(letter.tenantId, letter.deviceId), msg.data, {
    msgID: `dlq-media-${seq}`,
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
