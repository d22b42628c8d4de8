// Issue 12, finding 2: a NATS user key belongs to one device in the whole fleet. An installer of tenant A
// must not enroll (or renew) a device with tenant B's gateway key (public: it is the `sub` of B's JWT), and
// then revoke it to cut B off. Real gRPC server, real NATS in JWT mode with mTLS, real PostgreSQL.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { decode } from '@nats-io/jwt';
import { createUser, type KeyPair } from '@nats-io/nkeys';
import { connect, jwtAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import type {
  DeviceServiceClient,
  EnrollRequest,
  EnrollResponse,
  RenewRequest,
  RenewResponse,
} from '@vigil/proto';
import { useFleetStack } from './support/fleet-stack.js';

const tmp = mkdtempSync(join(tmpdir(), 'vigil-natskey-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function csr(cn: string, keyPem: string): string {
  const keyFile = join(tmp, `${cn}-${Math.random().toString(36).slice(2)}.key`);
  writeFileSync(keyFile, keyPem, { mode: 0o600 });
  return execFileSync('openssl', ['req', '-new', '-key', keyFile, '-subj', `/CN=${cn}`, '-sha256'], {
    encoding: 'utf8',
  });
}
function newKeyPem(): string {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
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
  const r = await p.then(
    () => undefined,
    (err: unknown) => err as GrpcError,
  );
  if (r === undefined) throw new Error('expected the call to be refused, but it succeeded');
  return r;
}

describe('NATS keys are unique across devices (issue 12, finding 2)', () => {
  const stack = useFleetStack();
  interface Enrolled {
    res: EnrollResponse;
    keyPem: string;
    nkey: KeyPair;
  }
  const enrollReq = (token: string, deviceId: string, keyPem: string, natsKey: string): EnrollRequest => ({
    token,
    csrPem: csr(deviceId, keyPem),
    agentVersion: '0.1.0',
    hardwareId: '',
    natsPublicKey: natsKey,
  });
  async function enroll(tenant: string, site: string, deviceId: string): Promise<Enrolled> {
    const keyPem = newKeyPem();
    const nkey = createUser();
    const token = await stack.enrollmentToken(tenant, site);
    const res = await call<EnrollRequest, EnrollResponse>(
      stack.client(),
      'enroll',
      enrollReq(token, deviceId, keyPem, nkey.getPublicKey()),
    );
    return { res, keyPem, nkey };
  }
  const open: NatsConnection[] = [];
  afterAll(async () => {
    for (const nc of open) await nc.close().catch(() => undefined);
  });
  async function dialNats(d: Enrolled): Promise<NatsConnection> {
    const certFile = join(tmp, `${d.res.deviceId}-${Math.random().toString(36).slice(2)}.crt`);
    writeFileSync(certFile, d.res.certificatePem);
    writeFileSync(`${certFile}.key`, d.keyPem, { mode: 0o600 });
    const nc = await connect({
      servers: [stack.natsUrl()],
      tls: { caFile: stack.pki().caCert, certFile, keyFile: `${certFile}.key` },
      authenticator: jwtAuthenticator(d.res.natsUserJwt, d.nkey.getSeed()),
      inboxPrefix: `_INBOX_${d.res.tenantId}.${d.res.deviceId}`,
      reconnect: false,
      timeout: 5_000,
    });
    open.push(nc);
    return nc;
  }
  const metric = async (method: string, result: string): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${stack.cloud().httpPort}/metrics`)).text();
    const m = new RegExp(
      `vigil_cloud_identity_requests_total\\{method="${method}",result="${result}"\\} (\\d+)`,
    ).exec(text);
    return m ? Number(m[1]) : 0;
  };

  it("refuses to enroll a device of tenant A with tenant B's gateway key; B stays connected and unrevoked", async () => {
    const victim = await enroll('globex', 'plant', 'gw-victim');
    const victimNats = await dialNats(victim);
    await victimNats.flush();
    // The attacker reads the key from B's JWT (it is not a secret).
    const stolenKey = decode(victim.res.natsUserJwt).sub;
    expect(stolenKey).toBe(victim.nkey.getPublicKey());

    const token = await stack.enrollmentToken('acme', 'hq');
    const e = await refusal(
      call(stack.client(), 'enroll', enrollReq(token, 'gw-thief', newKeyPem(), stolenKey)),
    );
    expect(e.code).toBe(grpc.status.ALREADY_EXISTS);
    expect(e.details).toMatch(/nats_public_key is already bound to another device/);
    // The refusal names no tenant or device.
    expect(e.details).not.toMatch(/globex|gw-victim/);
    expect(await metric('enroll', 'NATS_KEY_IN_USE')).toBe(1);
    // Nothing was made: no device, no certificate; the token is still usable.
    const made = await stack
      .cloud()
      .db.selectFrom('devices')
      .select('id')
      .where('id', '=', 'gw-thief')
      .execute();
    expect(made).toEqual([]);
    const ok = await call<EnrollRequest, EnrollResponse>(
      stack.client(),
      'enroll',
      enrollReq(token, 'gw-thief', newKeyPem(), createUser().getPublicKey()),
    );
    expect(ok.deviceId).toBe('gw-thief');
    // Revoking the attacker's own device does not touch B.
    const res = await stack.api('/v1/devices/gw-thief/revoke', await stack.token('acme', ['admin']), {
      method: 'POST',
      body: JSON.stringify({ reason: 'test' }),
    });
    expect(res.status).toBe(200);
    await victimNats.flush();
    expect(victimNats.isClosed()).toBe(false);
    const again = await dialNats(victim);
    await again.flush();
    const b = await stack
      .cloud()
      .db.selectFrom('devices')
      .select(['revoked_at', 'nats_public_key'])
      .where('tenant_id', '=', 'globex')
      .where('id', '=', 'gw-victim')
      .executeTakeFirstOrThrow();
    expect(b).toEqual({ revoked_at: null, nats_public_key: stolenKey });
  });

  it("refuses a renewal that rebinds a device to another device's key; rotation to a fresh key works", async () => {
    const victim = await enroll('globex', 'plant', 'gw-victim-2');
    const thief = await enroll('acme', 'hq', 'gw-renewer');
    const mtls = stack.client({ certPem: thief.res.certificatePem, keyPem: thief.keyPem });
    const before = await metric('renew', 'NATS_KEY_IN_USE');
    const e = await refusal(
      call(mtls, 'renew', {
        csrPem: csr('gw-renewer', thief.keyPem),
        natsPublicKey: victim.nkey.getPublicKey(),
      }),
    );
    expect(e.code).toBe(grpc.status.ALREADY_EXISTS);
    expect(e.details).toMatch(/nats_public_key is already bound to another device/);
    expect(await metric('renew', 'NATS_KEY_IN_USE')).toBe(before + 1);
    const certs = await stack
      .cloud()
      .db.selectFrom('device_certificates')
      .select('nats_public_key')
      .where('device_id', '=', 'gw-renewer')
      .execute();
    expect(certs).toEqual([{ nats_public_key: thief.nkey.getPublicKey() }]);

    // A fresh key nobody holds: the renewed JWT is bound to it, and the registry says so.
    const fresh = createUser();
    const renewed = await call<RenewRequest, RenewResponse>(mtls, 'renew', {
      csrPem: csr('gw-renewer', thief.keyPem),
      natsPublicKey: fresh.getPublicKey(),
    });
    expect(decode(renewed.natsUserJwt).sub).toBe(fresh.getPublicKey());
    const row = await stack
      .cloud()
      .db.selectFrom('devices')
      .select('nats_public_key')
      .where('tenant_id', '=', 'acme')
      .where('id', '=', 'gw-renewer')
      .executeTakeFirstOrThrow();
    expect(row.nats_public_key).toBe(fresh.getPublicKey());
  });

  it('holds in the database too: two active devices cannot share a key, even when a write skips the check', async () => {
    const a = await enroll('acme', 'hq', 'gw-db-a');
    await enroll('globex', 'plant', 'gw-db-b');
    const err = await stack
      .cloud()
      .db.updateTable('devices')
      .set({ nats_public_key: a.nkey.getPublicKey() })
      .where('tenant_id', '=', 'globex')
      .where('id', '=', 'gw-db-b')
      .execute()
      .then(
        () => undefined,
        (x: unknown) => x as { code?: string; constraint?: string },
      );
    expect(err?.code).toBe('23505');
    expect(err?.constraint).toBe('devices_nats_public_key_active');
  });

  it('lets exactly one of two concurrent enrollments with the same fresh key win', async () => {
    const key = createUser().getPublicKey();
    const [t1, t2] = await Promise.all([
      stack.enrollmentToken('acme', 'hq'),
      stack.enrollmentToken('globex', 'plant'),
    ]);
    const results = await Promise.allSettled([
      call(stack.client(), 'enroll', enrollReq(t1, 'gw-race-1', newKeyPem(), key)),
      call(stack.client(), 'enroll', enrollReq(t2, 'gw-race-2', newKeyPem(), key)),
    ]);
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as GrpcError] : []));
    expect(ok).toHaveLength(1);
    expect(refused).toHaveLength(1);
    expect(refused[0]!.code).toBe(grpc.status.ALREADY_EXISTS);
  });
});
