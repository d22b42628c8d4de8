import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, describe, expect, it } from 'vitest';
import { createCa, issueClientCert } from '@vigil/certs';
import { natsConfig, useNats, usePki } from '../src/index.js';

// nats-server with mutual TLS: the fleet CA's device certificates are accepted; a client without a
// certificate, or with one from another CA, is refused at the TLS handshake.
describe('nats-server with mutual TLS', () => {
  const pki = usePki({ devices: [{ tenantId: 'acme', deviceId: 'gw-1' }] });
  const nats = useNats({
    config: (ctx) => {
      const p = pki();
      return natsConfig({
        jetstream: true,
        tls: { caFile: p.caCert, certFile: p.natsServer.cert, keyFile: p.natsServer.key },
      })(ctx);
    },
  });
  const scratch = mkdtempSync(join(tmpdir(), 'vigil-foreign-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  const server = () => `tls://localhost:${nats().port}`;
  const opts = { timeout: 10_000, reconnect: false } as const;

  it('accepts a device certificate issued by the fleet CA', async () => {
    const dev = pki().devices['acme/gw-1'];
    expect(dev).toBeDefined();
    const nc = await connect({
      servers: server(),
      ...opts,
      tls: { caFile: pki().caCert, certFile: dev!.cert, keyFile: dev!.key },
    });
    const sub = nc.subscribe('vigil.v1.acme.gw-1.hb', { max: 1 });
    nc.publish('vigil.v1.acme.gw-1.hb', new TextEncoder().encode('ping'));
    for await (const m of sub) expect(m.string()).toBe('ping');
    await nc.close();
  });

  it('refuses a client without a certificate', async () => {
    await expect(connect({ servers: server(), ...opts, tls: { caFile: pki().caCert } })).rejects.toThrow();
    // The server, not only the client, saw and refused it.
    await expect
      .poll(() => nats().logs.text(), { timeout: 15_000 })
      .toMatch(/TLS handshake error: .*didn't provide a certificate/);
  });

  it('refuses a client certificate from another CA', async () => {
    const foreignCa = createCa({ commonName: 'Not The Fleet CA' });
    const foreign = issueClientCert(foreignCa, { commonName: 'gw-1' });
    writeFileSync(join(scratch, 'f.crt'), foreign.certPem);
    writeFileSync(join(scratch, 'f.key'), foreign.keyPem, { mode: 0o600 });
    await expect(
      connect({
        servers: server(),
        ...opts,
        tls: { caFile: pki().caCert, certFile: join(scratch, 'f.crt'), keyFile: join(scratch, 'f.key') },
      }),
    ).rejects.toThrow();
    await expect
      .poll(() => nats().logs.text(), { timeout: 15_000 })
      .toMatch(/TLS handshake error: .*(unknown authority|bad certificate)/);
  });

  it('runs JetStream over mTLS and de-duplicates on msgID', async () => {
    const svc = pki().services.cloud;
    expect(svc).toBeDefined();
    const nc = await connect({
      servers: server(),
      ...opts,
      tls: { caFile: pki().caCert, certFile: svc!.cert, keyFile: svc!.key },
    });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'T', subjects: ['t.>'], duplicate_window: 60_000_000_000 });
    const js = jetstream(nc);
    const first = await js.publish('t.a', 'x', { msgID: 'evt-1' });
    const again = await js.publish('t.a', 'x', { msgID: 'evt-1' });
    expect(first.duplicate).toBe(false);
    expect(again.duplicate).toBe(true);
    expect((await jsm.streams.info('T')).state.messages).toBe(1);
    await nc.close();
  });

  it('serves a certificate naming localhost and 127.0.0.1 (nats.js checks "localhost" even for an IP)', () => {
    const cert = new X509Certificate(readFileSync(pki().natsServer.cert));
    expect(cert.subjectAltName).toContain('DNS:localhost');
    expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
  });
});
