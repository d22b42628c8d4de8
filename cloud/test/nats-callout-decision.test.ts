// The auth callout's decision without NATS: requests are built as nats-server 2.10 builds them (a JWT signed by
// the server's nkey carrying the presented ticket, the nonce and its signature, the verified certificate chain),
// with real device certificates from the dev PKI, and every way to get it wrong is refused with its reason.
import { readFileSync } from 'node:fs';
import { Algorithms, encode, type AuthorizationRequest } from '@nats-io/jwt';
import { createServer, createUser, type KeyPair } from '@nats-io/nkeys';
import { beforeAll, describe, expect, it } from 'vitest';
import { usePki } from '@vigil/testkit';
import {
  admitDevice,
  checkCalloutRequest,
  createNatsAuthority,
  issueDeviceTicket,
  issueDeviceUser,
  type NatsAuthority,
} from '../src/index.js';
import type { CheckedRequest, RegistryRecord } from '../src/fleet/nats-callout-decision.js';

// The dev PKI issues certificates valid from the real now: decide a minute later.
const NOW = new Date(Date.now() + 60_000);
const A = { tenantId: 'acme', deviceId: 'gw-a' };
const B = { tenantId: 'acme', deviceId: 'gw-b' };
const X = { tenantId: 'globex', deviceId: 'gw-a' };

describe('auth callout decision (pure)', () => {
  const pki = usePki({ devices: [A, B, X], services: [] });
  let authority: NatsAuthority;
  const server = createServer();
  const userNkey = createUser().getPublicKey();
  const devKey = createUser();
  const pem = (d: { tenantId: string; deviceId: string }): string =>
    readFileSync(pki().devices[`${d.tenantId}/${d.deviceId}`]!.cert, 'utf8');
  const trust = (): { deviceAuthAccount: string; ticketSigningKey: string } => ({
    deviceAuthAccount: authority.deviceAuth.publicKey,
    ticketSigningKey: authority.deviceAuth.ticketSigningKey.publicKey,
  });
  beforeAll(async () => {
    authority = (await createNatsAuthority()).authority;
  });

  const ticket = (d = A, key: KeyPair = devKey, seconds = 3600, now = NOW): Promise<string> =>
    issueDeviceTicket(authority, { ...d, userPublicKey: key.getPublicKey(), expiresInSeconds: seconds, now });

  interface Build {
    jwt?: string;
    signer?: KeyPair;
    nonce?: string;
    chain?: string[] | undefined;
    serverKey?: KeyPair;
    serverId?: string;
  }
  /** An authorization request as the server sends it. */
  async function request(b: Build = {}): Promise<string> {
    const nonce = b.nonce ?? 'n0nce-from-server';
    const signer = b.signer ?? devKey;
    const sig = Buffer.from(signer.sign(new TextEncoder().encode(nonce))).toString('base64');
    const serverKey = b.serverKey ?? server;
    const nats: AuthorizationRequest & { type: string; version: number } = {
      server_id: {
        name: 's1',
        host: '127.0.0.1',
        id: b.serverId ?? serverKey.getPublicKey(),
        version: '2.10.27',
      },
      user_nkey: userNkey,
      client_info: { host: '127.0.0.1', id: 7, nonce, kind: 'Client', type: 'nats' },
      connect_opts: { jwt: b.jwt ?? (await ticket()), sig, protocol: 1 },
      client_tls:
        b.chain === undefined && 'chain' in b
          ? { version: '1.3' }
          : { verified_chains: [b.chain ?? [pem(A)]] },
      type: 'authorization_request',
      version: 2,
    };
    const claims = { sub: authority.deviceAuth.publicKey, aud: 'nats-authorization-request', jti: 'x', nats };
    return encode(Algorithms.v2, claims as never, serverKey);
  }
  const reasonOf = async (b: Build, now = NOW): Promise<string> => {
    const r = checkCalloutRequest(await request(b), trust(), now);
    return r.ok ? 'ok' : r.reason;
  };

  it('admits a ticket whose nonce is signed with its seed and whose certificate names the same device', async () => {
    const r = checkCalloutRequest(await request(), trust(), NOW);
    expect(r).toMatchObject({
      ok: true,
      request: { ...A, userNkey, serverId: server.getPublicKey(), ticketKey: devKey.getPublicKey() },
    });
  });

  it('refuses mismatched certificates: another device, the same device id in another tenant, none', async () => {
    expect(await reasonOf({ chain: [pem(B)] })).toBe('certificate_mismatch');
    expect(await reasonOf({ chain: [pem(X)] })).toBe('certificate_mismatch');
    expect(await reasonOf({ jwt: await ticket(X), chain: [pem(A)] })).toBe('certificate_mismatch');
    expect(await reasonOf({ chain: undefined })).toBe('no_certificate');
    expect(await reasonOf({ chain: ['not a pem'] })).toBe('no_certificate');
  });

  it('refuses tickets not issued by the ticket key, expired ones, and a nonce signed by another seed', async () => {
    // A VIGIL device user (the callout's own output) is not a ticket.
    const vigilUser = await issueDeviceUser(authority, {
      ...A,
      userPublicKey: devKey.getPublicKey(),
      expiresInSeconds: 3600,
      now: NOW,
    });
    expect(await reasonOf({ jwt: vigilUser })).toBe('ticket_invalid');
    const foreign = (await createNatsAuthority()).authority;
    const foreignTicket = await issueDeviceTicket(foreign, {
      ...A,
      userPublicKey: devKey.getPublicKey(),
      expiresInSeconds: 3600,
      now: NOW,
    });
    expect(await reasonOf({ jwt: foreignTicket })).toBe('ticket_invalid');
    expect(await reasonOf({ jwt: 'eyJhbGciOiJub25lIn0.e30.' })).toBe('ticket_invalid');
    const t = await ticket(A, devKey, 60);
    expect(await reasonOf({ jwt: t }, new Date(NOW.getTime() + 61_000))).toBe('ticket_expired');
    expect(await reasonOf({ signer: createUser() })).toBe('nonce_signature');
  });

  it('refuses a request not signed by the server it names, and garbage', async () => {
    expect(await reasonOf({ serverKey: createServer(), serverId: server.getPublicKey() })).toBe(
      'bad_request',
    );
    expect(checkCalloutRequest('garbage', trust(), NOW)).toMatchObject({ ok: false, reason: 'bad_request' });
    expect(checkCalloutRequest('garbage', trust(), NOW)).not.toHaveProperty('to');
  });

  describe('registry step', () => {
    const req = (over: Partial<CheckedRequest> = {}): CheckedRequest => ({
      serverId: server.getPublicKey(),
      userNkey,
      ...A,
      ticketKey: devKey.getPublicKey(),
      ticketIssuedAt: new Date(NOW.getTime() - 60_000),
      ticketExpiresAt: new Date(NOW.getTime() + 3600_000),
      certSerial: 'AB',
      certNotAfter: new Date(NOW.getTime() + 1800_000),
      ...over,
    });
    const rec = (
      over: Partial<NonNullable<RegistryRecord['certificate']>> = {},
      extra: Partial<RegistryRecord> = {},
    ): RegistryRecord => ({
      certificate: {
        ...A,
        notAfter: new Date(NOW.getTime() + 1800_000),
        revokedAt: null,
        deviceRevokedAt: null,
        ...over,
      },
      keyIssuedToDevice: true,
      keyRevokedAt: null,
      ...extra,
    });
    const reason = (r: ReturnType<typeof admitDevice>): string => (r.ok ? 'ok' : r.reason);

    it('admits until the earliest of ticket and certificate expiry', () => {
      expect(admitDevice(req(), rec(), NOW)).toEqual({
        ok: true,
        expiresAt: new Date(NOW.getTime() + 1800_000),
      });
      const early = req({ ticketExpiresAt: new Date(NOW.getTime() + 600_000) });
      expect(admitDevice(early, rec(), NOW)).toEqual({
        ok: true,
        expiresAt: new Date(NOW.getTime() + 600_000),
      });
    });

    it('refuses unknown, foreign, revoked and expired certificates, revoked devices and keys', () => {
      expect(reason(admitDevice(req(), { ...rec(), certificate: undefined }, NOW))).toBe(
        'certificate_unknown',
      );
      expect(reason(admitDevice(req(), rec({ deviceId: 'gw-b' }), NOW))).toBe('certificate_mismatch');
      expect(reason(admitDevice(req(), rec({ tenantId: 'globex' }), NOW))).toBe('certificate_mismatch');
      expect(reason(admitDevice(req(), rec({ revokedAt: NOW }), NOW))).toBe('certificate_revoked');
      expect(reason(admitDevice(req(), rec({ deviceRevokedAt: NOW }), NOW))).toBe('device_revoked');
      expect(reason(admitDevice(req(), rec({ notAfter: NOW }), NOW))).toBe('certificate_expired');
      expect(reason(admitDevice(req(), rec({}, { keyIssuedToDevice: false }), NOW))).toBe('key_unknown');
      expect(reason(admitDevice(req(), rec({}, { keyRevokedAt: NOW }), NOW))).toBe('key_revoked');
      // A ticket issued after its key's revocation (the key issued anew) is not revoked by it.
      const old = new Date(NOW.getTime() - 3600_000);
      expect(reason(admitDevice(req(), rec({}, { keyRevokedAt: old }), NOW))).toBe('ok');
    });
  });
});
