import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, inspectCsr, issueServerCert, type CertKeyPem } from '@vigil/certs';
import {
  DeviceServiceDefinition,
  type DeviceServiceServer,
  type EnrollRequest,
  type EnrollResponse,
  type RenewRequest,
} from '@vigil/proto';
import { enroll, IdentityError, IdentityStore, renew, type DeviceIdentity } from '../src/identity/index.js';
import { deviceIdFromHostname, runEnrollCommand } from '../src/identity/enroll-command.js';
import { fakeUserJwt, fleetCa, signFor, tempDir } from './helpers/identity-fixtures.js';

// The gRPC client against a stand-in DeviceService, written here only because this unit test needs the
// contract's status codes on demand (the cloud's own tests cover the real service). Two ports: Enroll over
// server-authenticated TLS, and one that requires a client certificate, as Renew is called.

const NATS_URLS = ['tls://nats.example:4222'];
const GOOD = 'good-token';

interface Seen {
  enroll: EnrollRequest[];
  renew: Array<{ req: RenewRequest; peerCn: string | undefined }>;
}

function fail(code: grpc.status, details: string): Partial<grpc.ServiceError> {
  return { code, details };
}

function fakeCloud(
  ca: CertKeyPem,
  seen: Seen,
  taken: Set<string>,
  revoked: Set<string>,
): DeviceServiceServer {
  return {
    fetchModel: (call) => call.end(),
    fetchRelease: (call) => call.end(),
    enroll: (call, cb) => {
      const req = call.request;
      seen.enroll.push(req);
      const cn = inspectCsr(req.csrPem).commonName ?? '';
      if (req.token === 'slow-token')
        return void setTimeout(() => cb(fail(grpc.status.INTERNAL, 'late')), 3_000);
      if (req.token !== GOOD && req.token !== 'evil-token')
        return cb(fail(grpc.status.UNAUTHENTICATED, 'enrollment token invalid, expired or used'));
      if (!req.natsPublicKey.startsWith('U')) return cb(fail(grpc.status.INVALID_ARGUMENT, 'bad nkey'));
      if (taken.has(cn)) return cb(fail(grpc.status.ALREADY_EXISTS, `device id "${cn}" is already enrolled`));
      // evil-token: a certificate for somebody else's key (the client must refuse to store it).
      const csr = req.token === 'evil-token' ? seen.enroll[0]!.csrPem : req.csrPem;
      const res: EnrollResponse = {
        deviceId: cn,
        tenantId: 'acme',
        siteId: 'hq',
        certificatePem: signFor(csr, { ids: { tenantId: 'acme', siteId: 'hq', deviceId: cn }, ca }),
        caChainPem: [ca.certPem],
        natsUrls: NATS_URLS,
        natsUserJwt: fakeUserJwt(req.natsPublicKey),
        notAfter: new Date(Date.now() + 30 * 86_400_000),
        configSigningJwks: '',
      };
      cb(null, res);
    },
    renew: (call, cb) => {
      const req = call.request;
      const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
      const peerCn = raw ? /^CN=(.*)$/m.exec(new X509Certificate(raw).subject)?.[1] : undefined;
      seen.renew.push({ req, peerCn });
      if (!peerCn) return cb(fail(grpc.status.UNAUTHENTICATED, 'client certificate required'));
      if (revoked.has(peerCn)) return cb(fail(grpc.status.PERMISSION_DENIED, 'device revoked'));
      if (inspectCsr(req.csrPem).commonName !== peerCn) return cb(fail(grpc.status.INVALID_ARGUMENT, 'CN'));
      cb(null, {
        certificatePem: signFor(req.csrPem, {
          ids: { tenantId: 'acme', siteId: 'hq', deviceId: peerCn },
          ca,
        }),
        caChainPem: [ca.certPem],
        natsUserJwt: fakeUserJwt(req.natsPublicKey),
        notAfter: new Date(Date.now() + 30 * 86_400_000),
        configSigningJwks: '',
      });
    },
  };
}

async function listen(
  impl: DeviceServiceServer,
  creds: grpc.ServerCredentials,
): Promise<[grpc.Server, number]> {
  const server = new grpc.Server();
  server.addService(DeviceServiceDefinition, impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return [server, port];
}

async function rejection(p: Promise<unknown>): Promise<IdentityError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IdentityError);
  return err as IdentityError;
}

describe('identity gRPC client and vigil-agent enroll', () => {
  const ca = fleetCa();
  const tmp = tempDir('identity-client');
  const caFile = join(tmp.dir, 'fleet-ca.pem');
  const seen: Seen = { enroll: [], renew: [] };
  const taken = new Set(['taken-gw']);
  const revoked = new Set<string>();
  const servers: grpc.Server[] = [];
  let tlsPort = 0;
  let mtlsPort = 0;
  let identity: DeviceIdentity;
  const io = {
    lines: [] as string[],
    out: (l: string) => void io.lines.push(l),
    err: (l: string) => void io.lines.push(l),
  };
  const cmd = (argv: string[]) => {
    io.lines = [];
    return runEnrollCommand(argv, io, { hostname: () => 'Lobby-GW.local', hardwareId: () => 'hw-123' });
  };

  beforeAll(async () => {
    writeFileSync(caFile, ca.certPem);
    const server = issueServerCert(ca, {
      commonName: 'cloud-api',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
    });
    const pair = { private_key: Buffer.from(server.keyPem), cert_chain: Buffer.from(server.certPem) };
    const impl = fakeCloud(ca, seen, taken, revoked);
    const [a, p1] = await listen(
      impl,
      grpc.ServerCredentials.createSsl(Buffer.from(ca.certPem), [pair], false),
    );
    const [b, p2] = await listen(
      impl,
      grpc.ServerCredentials.createSsl(Buffer.from(ca.certPem), [pair], true),
    );
    servers.push(a, b);
    tlsPort = p1;
    mtlsPort = p2;
  });
  afterAll(() => {
    for (const s of servers) s.forceShutdown();
    tmp.cleanup();
  });

  it('enrolls: keys made here, identity stored, what it got printed with the next step', async () => {
    const dataDir = join(tmp.dir, 'data');
    const code = await cmd([
      '--cloud',
      `localhost:${tlsPort}`,
      '--token',
      GOOD,
      '--ca-file',
      caFile,
      '--data-dir',
      dataDir,
    ]);
    expect(io.lines.join('\n')).toContain('enrolled device lobby-gw-local (tenant acme, site hq)');
    expect(code).toBe(0);
    const req = seen.enroll.at(-1)!;
    expect(req).toMatchObject({ token: GOOD, hardwareId: 'hw-123', agentVersion: '0.1.0' });
    expect(req.natsPublicKey).toMatch(/^U[A-Z2-7]{55}$/);
    expect(inspectCsr(req.csrPem)).toMatchObject({ commonName: 'lobby-gw-local', requestsAttributes: false });

    const loaded = new IdentityStore(join(dataDir, 'identity')).load()!;
    expect(loaded).toMatchObject({
      deviceId: 'lobby-gw-local',
      tenantId: 'acme',
      siteId: 'hq',
      natsUrls: NATS_URLS,
    });
    expect(loaded.grpcEndpoint).toBe(`localhost:${tlsPort}`);
    expect(loaded.natsPublicKey).toBe(req.natsPublicKey);
    const out = io.lines.join('\n');
    expect(out).toContain(`valid until ${loaded.notAfter.toISOString()}`);
    expect(out).toContain(NATS_URLS[0]);
    expect(out).toContain(join(dataDir, 'identity'));
    expect(out).toMatch(/next: start the agent/);
    identity = loaded;

    // Enrolled already: refused without --force, replaced with it.
    expect(
      await cmd([
        '--cloud',
        `localhost:${tlsPort}`,
        '--token',
        GOOD,
        '--ca-file',
        caFile,
        '--data-dir',
        dataDir,
      ]),
    ).toBe(1);
    expect(io.lines.join('\n')).toMatch(/already holds the identity of device lobby-gw-local .*--force/s);
    const again = [
      '--cloud',
      `localhost:${tlsPort}`,
      '--ca-file',
      caFile,
      '--data-dir',
      dataDir,
      '--device-id',
      'gw-2',
    ];
    expect(await runEnrollCommand([...again, '--force'], io, { env: { VIGIL_ENROLL_TOKEN: GOOD } })).toBe(0);
    expect(new IdentityStore(join(dataDir, 'identity')).load()?.deviceId).toBe('gw-2');
  });

  it('maps UNAUTHENTICATED to ENROLL_TOKEN_INVALID with what to do, and other refusals likewise', async () => {
    const base = {
      endpoint: `localhost:${tlsPort}`,
      caPem: ca.certPem,
      hardwareId: '',
      agentVersion: '0.1.0',
    };
    const bad = await rejection(enroll({ ...base, token: 'used-token', deviceId: 'gw-3' }));
    expect(bad.code).toBe('ENROLL_TOKEN_INVALID');
    expect(bad.retryable).toBe(false);
    expect(bad.message).toMatch(/unknown, expired or already used.*enroll-token create/);
    const exists = await rejection(enroll({ ...base, token: GOOD, deviceId: 'taken-gw' }));
    expect(exists.code).toBe('DEVICE_EXISTS');
    expect(exists.message).toMatch(/another --device-id/);
    const evil = await rejection(enroll({ ...base, token: 'evil-token', deviceId: 'gw-4' }));
    expect(evil.code).toBe('CLOUD_RESPONSE_INVALID');
    expect(evil.message).toMatch(/does not match the private key.*nothing was stored/);
    const slow = await rejection(enroll({ ...base, token: 'slow-token', deviceId: 'gw-5', deadlineMs: 300 }));
    expect(slow.code).toBe('CLOUD_UNAVAILABLE');
    expect(slow.retryable).toBe(true);

    const dataDir = join(tmp.dir, 'data-bad');
    expect(
      await cmd([
        '--cloud',
        `localhost:${tlsPort}`,
        '--token',
        'x',
        '--ca-file',
        caFile,
        '--data-dir',
        dataDir,
      ]),
    ).toBe(1);
    expect(io.lines.join('\n')).toMatch(/enrollment token/);
    expect(new IdentityStore(join(dataDir, 'identity')).exists()).toBe(false);
  });

  it('says when the cloud cannot be reached or its certificate is not from the given CA', async () => {
    const other = createCa({ commonName: 'Some Other CA' });
    // Both fail at once; the deadline only must not come first on a loaded machine (it would replace the
    // precise reason with "deadline exceeded").
    const base = { token: GOOD, deviceId: 'gw-6', hardwareId: '', agentVersion: '0.1.0', deadlineMs: 15_000 };
    const wrongCa = await rejection(
      enroll({ ...base, endpoint: `localhost:${tlsPort}`, caPem: other.certPem }),
    );
    expect(wrongCa.code).toBe('CLOUD_UNAVAILABLE');
    expect(wrongCa.message).toMatch(/TLS handshake .* failed .*--ca-file is the fleet CA/);
    const closed = await rejection(enroll({ ...base, endpoint: 'localhost:1', caPem: ca.certPem }));
    expect(closed.code).toBe('CLOUD_UNAVAILABLE');
    expect(closed.message).toMatch(/cannot reach the cloud at localhost:1 \(UNAVAILABLE: .*ECONNREFUSED/);
  });

  it('vigil-agent enroll says in one line what failed and what to do, without repeating itself', async () => {
    const dataDir = join(tmp.dir, 'data-one-line');
    const args = (cloud: string, token: string) => [
      ...['--cloud', cloud, '--token', token, '--ca-file', caFile, '--data-dir', dataDir],
    ];
    const count = (text: string, what: RegExp) => text.match(new RegExp(what.source, 'g'))?.length ?? 0;

    // The progress line, then the error.
    expect(await cmd(args(`localhost:${tlsPort}`, 'used-token'))).toBe(1);
    expect(io.lines).toHaveLength(2);
    expect(io.lines[0]).toMatch(/^enrolling lobby-gw-local with localhost:\d+ \.\.\.$/);
    const refused = io.lines[1]!;
    expect(refused).not.toContain('\n');
    expect(refused).toMatch(
      /^vigil-agent enroll failed: the cloud refused the enrollment token \(unknown, expired or already used\)\. Ask an admin for a new one \(pnpm vigil enroll-token create --site <site>\) and run enroll again with it$/,
    );
    expect(count(refused, /enroll:/)).toBe(0);
    expect(count(refused, /expired or/)).toBe(1); // the cloud's own "invalid, expired or used" is not repeated

    expect(await cmd(args('localhost:1', GOOD))).toBe(1);
    expect(io.lines).toHaveLength(2);
    const down = io.lines[1]!;
    expect(down).not.toContain('\n');
    expect(down).toMatch(/^vigil-agent enroll failed: cannot reach the cloud at localhost:1 \(UNAVAILABLE: /);
    expect(count(down, /try again|run the same command again/)).toBe(1);
  });

  it('renews over mutual TLS, presenting the device certificate, with fresh keys', async () => {
    const issued = await renew(identity, { endpoint: `localhost:${mtlsPort}` });
    expect(seen.renew.at(-1)!.peerCn).toBe('lobby-gw-local');
    expect(issued.info).toMatchObject({ deviceId: 'lobby-gw-local', tenantId: 'acme', natsUrls: NATS_URLS });
    expect(issued.info.renewedAt).toBeInstanceOf(Date);
    expect(issued.info.enrolledAt).toEqual(identity.enrolledAt);
    expect(issued.material.keyPem).not.toBe(identity.material.keyPem);
    expect(issued.material.natsSeed).not.toBe(identity.material.natsSeed);
    const saved = new IdentityStore(join(tmp.dir, 'renewed')).save(issued.info, issued.material);
    expect(saved.natsPublicKey).toBe(seen.renew.at(-1)!.req.natsPublicKey);

    // Without a client certificate (a port that does not ask for one) the cloud answers UNAUTHENTICATED.
    const noCert = await rejection(renew(identity, { endpoint: `localhost:${tlsPort}` }));
    expect(noCert.code).toBe('CERT_REJECTED');
    expect(noCert.message).toMatch(/vigil-agent enroll --force/);
    revoked.add('lobby-gw-local');
    const gone = await rejection(renew(identity, { endpoint: `localhost:${mtlsPort}` }));
    expect(gone.code).toBe('DEVICE_REVOKED');
    expect(gone.retryable).toBe(false);
  });

  it('derives the device id from the host name', () => {
    expect(deviceIdFromHostname('Lobby-GW.local')).toBe('lobby-gw-local');
    expect(deviceIdFromHostname('_Cam Hub 7')).toBe('cam-hub-7');
    expect(deviceIdFromHostname('---')).toBeUndefined();
    expect(deviceIdFromHostname('a'.repeat(80))).toBe('a'.repeat(63));
  });

  it('rejects bad usage with exit code 64 and the help', async () => {
    expect(await cmd(['--help'])).toBe(0);
    expect(io.lines.join('\n')).toMatch(/Usage: vigil-agent enroll/);
    expect(await cmd(['--cloud', 'x:1', '--ca-file', caFile, '--data-dir', tmp.dir])).toBe(64);
    expect(io.lines.join('\n')).toMatch(/missing --token/);
    const bad = ['--cloud', 'x:1', '--token', 't', '--ca-file', caFile, '--data-dir', tmp.dir];
    expect(await cmd([...bad, '--device-id', 'Bad.Id'])).toBe(64);
    expect(io.lines.join('\n')).toMatch(/invalid device id "Bad\.Id"/);
    expect(await cmd([...bad, '--config', 'agent.json'])).toBe(64);
    expect(await cmd([...bad, '--bogus'])).toBe(64);
    expect(
      await cmd(['--cloud', 'no-port', '--token', 't', '--ca-file', caFile, '--data-dir', tmp.dir]),
    ).toBe(64);
  });
});
