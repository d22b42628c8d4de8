// An authority made before the auth callout (no device auth account) is upgraded by ensureNatsAuthority: the
// device auth account appears, its identity seed joins the offline keys, and the VIGIL device signing key is
// rotated so that a device JWT of the old scheme (a VIGIL user held by the device, never checked against its
// certificate) no longer gets in. Checked against a real nats-server 2.10 running the upgraded fragment.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, type Account } from '@nats-io/jwt';
import { createUser } from '@nats-io/nkeys';
import { connect, jwtAuthenticator } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsConfig, useNats, usePki } from '@vigil/testkit';
import {
  createNatsAuthority,
  deviceInboxPrefix,
  ensureNatsAuthority,
  issueDeviceUser,
  loadNatsAuthority,
  type NatsAuthority,
  type NatsAuthorityFiles,
} from '../src/index.js';

const A = { tenantId: 'acme', deviceId: 'gw-old' };

describe('upgrading a NATS authority made before the auth callout', () => {
  const pki = usePki({ devices: [A], services: [] });
  const dir = mkdtempSync(join(tmpdir(), 'vigil-nats-upgrade-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let legacy: Omit<NatsAuthority, 'deviceAuth'>;
  let oldDeviceJwt: string;
  const oldKey = createUser();
  let files: NatsAuthorityFiles;
  beforeAll(async () => {
    const made = await createNatsAuthority();
    const { deviceAuth: _a, ...authority } = made.authority;
    const { deviceAuth: _o, ...offline } = made.offline;
    legacy = authority;
    // What a device held under the old scheme: a VIGIL user from the device signing key.
    oldDeviceJwt = await issueDeviceUser(made.authority, {
      ...A,
      userPublicKey: oldKey.getPublicKey(),
      expiresInSeconds: 3600,
    });
    writeFileSync(join(dir, 'authority.json'), JSON.stringify(legacy), { mode: 0o600 });
    writeFileSync(join(dir, 'offline-keys.json'), JSON.stringify(offline), { mode: 0o600 });
    expect(() => loadNatsAuthority(join(dir, 'authority.json'))).toThrow(/predates the auth callout/);
    files = await ensureNatsAuthority(dir);
  });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
        jetstream: false,
        extra: readFileSync(files.serverConfigFile, 'utf8'),
      })(ctx),
  });

  it('adds the device auth account, keeps the offline seed, rotates the VIGIL device signing key', async () => {
    expect(files.upgraded).toBe(true);
    const up = loadNatsAuthority(files.authorityFile);
    expect(up.operator.publicKey).toBe(legacy.operator.publicKey);
    expect(up.account.publicKey).toBe(legacy.account.publicKey);
    expect(up.account.deviceSigningKey.publicKey).not.toBe(legacy.account.deviceSigningKey.publicKey);
    const keys = decode<Account>(up.account.jwt).nats.signing_keys ?? [];
    const listed = keys.map((k) => (typeof k === 'string' ? k : k.key));
    // Devices live in DEVICE_<tenant>.<device> accounts now: VIGIL lists no device signing key at all.
    expect(listed).not.toContain(up.account.deviceSigningKey.publicKey);
    expect(listed).not.toContain(legacy.account.deviceSigningKey.publicKey);
    expect(up.tenantAccountSecret).toBeTruthy();
    const da = decode<Account>(up.deviceAuth.jwt).nats.authorization;
    expect(da).toMatchObject({
      auth_users: [up.deviceAuth.calloutUser.publicKey],
    });
    // Any account (one per device, nats-device-auth.ts): the server still places a user only in the account
    // whose own key signed it, and the callout signs only with device account keys.
    expect(da?.allowed_accounts).toEqual(['*']);
    const offline = JSON.parse(readFileSync(files.offlineKeysFile, 'utf8')) as Record<
      string,
      { publicKey: string }
    >;
    expect(offline.deviceAuth?.publicKey).toBe(up.deviceAuth.publicKey);
    expect(offline.operator?.publicKey).toBe(legacy.operator.publicKey);
    // Idempotent: the next run loads what the first wrote.
    const again = await ensureNatsAuthority(dir);
    expect(again.upgraded).toBe(false);
    expect(again.authority.deviceAuth.publicKey).toBe(up.deviceAuth.publicKey);
  });

  it('a device JWT of the old scheme is refused by the server running the upgraded fragment', async () => {
    const dev = pki().devices[`${A.tenantId}/${A.deviceId}`]!;
    const err = await connect({
      servers: [`tls://localhost:${nats().port}`],
      tls: { caFile: pki().caCert, certFile: dev.cert, keyFile: dev.key },
      authenticator: jwtAuthenticator(oldDeviceJwt, oldKey.getSeed()),
      inboxPrefix: deviceInboxPrefix(A.tenantId, A.deviceId),
      reconnect: false,
      timeout: 5_000,
    }).then(
      async (nc) => {
        await nc.close();
        return undefined;
      },
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/authorization/i);
  });
});
