import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertKeyPem } from '@vigil/certs';
import { usePki } from '@vigil/testkit';
import { parseAgentConfig, startAgent, type Agent } from '../src/index.js';
import { IdentityStore, type DeviceIdentity, type IdentityClient } from '../src/identity/index.js';
import { IDS, issueIdentity, tempDir } from './helpers/identity-fixtures.js';
import { createEventsStream, ReceiptResponder } from './helpers/receipt-responder.js';
import { appendEvents, connectCloud, natsUrl, useMtlsNats } from './helpers/uplink-env.js';

// An enrolled agent (no `device`, no `nats` in its config) against a real nats-server with mutual TLS and
// JetStream: it connects with the identity's files, renews (the cloud is a stand-in: the renewal's
// transport has its own test), reconnects with the renewed certificate and keeps delivering events.
// nats-server here does not run in JWT mode, so the creds are sent but not checked.

/** The certificate nats.js presented on its current connection (its TLS socket is not public API). */
function presentedFingerprint(nc: NatsConnection): string | undefined {
  const socket = (nc as unknown as { protocol?: { transport?: { socket?: TLSSocket } } }).protocol?.transport
    ?.socket;
  const cert = socket?.getCertificate();
  return cert && 'fingerprint256' in cert ? cert.fingerprint256 : undefined;
}

describe('agent with an enrolled identity', () => {
  const pki = usePki({ services: ['cloud'] });
  const nats = useMtlsNats(pki);
  const tmp = tempDir('identity-agent');
  let cloud: NatsConnection;
  let responder: ReceiptResponder;
  let agent: Agent | undefined;
  let enrolled: DeviceIdentity;
  let ca: CertKeyPem;
  let releaseRenewal: () => void = () => {};
  const renewalGate = new Promise<void>((resolve) => (releaseRenewal = resolve));

  beforeAll(async () => {
    ca = { certPem: readFileSync(pki().caCert, 'utf8'), keyPem: readFileSync(pki().caKey, 'utf8') };
    cloud = await connectCloud(pki(), nats());
    await createEventsStream(cloud);
    responder = await new ReceiptResponder({ nc: cloud }).start();
    // Enrolled 25 days ago with a 30-day certificate: renewal is due (at 2/3) as soon as the agent starts.
    const old = issueIdentity({
      ca,
      now: new Date(Date.now() - 25 * 86_400_000),
      natsUrls: [natsUrl(nats())],
    });
    enrolled = new IdentityStore(join(tmp.dir, 'identity')).save(old.info, old.material);
    const identityClient: IdentityClient = {
      renew: async (identity) => {
        await renewalGate;
        const fresh = issueIdentity({ ca, natsUrls: identity.natsUrls });
        return { ...fresh, info: { ...fresh.info, enrolledAt: identity.enrolledAt, renewedAt: new Date() } };
      },
    };
    agent = await startAgent(
      parseAgentConfig({ dataDir: tmp.dir, http: { port: 0 }, uplink: { receiptTimeoutMs: 1_000 } }),
      { logger: pino({ level: 'warn' }), identityClient },
    );
  });
  afterAll(async () => {
    releaseRenewal();
    await agent?.stop();
    await responder?.stop();
    await cloud?.close();
    tmp.cleanup();
  });

  it('runs as the enrolled device over NATS with the identity files', async () => {
    const a = agent!;
    expect(a.nc).toBeDefined();
    expect(presentedFingerprint(a.nc!)).toBe(new X509Certificate(enrolled.material.certPem).fingerprint256);
    const ids = appendEvents(a.outbox, 20);
    await expect.poll(() => a.outbox.stats().depth, { timeout: 10_000 }).toBe(0);
    expect(ids.every((id) => responder.committed.has(id))).toBe(true);
    const health = (await (await fetch(`http://127.0.0.1:${a.httpPort}/healthz`)).json()) as {
      identity: { deviceId: string; renewal: string };
    };
    expect(health.identity).toMatchObject({ deviceId: IDS.deviceId, renewal: 'renewing' });
  });

  it('after a renewal, reconnects with the new certificate and keeps publishing to JetStream', async () => {
    const a = agent!;
    const before = a.nc!.info?.client_id;
    releaseRenewal();
    await expect
      .poll(
        async () => await a.metrics.registry.getSingleMetricAsString('vigil_agent_identity_renewals_total'),
        {
          timeout: 10_000,
        },
      )
      .toContain('{result="success"} 1');
    const renewed = new IdentityStore(join(tmp.dir, 'identity')).load()!;
    expect(renewed.material.certPem).not.toBe(enrolled.material.certPem);
    const fingerprint = new X509Certificate(renewed.material.certPem).fingerprint256;
    // The forced reconnect makes a new connection (new client id) that presents the renewed certificate.
    await expect
      .poll(() => a.nc!.info?.client_id !== before && a.nc!.isClosed() === false, { timeout: 15_000 })
      .toBe(true);
    await expect.poll(() => presentedFingerprint(a.nc!), { timeout: 15_000 }).toBe(fingerprint);

    const ids = appendEvents(a.outbox, 20);
    await expect.poll(() => a.outbox.stats().depth, { timeout: 15_000 }).toBe(0);
    expect(ids.every((id) => responder.committed.has(id))).toBe(true);
    expect(a.renewer?.status().state).toBe('scheduled');
    expect(a.renewer!.status().nextAt!.getTime()).toBeGreaterThan(Date.now() + 19 * 86_400_000);
  });
});
