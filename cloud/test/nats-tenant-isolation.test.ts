// Issue 12: a device cannot reach another device's subjects at all (another tenant's or its own tenant's),
// whatever its user permissions say. The real stack (nats-server 2.10 in JWT mode with mTLS, the cloud with its
// callout and account publisher, PostgreSQL). Devices of acme and globex enroll; then a user of the account
// DEVICE_acme.gw-a with NO permission limits (signed by the account's own key: what a fully compromised
// account-level credential would be) tries globex's subjects, its acme peer's and VIGIL's API. The account
// imports only gw-a's own subjects, so nothing arrives anywhere.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { encodeUser } from '@nats-io/jwt';
import { createUser } from '@nats-io/nkeys';
import { connect, jwtAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { createCsr } from '@vigil/certs';
import { type EnrollRequest, type EnrollResponse, subjectFor } from '@vigil/proto';
import { connectWithAuthority, deviceInboxPrefix } from '../src/index.js';
import { deviceAccountKeys } from '../src/fleet/nats-device-accounts.js';
import { nativeKeyPair } from '../src/fleet/nkey-crypto.js';
import { useFleetStack } from './support/fleet-stack.js';

const tmp = mkdtempSync(join(tmpdir(), 'vigil-isolation-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('device isolation: DEVICE_<tenant>.<device> accounts import only their own subjects', () => {
  const stack = useFleetStack();
  const open: NatsConnection[] = [];
  afterAll(async () => {
    for (const nc of open) await nc.close().catch(() => undefined);
  });
  const tls = (certFile: string, keyFile: string): { caFile: string; certFile: string; keyFile: string } => ({
    caFile: stack.pki().caCert,
    certFile,
    keyFile,
  });

  async function device(tenantId: string, siteId: string, deviceId: string): Promise<NatsConnection> {
    const token = await stack.enrollmentToken(tenantId, siteId);
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const nkey = createUser();
    const req: EnrollRequest = {
      token,
      csrPem: createCsr({ privateKeyPem: keyPem, commonName: deviceId }),
      agentVersion: '0.1.0',
      hardwareId: `hw-${tenantId}-${deviceId}`,
      natsPublicKey: nkey.getPublicKey(),
    };
    const res = await new Promise<EnrollResponse>((resolve, reject) =>
      stack
        .client()
        .enroll(req, new grpc.Metadata(), { deadline: Date.now() + 20_000 }, (err, v) =>
          err ? reject(err) : resolve(v),
        ),
    );
    const certFile = join(tmp, `${tenantId}-${deviceId}.crt`);
    const keyFile = join(tmp, `${tenantId}-${deviceId}.key`);
    writeFileSync(certFile, res.certificatePem);
    writeFileSync(keyFile, keyPem, { mode: 0o600 });
    const nc = await connect({
      servers: [stack.natsUrl()],
      tls: tls(certFile, keyFile),
      authenticator: jwtAuthenticator(res.natsUserJwt, nkey.getSeed()),
      inboxPrefix: deviceInboxPrefix(tenantId, deviceId),
      timeout: 10_000,
    });
    open.push(nc);
    return nc;
  }

  it("an unrestricted user of DEVICE_acme.gw-a reaches nothing of globex's, nothing of its acme peer's and no VIGIL API", async () => {
    const gDev = await device('globex', 'plant', 'gw-g');
    const peer = await device('acme', 'hq', 'gw-b');
    await device('acme', 'hq', 'gw-a'); // its account is pushed before the callout admits it
    const svcCert = stack.pki().services.cloud!;
    const cloud = await connectWithAuthority(stack.authority().authority, 'service', 'isolation', {
      servers: [stack.natsUrl()],
      tls: tls(svcCert.cert, svcCert.key),
    });
    open.push(cloud);
    const heardInVigil: string[] = [];
    cloud.subscribe('vigil.v1.globex.>', { callback: (_e, m) => void heardInVigil.push(m.subject) });
    cloud.subscribe('vigil.v1.acme.gw-b.>', { callback: (_e, m) => void heardInVigil.push(m.subject) });
    cloud.subscribe('vigil.dlq.>', { callback: (_e, m) => void heardInVigil.push(m.subject) });
    await cloud.flush();

    // Signed by DEVICE_acme.gw-a's identity key: no permission template applies, only the account's imports.
    const acme = deviceAccountKeys(stack.authority().authority, 'acme', 'gw-a');
    const kp = createUser();
    const jwt = await encodeUser(
      'attacker',
      kp,
      nativeKeyPair(acme.account.seed),
      // Everything a user permission could allow (the account's default is deny-all).
      { pub: { allow: ['>'] }, sub: { allow: ['>'] } },
      {
        signer: nativeKeyPair(acme.account.seed),
      },
    );
    const evil = await connect({
      servers: [stack.natsUrl()],
      tls: tls(svcCert.cert, svcCert.key),
      authenticator: jwtAuthenticator(jwt, kp.getSeed()),
    });
    open.push(evil);
    const heardInAcme: string[] = [];
    evil.subscribe('>', { callback: (_e, m) => void heardInAcme.push(m.subject) });
    await evil.flush();

    for (const s of [
      subjectFor('globex', 'gw-g', 'evt', 'cam1'),
      subjectFor('globex', 'gw-g', 'media', 'cam1'),
      subjectFor('globex', 'gw-g', 'hb'),
      subjectFor('globex', 'gw-g', 'status'),
      subjectFor('globex', 'gw-g', 'rcpt'),
      subjectFor('globex', 'gw-g', 'cfg'),
      'vigil.dlq.events.globex.gw-g',
      subjectFor('acme', 'gw-b', 'evt', 'cam1'),
      subjectFor('acme', 'gw-b', 'hb'),
      subjectFor('acme', 'gw-b', 'status'),
      subjectFor('acme', 'gw-b', 'rcpt'),
      subjectFor('acme', 'gw-b', 'cfg'),
    ])
      evil.publish(s, 'x');
    // No JetStream in this account: the server itself answers the API with an error (nothing of VIGIL's).
    const info = await evil.request('$JS.API.INFO', '', { timeout: 5_000 });
    expect(info.json<{ error?: { description?: string } }>().error?.description).toMatch(/not enabled/i);
    await evil.flush();

    // What the cloud sends globex's device arrives there and not in acme.
    const gotCfg = gDev.subscribe(subjectFor('globex', 'gw-g', 'cfg'), { max: 1 });
    await gDev.flush();
    cloud.publish(subjectFor('globex', 'gw-g', 'cfg'), 'for globex');
    cloud.publish(subjectFor('globex', 'gw-g', 'rcpt'), 'for globex');
    for await (const m of gotCfg) expect(m.string()).toBe('for globex');
    // And what it sends the same-tenant peer arrives there and not in gw-a's account.
    const peerHeard: string[] = [];
    peer.subscribe(subjectFor('acme', 'gw-b', 'cfg'), {
      callback: (_e, m) => void peerHeard.push(m.string()),
    });
    peer.subscribe(subjectFor('acme', 'gw-b', 'rcpt'), {
      callback: (_e, m) => void peerHeard.push(m.string()),
    });
    await peer.flush();
    cloud.publish(subjectFor('acme', 'gw-b', 'cfg'), 'for gw-b');
    cloud.publish(subjectFor('acme', 'gw-b', 'rcpt'), 'for gw-b');
    await expect.poll(() => peerHeard.length, { timeout: 10_000 }).toBe(2);
    // Control: acme's own delivery does arrive in acme (so the empty list below means something).
    cloud.publish(subjectFor('acme', 'gw-a', 'cfg'), 'for acme');
    await expect
      .poll(() => heardInAcme.includes(subjectFor('acme', 'gw-a', 'cfg')), { timeout: 10_000 })
      .toBe(true);
    await cloud.flush();
    // The attacker's `>` saw each victim subject once: its own publish inside its account, never the cloud's
    // push (which was sent before the acme control, on the same connection, so it would have arrived first).
    for (const [t, d] of [
      ['globex', 'gw-g'],
      ['acme', 'gw-b'],
    ] as const) {
      expect(heardInAcme.filter((s) => s === subjectFor(t, d, 'cfg'))).toHaveLength(1);
      expect(heardInAcme.filter((s) => s === subjectFor(t, d, 'rcpt'))).toHaveLength(1);
    }
    // The peer got only the cloud's two pushes, nothing the attacker published on its subjects.
    expect(peerHeard).toEqual(['for gw-b', 'for gw-b']);
    // VIGIL heard only the cloud's own pushes (echo), nothing the attacker published.
    expect(heardInVigil.sort()).toEqual([
      subjectFor('acme', 'gw-b', 'cfg'),
      subjectFor('acme', 'gw-b', 'rcpt'),
      subjectFor('globex', 'gw-g', 'cfg'),
      subjectFor('globex', 'gw-g', 'rcpt'),
    ]);
  });
});
