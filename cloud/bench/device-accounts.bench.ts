// What per-device NATS accounts cost (issue 12; fleet/DEVICES-ACCOUNT.md): the time to sign and push one
// DEVICE_<tenant>.<device> account JWT the way the callout's ensureDevice does, and nats-server's RSS once N
// devices are connected, each in its own account, against the same N connections in ONE account (what the
// per-tenant accounts were). One real nats-server 2.10 per scenario (operator mode, full resolver, JetStream on;
// no TLS: the handshake costs the same in both scenarios and is not what is measured here).
//   node --conditions=@vigil/source --import tsx cloud/bench/device-accounts.bench.ts [--devices 1000]
// Prints ONE JSON document on stdout; progress on stderr. Not an idle-machine benchmark: the load average is
// printed with the figures.
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { encodeAccount, encodeUser } from '@nats-io/jwt';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Kysely } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { natsConfig, NatsServer } from '@vigil/testkit';
import { DEVICE_INBOX_ROOT, subjectFor } from '@vigil/proto';
import { NatsAccountPublisher } from '../src/fleet/nats-account.js';
import {
  createNatsAuthority,
  issueSystemUser,
  natsServerAuthConfig,
  pushAccountJwt,
  type NatsAuthority,
} from '../src/fleet/nats-auth.js';
import { deviceAccountKeys, issueAccountDeviceUser } from '../src/fleet/nats-device-accounts.js';
import { nativeKeyPair, nkeyFromRawSeed } from '../src/fleet/nkey-crypto.js';
import type { Database } from '../src/storage/tables.js';

const { values } = parseArgs({ options: { devices: { type: 'string', default: '1000' } } });
const N = Number(values.devices);
const log = (m: string): void => void process.stderr.write(`[device-accounts] ${m}\n`);

interface Rss {
  mib: number;
}
async function rss(server: NatsServer): Promise<Rss> {
  const v = (await (await fetch(`http://127.0.0.1:${server.httpPort}/varz`)).json()) as { mem: number };
  return { mib: Math.round((v.mem / 1048576) * 10) / 10 };
}

/** A user nkey made with OpenSSL, and an authenticator signing the server nonce with it (as nats.js does). */
function userCreds(jwtFor: (publicKey: string) => Promise<string>): Promise<{
  authenticator: (nonce?: string) => { jwt: string; nkey: string; sig: string };
}> {
  const k = nkeyFromRawSeed(randomBytes(32), 20 << 3);
  const kp = nativeKeyPair(k.seed);
  return jwtFor(k.publicKey).then((jwt) => ({
    authenticator: (nonce?: string) => ({
      jwt,
      nkey: k.publicKey,
      sig: nonce ? Buffer.from(kp.sign(new TextEncoder().encode(nonce))).toString('base64url') : '',
    }),
  }));
}

async function startServer(authority: NatsAuthority): Promise<NatsServer> {
  const server = new NatsServer({
    config: natsConfig({ jetstream: true, extra: natsServerAuthConfig(authority) }),
  });
  await server.start();
  return server;
}

async function systemConnection(authority: NatsAuthority, server: NatsServer): Promise<NatsConnection> {
  return connect({
    servers: [server.url],
    ...(await userCreds((pk) => issueSystemUser(authority, { name: 'bench', userPublicKey: pk }))),
  });
}

/** Connects one device of `account` and subscribes it as the agent does (cfg, rcpt, its inbox). */
async function connectDevice(
  url: string,
  jwtFor: (publicKey: string) => Promise<string>,
  d: string,
): Promise<NatsConnection> {
  const nc = await connect({ servers: [url], ...(await userCreds(jwtFor)), reconnect: false });
  for (const s of [subjectFor('bench', d, 'cfg'), subjectFor('bench', d, 'rcpt')]) nc.subscribe(s);
  nc.subscribe(`${DEVICE_INBOX_ROOT}.bench.${d}.>`);
  return nc;
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 100) / 100;
};

async function perDevice(authority: NatsAuthority): Promise<Record<string, unknown>> {
  const server = await startServer(authority);
  const sys = await systemConnection(authority, server);
  const conns: NatsConnection[] = [];
  try {
    const before = await rss(server);
    // The production path: NatsAccountPublisher.ensureDevice (derive keys, sign, push, wait for the answer).
    // It touches no database; the fixed accounts are preloaded by the config.
    const pub = new NatsAccountPublisher(
      undefined as unknown as Kysely<Database>,
      authority,
      sys,
      pino({ level: 'silent' }),
      new Registry(),
    );
    const ms: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const t = performance.now();
      await pub.ensureDevice('bench', `gw-${i}`);
      ms.push(performance.now() - t);
    }
    const totalS = (performance.now() - t0) / 1000;
    log(`pushed ${N} device accounts in ${totalS.toFixed(2)} s`);
    // A second ensureDevice of a known device is a set lookup (what every later connection costs).
    const t1 = performance.now();
    for (let i = 0; i < N; i++) await pub.ensureDevice('bench', `gw-${i}`);
    const cachedUs = ((performance.now() - t1) * 1000) / N;
    const afterPush = await rss(server);
    const tc = performance.now();
    for (let i = 0; i < N; i++) {
      const d = `gw-${i}`;
      conns.push(
        await connectDevice(
          server.url,
          (pk) =>
            issueAccountDeviceUser(authority, {
              tenantId: 'bench',
              deviceId: d,
              userPublicKey: pk,
              exp: Math.floor(Date.now() / 1000) + 3600,
            }),
          d,
        ),
      );
    }
    await Promise.all(conns.map((c) => c.flush()));
    const connectS = (performance.now() - tc) / 1000;
    log(`connected ${N} devices (one account each) in ${connectS.toFixed(1)} s`);
    const connected = await rss(server);
    return {
      pushMs: { total: Math.round(totalS * 1000), p50: pct(ms, 50), p99: pct(ms, 99), max: pct(ms, 100) },
      ensureDeviceKnownUs: Math.round(cachedUs * 10) / 10,
      rssMiB: { start: before.mib, afterPush: afterPush.mib, connected: connected.mib },
      connectSeconds: Math.round(connectS * 10) / 10,
    };
  } finally {
    for (const c of conns) await c.close().catch(() => undefined);
    await sys.close().catch(() => undefined);
    await server.stop();
  }
}

/** The same N connections and subscriptions in ONE account (what per-tenant accounts were). */
async function oneAccount(authority: NatsAuthority): Promise<Record<string, unknown>> {
  const server = await startServer(authority);
  const sys = await systemConnection(authority, server);
  const conns: NatsConnection[] = [];
  try {
    const before = await rss(server);
    const id = nkeyFromRawSeed(randomBytes(32), 0);
    const idKp = nativeKeyPair(id.seed);
    const jwt = await encodeAccount(
      'BENCH_ONE',
      id.publicKey,
      {
        limits: {
          subs: -1,
          data: -1,
          payload: -1,
          imports: -1,
          exports: -1,
          wildcards: true,
          conn: -1,
          leaf: 0,
        },
      },
      { signer: nativeKeyPair(authority.operator.signingKey.seed) },
    );
    await pushAccountJwt(sys, { account: { publicKey: id.publicKey, jwt } });
    for (let i = 0; i < N; i++)
      conns.push(
        await connectDevice(
          server.url,
          (pk) =>
            encodeUser(
              `bench/gw-${i}`,
              pk,
              idKp,
              {},
              { signer: idKp, exp: Math.floor(Date.now() / 1000) + 3600 },
            ),
          `gw-${i}`,
        ),
      );
    await Promise.all(conns.map((c) => c.flush()));
    const connected = await rss(server);
    return { rssMiB: { start: before.mib, connected: connected.mib } };
  } finally {
    for (const c of conns) await c.close().catch(() => undefined);
    await sys.close().catch(() => undefined);
    await server.stop();
  }
}

const { authority } = await createNatsAuthority({ maxUserLifetimeSeconds: 86_400 });
// Derivation alone (two HMACs, two OpenSSL key derivations, one signer), fresh ids so nothing is cached.
const td = performance.now();
for (let i = 0; i < N; i++) deviceAccountKeys(authority, 'derive', `gw-${i}`);
const deriveUs = ((performance.now() - td) * 1000) / N;
const load0 = loadavg()[0]!;
const separate = await perDevice(authority);
const shared = await oneAccount(authority);
const a = separate.rssMiB as { connected: number };
const b = shared.rssMiB as { connected: number };
console.log(
  JSON.stringify(
    {
      devices: N,
      nats: 'nats-server 2.10 (the one on PATH)',
      deriveKeysUs: Math.round(deriveUs * 10) / 10,
      perDeviceAccounts: separate,
      oneAccount: shared,
      extraRssMiBPerThousandDevices: Math.round(((a.connected - b.connected) / N) * 1000 * 10) / 10,
      loadavg1: { start: Math.round(load0 * 10) / 10, end: Math.round(loadavg()[0]! * 10) / 10 },
    },
    null,
    2,
  ),
);
