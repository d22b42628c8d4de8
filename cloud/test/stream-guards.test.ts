// Issue 12, PubAcks: a device can aim the PubAck of its own publish ({"stream","seq"}) at any subject, the
// JetStream API included. Every cloud stream refuses purges; those that no code deletes single messages from
// refuse that too; ensureStreams / ensureJobs give an EXISTING deployment's streams these flags. And a PubAck
// that lands on the webhook job subject is not a job.
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useNats } from '@vigil/testkit';
import { parseCloudConfig } from '../src/config/load.js';
import {
  deadLetterStreamConfig,
  ensureStreams,
  eventsStreamConfig,
  mediaStreamConfig,
  telemetryStreamConfig,
  type StreamSpec,
} from '../src/ingest/streams.js';
import { JOBS_SUBJECTS, ensureJobs, jobsStreamConfig, parseWebhookJob } from '../src/integrations/jobs.js';

const nats = useNats();
const cfg = parseCloudConfig({
  database: { url: 'postgres://unused' },
  nats: { servers: ['nats://unused'], tls: { caFile: '/unused', certFile: '/unused', keyFile: '/unused' } },
  auth: { issuer: 'https://issuer.test', audience: 'vigil', jwksFile: '/dev/null' },
});

describe('stream guards against PubAck-driven JetStream API calls', () => {
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  beforeAll(async () => {
    nc = await connect({ servers: [nats().url] });
    jsm = await jetstreamManager(nc);
  });
  afterAll(async () => {
    await nc?.close();
  });

  it('ensureStreams and ensureJobs add deny_purge (all) and deny_delete (TELEMETRY, MEDIA, JOBS) to existing streams, and narrow JOBS to its job subjects', async () => {
    // A deployment from before: the same streams without the flags, each holding a message.
    const old = (s: StreamSpec): StreamSpec => {
      const { deny_purge: _p, deny_delete: _d, ...rest } = s;
      // JOBS used to capture all of vigil.jobs.>.
      return s.name === 'JOBS' ? { ...rest, subjects: ['vigil.jobs.>'] } : rest;
    };
    const specs = [
      eventsStreamConfig(cfg),
      deadLetterStreamConfig(cfg),
      telemetryStreamConfig(cfg),
      mediaStreamConfig(cfg),
      jobsStreamConfig(cfg) as StreamSpec,
    ];
    const js = jsm.jetstream();
    for (const s of specs) {
      const info = await jsm.streams.add(old(s));
      expect(info.config.deny_purge ?? false).toBe(false);
      const subject = s.subjects![0]!.replace(/[*>]/g, 'x');
      if (s.no_ack) nc.publish(subject, 'old');
      else await js.publish(subject, 'old');
    }
    await nc.flush();

    await ensureStreams(jsm, cfg);
    await ensureJobs(jsm, cfg);
    await ensureStreams(jsm, cfg); // idempotent: setting the flags again is no change

    const deletes: Record<string, boolean> = {
      EVENTS: true,
      DEAD_LETTER: true,
      TELEMETRY: false,
      MEDIA: false,
      JOBS: false,
    };
    for (const [name, deletable] of Object.entries(deletes)) {
      const { config, state } = await jsm.streams.info(name);
      expect(config.deny_purge, name).toBe(true);
      expect(config.deny_delete ?? false, name).toBe(!deletable);
      expect(state.messages, `${name} kept its message`).toBe(1);
      if (name === 'JOBS')
        expect(config.subjects).toEqual(['vigil.jobs.webhooks.deliver', 'vigil.jobs.alerts.deliver']);
      if (name === 'JOBS') expect(config.subjects).toEqual(JOBS_SUBJECTS);
      await expect(jsm.streams.purge(name), name).rejects.toThrow(/purge not permitted/);
      const del = jsm.streams.deleteMessage(name, state.first_seq, false);
      if (deletable) await expect(del, name).resolves.toBe(true);
      else await expect(del, name).rejects.toThrow(/delete not permitted/);
    }
  });

  it('a PubAck (or anything but a job this code wrote) on the job subject is not a webhook job', () => {
    const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
    for (const bad of [
      enc({ stream: 'EVENTS', seq: 42 }),
      enc({ stream: 'EVENTS', seq: 42, duplicate: true }),
      enc({ error: { code: 400, err_code: 10054, description: 'message size exceeds maximum allowed' } }),
      enc({ webhook_id: 'w', tenant_id: 't' }),
      enc({ webhook_id: 'w', tenant_id: 't', event: null }),
      enc({ webhook_id: 'w', tenant_id: 't', event: { event_id: 7 } }),
      enc({ webhook_id: '', tenant_id: 't', event: { event_id: 'e' } }),
      enc(null),
      enc([1, 2]),
      new Uint8Array([0xff, 0xfe, 0x7b]),
    ])
      expect(parseWebhookJob(bad), Buffer.from(bad).toString()).toBeNull();
    const job = { webhook_id: 'w', tenant_id: 't', event: { event_id: 'e', tenant_id: 't' } };
    expect(parseWebhookJob(enc(job))).toEqual(job);
  });
});
