import type { ConsumerMessages, JetStreamClient, JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import type { CloudConfig } from '../config/schema.js';
import { CircuitBreakers } from '../integrations/breaker.js';
import { ALERTS_CONSUMER, JOBS_STREAM, MAX_JOB_DELIVERIES } from '../integrations/jobs.js';
import { signRequest } from '../integrations/signing.js';
import type { Resolver } from '../integrations/ssrf.js';
import { classify, retryDelayMs } from '../integrations/worker.js';
import { Backoff, sleep } from '../lib/backoff.js';
import type { MediaRepository } from '../media/repository.js';
import { buildCap, type CapMessageInput } from './cap.js';
import { buildEido, EIDO_CONTENT_TYPE, type EidoSchema } from './eido.js';
import { senderOf } from './plan.js';
import type { AlertJob } from './writes.js';
import { postCap } from './post.js';
import type { SnapshotUrls } from './public-routes.js';
import type { AlertMessage, AlertStore, AlertTarget } from './store.js';
import { parseAnswer, type CapSchema } from './xml.js';

export const ALERT_WORKER_CONCURRENCY = 8;

/** The start of a dead letter's error when its document failed its schema (never sent, never in a feed). */
export const INVALID_DOCUMENT = {
  cap: 'CAP message fails the XSD',
  eido: 'EIDO document fails the JSON Schema',
} as const;

/** A message's document in its target's format, and what its schema said (null: valid). */
interface BuiltMessage {
  format: 'cap' | 'eido';
  body: string;
  contentType: string;
  invalid: string | null;
}
/** A message waits this long (not an attempt) while the one before it at the same target is still in flight. */
export const ORDER_WAIT_MS = 500;

/** The alert job in `data`, or null when it is not one this code wrote (a device's PubAck, issue 12). */
export function parseAlertJob(data: Uint8Array): AlertJob | null {
  try {
    const v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data)) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
    const j = v as Record<string, unknown>;
    const ok = (s: unknown): s is string => typeof s === 'string' && s.length > 0 && s.length <= 300;
    return ok(j.tenant_id) && ok(j.message_id) ? { tenant_id: j.tenant_id, message_id: j.message_id } : null;
  } catch {
    return null;
  }
}

export interface AlertWorkerDeps {
  js: JetStreamClient;
  store: AlertStore;
  schema: CapSchema;
  /** The EIDO-style document's JSON Schema (targets of format `eido`). */
  eido: EidoSchema;
  config: Pick<CloudConfig, 'integrations' | 'alerts'>;
  audit: AuditLog;
  media: MediaRepository;
  urls: SnapshotUrls | undefined;
  log: Logger;
  metrics: Registry;
  now: () => Date;
  resolve?: Resolver | undefined;
}

/**
 * Delivers CAP messages from the `alerts` consumer of JOBS, in order per (incident, target): a message waits
 * while the one before it is pending or retrying. Each attempt rebuilds the XML from the stored message (same
 * identifier, sent and references; a fresh snapshot URL), validates it against the XSD (invalid: dead letter
 * with the validator's message, never sent), POSTs it (mTLS or RFC 9421), and records the HTTP status and the
 * agency's answer, parsed safely (xml.ts; hostile answers refused and counted). A message already delivered is
 * never sent again (redelivered job, replay of a live one).
 */
export class AlertWorker {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private messages: ConsumerMessages | undefined;
  private readonly inflight = new Set<Promise<void>>();
  private readonly breakers: CircuitBreakers;
  private readonly results: Counter<'result'>;
  private readonly refused: Counter<'reason'>;

  constructor(private readonly deps: AlertWorkerDeps) {
    const c = deps.config.integrations;
    this.breakers = new CircuitBreakers({
      failures: c.circuit.failures,
      openMs: c.circuit.openSeconds * 1000,
    });
    this.results = new Counter({
      name: 'vigil_cloud_alert_deliveries_total',
      help: "Alert message delivery attempts and verdicts (delivered, retry, dead, published: in a pull-only target's feed, invalid_cap: failed XSD validation, invalid_eido: failed the EIDO JSON Schema, both not sent; invalid_job, already_delivered, waiting: behind an earlier message, short_circuited)",
      labelNames: ['result'],
      registers: [deps.metrics],
    });
    this.refused = new Counter({
      name: 'vigil_cloud_alert_answers_refused_total',
      help: 'Agency answers refused unparsed or unusable, by reason (oversized, doctype, not_xml, wrong_namespace, not_cap, invalid)',
      labelNames: ['reason'],
      registers: [deps.metrics],
    });
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.messages?.close().catch(() => undefined);
    await this.loop;
    await Promise.all([...this.inflight]);
  }

  private async run(): Promise<void> {
    const backoff = new Backoff(250, 10_000);
    while (!this.abort.signal.aborted) {
      try {
        const consumer = await this.deps.js.consumers.get(JOBS_STREAM, ALERTS_CONSUMER);
        this.messages = await consumer.consume({ max_messages: ALERT_WORKER_CONCURRENCY });
        for await (const msg of this.messages) {
          backoff.reset();
          while (this.inflight.size >= ALERT_WORKER_CONCURRENCY) await Promise.race([...this.inflight]);
          const p: Promise<void> = this.handle(msg)
            .catch((err: unknown) => {
              this.deps.log.error({ err }, 'alert job failed; retried later');
              msg.nak(5000);
            })
            .finally(() => this.inflight.delete(p));
          this.inflight.add(p);
        }
      } catch (err) {
        if (this.abort.signal.aborted) break;
        const delay = backoff.next();
        this.deps.log.warn({ err, delayMs: delay }, 'alert job consumer failed; retrying');
        await sleep(delay, this.abort.signal);
      }
    }
  }

  private async handle(msg: JsMsg): Promise<void> {
    const { store, config } = this.deps;
    const job = parseAlertJob(msg.data);
    const m = job ? await store.getMessage(job.tenant_id, job.message_id) : undefined;
    if (!job || !m) {
      this.results.inc({ result: 'invalid_job' });
      msg.term('not an alert job');
      return;
    }
    if (m.state === 'delivered' || m.state === 'dead') {
      this.results.inc({ result: m.state === 'delivered' ? 'already_delivered' : 'dead' });
      msg.ack();
      return;
    }
    // In order: the previous message of this incident at this target must be settled first.
    const prev = await store.db
      .selectFrom('alert_messages')
      .select('state')
      .where('incident_id', '=', m.incident_id)
      .where('target_id', '=', m.target_id)
      .where('seq', '<', m.seq)
      .where('state', 'in', ['pending', 'retrying'])
      .limit(1)
      .executeTakeFirst();
    if (prev) {
      this.results.inc({ result: 'waiting' });
      msg.nak(ORDER_WAIT_MS);
      return;
    }
    const target = await store.getTarget(m.tenant_id, m.target_id);
    if (!target?.enabled) {
      await this.settle(m, 'dead', { error: 'target disabled or gone' });
      msg.ack();
      return;
    }
    const attempt = m.attempts + 1;
    if (attempt > config.alerts.maxAttempts || msg.info.deliveryCount > MAX_JOB_DELIVERIES) {
      await this.settle(m, 'dead', { error: 'gave up: too many attempts' });
      this.results.inc({ result: 'dead' });
      msg.term('too many attempts');
      return;
    }
    // A pull-only target's message is built and checked like any other, then it is in the target's Atom feed.
    if (target.delivery === 'pull') {
      const doc = await this.build(m, target);
      if (await this.refuseInvalid(m, doc, msg)) return;
      await this.settle(m, 'delivered', {
        attempts: attempt,
        answer: 'in the Atom feed (pull-only target)',
        body: doc.body,
      });
      this.results.inc({ result: 'published' });
      msg.ack();
      return;
    }
    const gate = this.breakers.check(target.id);
    if (!gate.allowed) {
      this.results.inc({ result: 'short_circuited' });
      msg.nak(gate.retryInMs + Math.round(Math.random() * Math.min(1000, gate.retryInMs / 10)));
      return;
    }
    const doc = await this.build(m, target);
    if (await this.refuseInvalid(m, doc, msg)) return;
    const xml = doc.body;
    const url = new URL(target.url!);
    const headers =
      target.auth === 'signature' && target.secret
        ? signRequest({
            method: 'POST',
            url: url.href,
            body: xml,
            contentType: doc.contentType,
            secret: target.secret,
            keyid: target.id,
          })
        : { 'content-type': doc.contentType };
    const cfg = config.integrations;
    const result = await postCap(url, xml, headers, {
      timeoutMs: cfg.timeoutMs,
      allowInsecureHttp: cfg.allowInsecureHttp,
      allowPrivateNetworks: cfg.allowPrivateNetworks,
      resolve: this.deps.resolve,
      tls:
        target.auth === 'mtls' && target.client_cert_pem && target.client_key_pem
          ? { cert: target.client_cert_pem, key: target.client_key_pem, ca: target.ca_pem ?? undefined }
          : undefined,
    });
    let verdict = classify(result);
    if (verdict === 'retry') this.breakers.failure(target.id);
    else this.breakers.success(target.id);
    let answer: string | null = null;
    let error = result.kind !== 'response' ? result.error : undefined;
    // A JSON (EIDO) agency's answer is its HTTP status; a CAP agency may answer with a CAP Ack or Error.
    if (result.kind === 'response' && doc.format === 'eido') {
      if (verdict !== 'delivered') error = `HTTP ${result.status}`;
    } else if (result.kind === 'response') {
      const a = parseAnswer(result.body ?? Buffer.alloc(0), result.truncated ?? false, this.deps.schema);
      if (a.kind === 'refused') {
        this.refused.inc({ reason: a.reason });
        answer = `refused (${a.reason}): ${a.detail}`.slice(0, 500);
      } else if (a.kind !== 'none') {
        answer = `${a.kind === 'ack' ? 'Ack' : 'Error'}${a.note ? `: ${a.note}` : ''}`.slice(0, 500);
        // The agency read it and says no: sending the same message again will not change that.
        if (a.kind === 'error' && verdict === 'delivered') {
          verdict = 'dead';
          error = 'the agency answered CAP Error';
        }
      }
      if (verdict !== 'delivered' && error === undefined) error = `HTTP ${result.status}`;
    }
    if (verdict === 'retry' && attempt >= config.alerts.maxAttempts) verdict = 'dead';
    await this.settle(m, verdict === 'retry' ? 'retrying' : verdict, {
      attempts: attempt,
      httpStatus: result.kind === 'response' ? result.status : null,
      answer,
      error: error ?? null,
      body: xml,
    });
    this.results.inc({ result: verdict });
    if (verdict === 'delivered') msg.ack();
    else if (verdict === 'dead') msg.term(error ?? 'dead');
    else msg.nak(retryDelayMs(attempt, cfg.backoff));
  }

  /**
   * A message whose document fails its schema (the XSD, or the EIDO JSON Schema) is a dead letter carrying the
   * validator's message and is never sent. True when it was.
   */
  private async refuseInvalid(m: AlertMessage, doc: BuiltMessage, msg: JsMsg): Promise<boolean> {
    if (doc.invalid === null) return false;
    const what = INVALID_DOCUMENT[doc.format];
    await this.settle(m, 'dead', { error: `${what}: ${doc.invalid}`, body: doc.body });
    this.results.inc({ result: doc.format === 'eido' ? 'invalid_eido' : 'invalid_cap' });
    this.deps.log.error({ message: m.id, invalid: doc.invalid }, `${what}: dead letter, not sent`);
    msg.term(`invalid ${doc.format}`);
    return true;
  }

  /**
   * The document of a message in the target's format (CAP XML or EIDO JSON), checked against its schema:
   * stored identity and content, the site's area, a fresh signed snapshot URL.
   */
  private async build(m: AlertMessage, target: AlertTarget): Promise<BuiltMessage> {
    const { store, urls, media, audit, now, config } = this.deps;
    let resource: CapMessageInput['resource'] = null;
    const snap = m.info.snapshot;
    if (snap && urls) {
      const row = await media.get(m.tenant_id, snap.media_id);
      if (row && row.deleted_at === null) {
        const issued = urls.issue(m.tenant_id, snap.media_id, now());
        await audit.append({
          tenantId: m.tenant_id,
          actor: 'alerts',
          actorKind: 'service',
          action: 'media.url_issue',
          resource: `media:${m.tenant_id}/${snap.media_id}`,
          outcome: 'allowed',
          detail: { message: m.identifier, target: target.id, expires: issued.expires.toISOString() },
        });
        resource = { uri: issued.url, mimeType: row.content_type, size: row.size_bytes, digest: row.sha256 };
      }
    }
    const input: CapMessageInput = {
      identifier: m.identifier,
      sender: senderOf(m.tenant_id, config.alerts.senderDomain),
      sent: m.sent,
      msgType: m.msg_type,
      references: m.references_id,
      info: m.info,
      location: await store.siteLocation(m.tenant_id, m.info.site_id),
      resource,
    };
    if (target.format === 'eido') {
      const doc = buildEido({ ...input, incidentId: m.incident_id });
      return {
        format: 'eido',
        body: JSON.stringify(doc),
        contentType: EIDO_CONTENT_TYPE,
        invalid: this.deps.eido.check(doc),
      };
    }
    const xml = buildCap(input);
    return {
      format: 'cap',
      body: xml,
      contentType: 'application/cap+xml',
      invalid: this.deps.schema.check(xml),
    };
  }

  private async settle(
    m: AlertMessage,
    state: 'delivered' | 'retrying' | 'dead',
    r: {
      attempts?: number;
      httpStatus?: number | null;
      answer?: string | null;
      error?: string | null;
      body?: string;
    },
  ): Promise<void> {
    await this.deps.store.db
      .updateTable('alert_messages')
      .set({
        state,
        ...(r.attempts !== undefined ? { attempts: r.attempts } : {}),
        ...(r.httpStatus !== undefined ? { http_status: r.httpStatus } : {}),
        ...(r.answer !== undefined ? { answer: r.answer } : {}),
        error: r.error === undefined || r.error === null ? null : r.error.slice(0, 2000),
        ...(r.body !== undefined ? { body: r.body } : {}),
        updated_at: this.deps.now(),
      })
      .where('id', '=', m.id)
      .execute();
  }
}
