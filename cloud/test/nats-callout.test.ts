// Issue 12, finding 9: the device certificate is bound to the NATS identity. Real nats-server 2.10 in operator/JWT
// mode with mutual TLS, the real cloud (its auth callout, gRPC enrollment, the revoke API), PostgreSQL. Devices
// enroll like gateways do; then we try what an attacker holding one device's files would: another device's
// certificate with its creds, a revoked device's unexpired pair, subjects of another device.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createUser, type KeyPair } from '@nats-io/nkeys';
import { connect, jwtAuthenticator, type NatsConnection, type Status } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { createCsr } from '@vigil/certs';
import { type EnrollRequest, type EnrollResponse, subjectFor } from '@vigil/proto';
import { connectWithAuthority, deviceInboxPrefix } from '../src/index.js';
import { useFleetStack } from './support/fleet-stack.js';

const tmp = mkdtempSync(join(tmpdir(), 'vigil-callout-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Enrolled {
  res: EnrollResponse;
  certFile: string;
  keyFile: string;
  nkey: KeyPair;
}

describe('NATS auth callout: the TLS certificate is bound to the NATS identity', () => {
  const stack = useFleetStack();
  const open: NatsConnection[] = [];
  afterAll(async () => {
    for (const nc of open) await nc.close().catch(() => undefined);
  });

  async function enroll(deviceId: string): Promise<Enrolled> {
    const token = await stack.enrollmentToken('acme', 'hq');
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const nkey = createUser();
    const req: EnrollRequest = {
      token,
      csrPem: createCsr({ privateKeyPem: keyPem, commonName: deviceId }),
      agentVersion: '0.1.0',
      hardwareId: `hw-${deviceId}`,
      natsPublicKey: nkey.getPublicKey(),
    };
    const res = await new Promise<EnrollResponse>((resolve, reject) =>
      stack
        .client()
        .enroll(req, new grpc.Metadata(), { deadline: Date.now() + 20_000 }, (err, v) =>
          err ? reject(err) : resolve(v),
        ),
    );
    const certFile = join(tmp, `${deviceId}.crt`);
    const keyFile = join(tmp, `${deviceId}.key`);
    writeFileSync(certFile, res.certificatePem);
    writeFileSync(keyFile, keyPem, { mode: 0o600 });
    return { res, certFile, keyFile, nkey };
  }

  /** Connects with `creds`' ticket and seed, presenting `tls`' certificate (by default its own). */
  async function dial(creds: Enrolled, tls: Enrolled = creds): Promise<NatsConnection> {
    const nc = await connect({
      servers: [stack.natsUrl()],
      tls: { caFile: stack.pki().caCert, certFile: tls.certFile, keyFile: tls.keyFile },
      authenticator: jwtAuthenticator(creds.res.natsUserJwt, creds.nkey.getSeed()),
      inboxPrefix: deviceInboxPrefix(creds.res.tenantId, creds.res.deviceId),
      reconnect: false,
      timeout: 10_000,
    });
    open.push(nc);
    return nc;
  }
  async function refused(p: Promise<NatsConnection>): Promise<string> {
    const nc = await p.catch((err: unknown) => err as Error);
    if (!(nc instanceof Error)) {
      await nc.close();
      throw new Error('expected the connection to be refused, it was admitted');
    }
    return nc.message;
  }
  async function calloutCount(result: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${stack.cloud().httpPort}/metrics`)).text();
    const m = new RegExp(`^vigil_cloud_nats_callout_total\\{result="${result}"\\} (\\d+)`, 'm').exec(text);
    return Number(m?.[1] ?? 0);
  }
  async function revoke(deviceId: string): Promise<Response> {
    return stack.api(`/v1/devices/${deviceId}/revoke`, await stack.token('acme', ['admin']), {
      method: 'POST',
      body: JSON.stringify({ reason: 'test' }),
    });
  }

  it("refuses device A's creds with device B's certificate, and B's with A's", async () => {
    const a = await enroll('gw-a');
    const b = await enroll('gw-b');
    // Each with its own pair is admitted.
    await (await dial(a)).close();
    await (await dial(b)).close();
    const before = await calloutCount('certificate_mismatch');
    expect(await refused(dial(a, b))).toMatch(/authorization/i);
    expect(await refused(dial(b, a))).toMatch(/authorization/i);
    expect(await calloutCount('certificate_mismatch')).toBe(before + 2);
  });

  it('a good device publishes and subscribes only on its own subjects', async () => {
    const c = await enroll('gw-c');
    const other = 'gw-a';
    const svc = await connectWithAuthority(stack.authority().authority, 'service', 'observer', {
      servers: [stack.natsUrl()],
      tls: { caFile: stack.pki().caCert, ...certOf(stack.pki().services.cloud!) },
    });
    open.push(svc);
    const seen: string[] = [];
    svc.subscribe('vigil.v1.acme.>', { callback: (_e, m) => void seen.push(m.subject) });
    await svc.flush();

    const nc = await dial(c);
    const errors: string[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === 'error') errors.push(statusText(s));
    })();
    nc.publish(subjectFor('acme', 'gw-c', 'status'), 'mine');
    nc.publish(subjectFor('acme', other, 'status'), 'forged');
    nc.subscribe(subjectFor('acme', other, 'cfg'));
    await nc.flush();
    await until(() => seen.includes(subjectFor('acme', 'gw-c', 'status')) && errors.length >= 2);
    expect(seen).not.toContain(subjectFor('acme', other, 'status'));
    expect(errors.join('\n')).toContain(subjectFor('acme', other, 'status'));
    expect(errors.join('\n')).toContain(subjectFor('acme', other, 'cfg'));
    await nc.close();
  });

  it("refuses a revoked device's unexpired certificate, with its own creds or a good device's", async () => {
    const d = await enroll('gw-revoked');
    const good = await enroll('gw-good');
    await (await dial(d)).close();
    expect((await revoke('gw-revoked')).status).toBe(200);
    const revoked = await calloutCount('certificate_revoked');
    const mismatch = await calloutCount('certificate_mismatch');
    expect(await refused(dial(d))).toMatch(/authorization/i);
    expect(await refused(dial(good, d))).toMatch(/authorization/i);
    // Its own ticket is refused by nats-server itself (the device auth account's revocation list names the
    // ticket key), before the callout is asked; with a good ticket, the callout refuses the certificate.
    expect(await calloutCount('certificate_revoked')).toBe(revoked);
    expect(await calloutCount('certificate_mismatch')).toBe(mismatch + 1);
    await (await dial(good)).close();
  });

  it('revocation disconnects a live device at once', async () => {
    const d = await enroll('gw-live');
    const nc = await dial(d);
    const closedAt = nc.closed().then(() => performance.now());
    const started = performance.now();
    const res = await revoke('gw-live');
    const answered = performance.now() - started;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ result: 'revoked', nats: 'cut' });
    const closed = await Promise.race([
      closedAt,
      new Promise<number>((_, rej) =>
        setTimeout(() => rej(new Error('still connected 10 s after revocation')), 10_000),
      ),
    ]);
    console.log(
      `[callout] revoked device disconnected ${(closed - started).toFixed(0)} ms after the API call (API answered in ${answered.toFixed(0)} ms)`,
    );
    expect(await refused(dial(d))).toMatch(/authorization/i);
  });

  it('with the callout down devices are refused and services keep working; back up, devices connect', async () => {
    const e = await enroll('gw-e');
    const callout = stack.cloud().callout!;
    await callout.stop();
    try {
      expect(callout.running).toBe(false);
      // The server waits its auth timeout for an answer, then closes the connection (2.10.27 logs it as
      // "maximum account active connections exceeded"; the client sees "connection refused").
      expect(await refused(dial(e))).toMatch(/authorization|refused|timeout/i);
      // Service and system users are not in the callout's account.
      const opts = {
        servers: [stack.natsUrl()],
        tls: { caFile: stack.pki().caCert, ...certOf(stack.pki().services.cloud!) },
      };
      const svc = await connectWithAuthority(stack.authority().authority, 'service', 'while-down', opts);
      const got = svc.subscribe('vigil.v1.acme.gw-e.status', { max: 1 });
      svc.publish('vigil.v1.acme.gw-e.status', 'x');
      for await (const m of got) expect(m.string()).toBe('x');
      await svc.close();
      const sys = await connectWithAuthority(stack.authority().authority, 'system', 'while-down', opts);
      await sys.close();
    } finally {
      await callout.start();
    }
    await (await dial(e)).close();
  });
});

function certOf(p: { cert: string; key: string }): { certFile: string; keyFile: string } {
  return { certFile: p.cert, keyFile: p.key };
}

function statusText(s: Status): string {
  const err = (s as { error?: Error }).error;
  return err ? `${err.name}: ${err.message} ${JSON.stringify(err)}` : JSON.stringify(s);
}

async function until(ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
