// Per-device NATS authorization against a real nats-server 2.9 in operator/JWT mode with mutual TLS and
// JetStream: each device reaches only its own subjects and inbox, cloud services run the streams, and a
// revoked or expired device is cut off. Every bad input is counted; the last line reports tried vs refused.
import { join } from 'node:path';
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { encodeUser } from '@nats-io/jwt';
import { createAccount, createUser, fromSeed, type KeyPair } from '@nats-io/nkeys';
import {
  connect,
  errors,
  jwtAuthenticator,
  type NatsConnection,
  type PermissionViolationError,
  type Status,
} from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { subjectFor } from '@vigil/proto';
import type { CertKeyPaths } from '@vigil/certs';
import { natsConfig, useNats, usePki, type NatsConfigContext } from '@vigil/testkit';
import {
  createNatsAuthority,
  credsFile,
  deviceInboxPrefix,
  devicePermissions,
  issueDeviceUser,
  issueResponderUser,
  issueServiceUser,
  issueSystemUser,
  natsServerAuthConfig,
  pushAccountJwt,
  type NatsAuthority,
} from '../src/fleet/nats-auth.js';
import { deviceAccountKeys, encodeDeviceAccount } from '../src/fleet/nats-device-accounts.js';

interface Device {
  tenantId: string;
  deviceId: string;
}
const A1: Device = { tenantId: 'acme', deviceId: 'gw-1' };
const A2: Device = { tenantId: 'acme', deviceId: 'gw-2' };
const G1: Device = { tenantId: 'globex', deviceId: 'gw-1' };
const key = (d: Device): string => `${d.tenantId}/${d.deviceId}`;
const inboxOf = (d: Device): string => `_DEVINBOX.${d.tenantId}.${d.deviceId}`;

const tally = { tried: 0, refused: 0, cases: [] as string[] };
/** Counts one bad input; call `refused()` on the returned handle once the refusal is asserted. */
function badInput(name: string): { refused: () => void } {
  tally.tried++;
  tally.cases.push(name);
  return { refused: () => void tally.refused++ };
}

describe('NATS per-device authorization (operator JWT + mTLS + JetStream)', () => {
  let authority: NatsAuthority;
  let serverCtx: NatsConfigContext | undefined;
  // Each device is the user of its own account DEVICE_<tenant>.<device> (revoked users listed there here; the
  // cloud revokes tickets instead, see nats-callout.test.ts).
  const revoked: Record<string, Record<string, number>> = {};
  let deviceJwts: Record<string, string> = {};
  async function signDevices(): Promise<void> {
    deviceJwts = {};
    for (const d of [A1, A2, G1])
      deviceJwts[deviceAccountKeys(authority, d.tenantId, d.deviceId).account.publicKey] =
        await encodeDeviceAccount(authority, d.tenantId, d.deviceId, revoked[key(d)]);
  }
  async function revokeDevice(
    d: Device,
    userKey: string,
  ): Promise<{ account: { publicKey: string; jwt: string } }> {
    revoked[key(d)] = { ...revoked[key(d)], [userKey]: Math.ceil(Date.now() / 1000) };
    await signDevices();
    const publicKey = deviceAccountKeys(authority, d.tenantId, d.deviceId).account.publicKey;
    return { account: { publicKey, jwt: deviceJwts[publicKey]! } };
  }
  beforeAll(async () => {
    ({ authority } = await createNatsAuthority({ maxUserLifetimeSeconds: 86_400 }));
    await signDevices();
  });
  const pki = usePki({ devices: [A1, A2, G1], services: ['cloud'] });
  // debug: the server logs revocation/expiry disconnects only at debug level. pid_file: to signal a reload.
  const serverConfig = (ctx: NatsConfigContext, a: NatsAuthority): string =>
    natsConfig({
      tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      jetstream: true,
      extra: [
        'debug: true',
        `pid_file: ${JSON.stringify(join(ctx.dir, 'nats.pid'))}`,
        natsServerAuthConfig(a, { extraAccounts: deviceJwts }),
      ].join('\n'),
    })(ctx);
  const nats = useNats({
    config: (ctx) => {
      serverCtx = ctx;
      return serverConfig(ctx, authority);
    },
  });

  const open: NatsConnection[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((nc) => nc.close().catch(() => undefined)));
  });
  afterAll(() => {
    console.log(
      `[nats-auth] bad inputs: ${tally.tried} tried, ${tally.refused} refused (${tally.cases.join('; ')})`,
    );
  });

  const url = (): string => `tls://localhost:${nats().port}`;
  const tlsOf = (cert: CertKeyPaths | null): { caFile: string; certFile?: string; keyFile?: string } =>
    cert ? { caFile: pki().caCert, certFile: cert.cert, keyFile: cert.key } : { caFile: pki().caCert };

  interface Creds {
    jwt: string;
    kp: KeyPair;
  }
  async function deviceCreds(d: Device, expiresInSeconds = 3600, now?: Date): Promise<Creds> {
    const kp = createUser(); // generated on the device; only the public key goes to the cloud
    const jwt = await issueDeviceUser(authority, {
      ...d,
      userPublicKey: kp.getPublicKey(),
      expiresInSeconds,
      now,
    });
    return { jwt, kp };
  }
  async function serviceCreds(name = 'ingest'): Promise<Creds> {
    const kp = createUser();
    return { jwt: await issueServiceUser(authority, { name, userPublicKey: kp.getPublicKey() }), kp };
  }
  async function responderCreds(name = 'responder'): Promise<Creds> {
    const kp = createUser();
    return { jwt: await issueResponderUser(authority, { name, userPublicKey: kp.getPublicKey() }), kp };
  }

  /** Connects with a client cert (or none) and JWT creds (or none); collects status events. */
  async function dial(opts: {
    cert: CertKeyPaths | null;
    creds?: Creds | { jwt: string; seed?: Uint8Array };
    inboxPrefix?: string;
    name?: string;
  }): Promise<{ nc: NatsConnection; statuses: Status[] }> {
    const c = opts.creds;
    const nc = await connect({
      servers: [url()],
      name: opts.name ?? 'nats-auth-test',
      tls: tlsOf(opts.cert),
      ...(c ? { authenticator: jwtAuthenticator(c.jwt, 'kp' in c ? c.kp.getSeed() : c.seed) } : {}),
      ...(opts.inboxPrefix ? { inboxPrefix: opts.inboxPrefix } : {}),
      noEcho: true,
      reconnect: false,
      timeout: 5_000,
    });
    open.push(nc);
    const statuses: Status[] = [];
    void (async () => {
      for await (const s of nc.status()) statuses.push(s);
    })();
    return { nc, statuses };
  }

  const device = async (d: Device, creds?: Creds): Promise<{ nc: NatsConnection; statuses: Status[] }> =>
    dial({ cert: pki().devices[key(d)]!, creds: creds ?? (await deviceCreds(d)), inboxPrefix: inboxOf(d) });
  const cloud = async (): Promise<NatsConnection> =>
    (await dial({ cert: pki().services.cloud!, creds: await serviceCreds(), name: 'cloud' })).nc;
  const responder = async (): Promise<{ nc: NatsConnection; statuses: Status[] }> =>
    dial({ cert: pki().services.cloud!, creds: await responderCreds(), name: 'responder' });

  /** The PermissionViolationError in err or its cause chain. */
  function violation(err: unknown): PermissionViolationError {
    for (let e: unknown = err; e instanceof Error; e = e.cause) {
      if (e instanceof errors.PermissionViolationError) return e;
    }
    throw new Error(`not a permissions violation: ${String(err)}`, { cause: err });
  }

  async function rejection(p: Promise<unknown>): Promise<unknown> {
    try {
      await p;
    } catch (err) {
      return err;
    }
    throw new Error('expected a rejection, but it resolved');
  }

  /** Subscribes and returns the error the subscription ended with (the server's -ERR). */
  async function refusedSubscription(nc: NatsConnection, subject: string): Promise<PermissionViolationError> {
    const sub = nc.subscribe(subject);
    // Handle the rejection from the start: the -ERR arrives before the flush's PONG.
    const ended = rejection(
      (async () => {
        for await (const _m of sub) throw new Error(`unexpected message on ${subject}`);
      })(),
    );
    await nc.flush();
    return violation(await ended);
  }

  /** What nc.closed() resolves with, or a failure naming the bound if the connection is still open after it. */
  async function closedWithin(nc: NatsConnection, ms: number): Promise<void | Error> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        nc.closed(),
        new Promise<never>((_, rej) => {
          timer = setTimeout(() => rej(new Error(`still connected ${ms} ms later`)), ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs = 15_000): Promise<T> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const v = fn();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  /** A server log line matching `re`, written after `mark` (a length of logs.text()) when given. */
  const logLine = (re: RegExp, mark = 0): Promise<string> =>
    waitFor(`server log ${re}`, () =>
      nats()
        .logs.text()
        .slice(mark)
        .split('\n')
        .find((l) => re.test(l)),
    );

  /**
   * The server's own decision (`decision`, logged before it sends the -ERR) and then the close of that same client.
   * The close reason races: the server sends the -ERR, then marks the connection closed with `reason`; a client that
   * reads the -ERR and hangs up first makes it "Client Closed" instead (seen once in a clean-clone CI run).
   */
  async function serverClosedFor(decision: string, reason: string, mark: number): Promise<void> {
    const line = await logLine(new RegExp(` - cid:\\d+ - ${reEscape(decision)}$`), mark);
    const cid = /- (cid:\d+) -/.exec(line)![1]!;
    const closed = await logLine(new RegExp(` - ${cid} - Client connection closed: `), mark);
    expect(closed).toMatch(new RegExp(`: (${reEscape(reason)}|Client Closed)$`));
  }

  let jsm: JetStreamManager;
  let cloudNc: NatsConnection;
  beforeAll(async () => {
    // The cloud service user creates the stream before any device publishes (its own connection, for the file).
    const kp = createUser();
    const jwt = await issueServiceUser(authority, { name: 'streams', userPublicKey: kp.getPublicKey() });
    cloudNc = await connect({
      servers: [url()],
      tls: tlsOf(pki().services.cloud!),
      authenticator: jwtAuthenticator(jwt, kp.getSeed()),
      noEcho: true,
      timeout: 5_000,
    });
    jsm = await jetstreamManager(cloudNc);
    await jsm.streams.add({ name: 'EVENTS', subjects: ['vigil.v1.*.*.evt.*'] });
  });
  afterAll(async () => {
    await cloudNc?.close();
  });

  const storedOn = async (subject: string): Promise<number> => {
    const info = await jsm.streams.info('EVENTS', { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  };

  it('a device publishes its own event into EVENTS with JetStream and gets the PubAck', async () => {
    const { nc } = await device(A1);
    const ack = await jetstream(nc).publish(subjectFor('acme', 'gw-1', 'evt', 'cam1'), 'e1', { msgID: 'e1' });
    expect(ack).toMatchObject({ stream: 'EVENTS', duplicate: false });
    const again = await jetstream(nc).publish(subjectFor('acme', 'gw-1', 'evt', 'cam1'), 'e1', {
      msgID: 'e1',
    });
    expect(again).toMatchObject({ stream: 'EVENTS', seq: ack.seq, duplicate: true });
    expect(await storedOn('vigil.v1.acme.gw-1.evt.cam1')).toBe(1);
    // Heartbeats and status are core publishes on its own subjects: no error status arrives.
    const { nc: nc2, statuses } = await device(A1);
    nc2.publish(subjectFor('acme', 'gw-1', 'hb'), 'hb');
    nc2.publish(subjectFor('acme', 'gw-1', 'status'), 'st');
    await nc2.flush();
    expect(statuses.filter((s) => s.type === 'error')).toEqual([]);
    // Same as the agent's inboxPrefixFor (edge-agent/src/uplink/sync.ts): both are @vigil/proto's.
    expect(deviceInboxPrefix('acme', 'gw-1')).toBe(inboxOf(A1));
    expect(devicePermissions('acme', 'gw-1')).toEqual({
      pubAllow: ['vigil.v1.acme.gw-1.>'],
      subAllow: ['vigil.v1.acme.gw-1.cfg', 'vigil.v1.acme.gw-1.rcpt', '_DEVINBOX.acme.gw-1.>'],
    });
  });

  it("device A publishing on device B's subject is refused and nothing is stored", async () => {
    const { nc, statuses } = await device(A1);
    const target = subjectFor('acme', 'gw-2', 'evt', 'cam1');

    const viaJs = badInput('A JetStream-publishes on B evt');
    const err = violation(await rejection(jetstream(nc).publish(target, 'forged', { msgID: 'forged-1' })));
    expect(err).toMatchObject({ operation: 'publish', subject: target });
    expect(err.message).toBe(`Permissions Violation for Publish to "${target}"`);
    viaJs.refused();

    const viaCore = badInput('A core-publishes on B hb');
    const hb = subjectFor('acme', 'gw-2', 'hb');
    nc.publish(hb, 'forged');
    await nc.flush(); // the -ERR comes before the PONG
    // Core publishes have no reply: the violation arrives as an async 'error' status.
    const st = await waitFor('error status', () =>
      statuses.find((x) => x.type === 'error' && x.error.message.includes(`"${hb}"`)),
    );
    expect(st.type === 'error' && violation(st.error)).toMatchObject({ operation: 'publish', subject: hb });
    viaCore.refused();

    expect(await storedOn(target)).toBe(0);
    expect(
      await logLine(new RegExp(`\\[ERR\\] .*Publish Violation - .*Subject "${reEscape(target)}"`)),
    ).toContain('Publish Violation');
    expect(nc.isClosed()).toBe(false); // a violation is not fatal: the connection stays up
  });

  it("device A subscribing to B's receipts, B's inbox or the tenant wildcard is refused", async () => {
    const { nc } = await device(A1);
    for (const subject of [
      'vigil.v1.acme.gw-2.rcpt',
      '_DEVINBOX.acme.gw-2.>',
      '_DEVINBOX.acme.*.>',
      '_DEVINBOX.>',
      'vigil.v1.acme.>',
      '>',
    ]) {
      const bad = badInput(`A subscribes ${subject}`);
      const err = await refusedSubscription(nc, subject);
      expect(err).toMatchObject({ operation: 'subscription', subject });
      expect(err.message).toBe(`Permissions Violation for Subscription to "${subject}"`);
      await logLine(new RegExp(`\\[ERR\\] .*Subscription Violation - .*Subject "${reEscape(subject)}"`));
      bad.refused();
    }
    // Its own subjects are fine.
    nc.subscribe('vigil.v1.acme.gw-1.rcpt');
    nc.subscribe('vigil.v1.acme.gw-1.cfg');
    await nc.flush();
    expect(nc.isClosed()).toBe(false);
  });

  it("another tenant's device can neither publish nor subscribe under acme", async () => {
    const { nc, statuses } = await device(G1);
    const target = subjectFor('acme', 'gw-1', 'evt', 'cam1');
    const pub = badInput('globex/gw-1 publishes on acme/gw-1 evt');
    const err = violation(await rejection(jetstream(nc).publish(target, 'forged', { msgID: 'forged-g' })));
    expect(err.message).toBe(`Permissions Violation for Publish to "${target}"`);
    pub.refused();

    const cfg = badInput('globex/gw-1 core-publishes on acme/gw-1 cfg');
    nc.publish('vigil.v1.acme.gw-1.cfg', 'forged config');
    await nc.flush();
    await waitFor('error status', () =>
      statuses.find((x) => x.type === 'error' && x.error.message.includes('"vigil.v1.acme.gw-1.cfg"')),
    );
    cfg.refused();

    for (const subject of [
      'vigil.v1.acme.gw-1.rcpt',
      'vigil.v1.acme.gw-1.cfg',
      '_DEVINBOX.acme.gw-1.>',
      'vigil.v1.*.*.rcpt',
    ]) {
      const bad = badInput(`globex/gw-1 subscribes ${subject}`);
      expect((await refusedSubscription(nc, subject)).subject).toBe(subject);
      bad.refused();
    }
    // Its own events still work (same device id in another tenant is another identity).
    const ack = await jetstream(nc).publish(subjectFor('globex', 'gw-1', 'evt', 'cam1'), 'ok', {
      msgID: 'g-ok',
    });
    expect(ack.stream).toBe('EVENTS');
  });

  it('a device cannot use the JetStream API', async () => {
    const { nc } = await device(A1);
    const info = badInput('A requests $JS.API.STREAM.INFO.EVENTS');
    const err = violation(await rejection(nc.request('$JS.API.STREAM.INFO.EVENTS', '', { timeout: 2_000 })));
    expect(err.message).toBe('Permissions Violation for Publish to "$JS.API.STREAM.INFO.EVENTS"');
    info.refused();

    const mgr = badInput('A opens a JetStreamManager ($JS.API.INFO)');
    violation(await rejection(jetstreamManager(nc)));
    mgr.refused();

    const del = badInput('A requests $JS.API.STREAM.PURGE.EVENTS');
    violation(await rejection(nc.request('$JS.API.STREAM.PURGE.EVENTS', '', { timeout: 2_000 })));
    del.refused();
    expect(await storedOn('vigil.v1.acme.gw-1.evt.cam1')).toBe(1);
  });

  it("a device cannot answer a request into someone else's inbox (no response permission)", async () => {
    const { nc } = await device(A1);
    const sub = nc.subscribe('vigil.v1.acme.gw-1.cfg', { max: 1 });
    await nc.flush();
    const c = await cloud();
    const answered = rejection(c.request('vigil.v1.acme.gw-1.cfg', 'q', { timeout: 1_000 }));
    const bad = badInput('A replies into the cloud _INBOX');
    for await (const m of sub) {
      expect(m.reply).toMatch(/^_INBOX\./);
      m.respond('forged answer');
    }
    await nc.flush();
    expect(String(await answered)).toMatch(/timeout/i); // the forged answer never reached the requester
    await logLine(/\[ERR\] .*Publish Violation - .*Subject "_INBOX\./);
    bad.refused();
  });

  it('the cloud service user has no response permission: it cannot answer a device at all', async () => {
    const { nc: dev } = await device(A1);
    const c = await cloud();
    const serve = c.subscribe('vigil.v1.*.*.status', { callback: (_e, m) => void m.respond('answer') });
    await c.flush();
    const bad = badInput('service user answers a device request (into the import reply _R_)');
    const mark = nats().logs.text().length;
    expect(
      String(await rejection(dev.request('vigil.v1.acme.gw-1.status', 'q', { timeout: 1_000 }))),
    ).toMatch(/timeout/i);
    await logLine(/\[ERR\] .*Publish Violation - .*Subject "_R_\./, mark);
    bad.refused();
    serve.unsubscribe();
  });

  it('the responder user publishes only into device inboxes, even when answering a hostile reply subject', async () => {
    const { nc: dev } = await device(A1);
    const { nc: r, statuses } = await responder();
    const answered: string[] = [];
    // A responder WITHOUT the reply check: the NATS user alone must stop what the device asks for.
    const serve = r.subscribe('vigil.v1.*.*.status', {
      callback: (_e, m) => {
        if (m.reply) answered.push(m.reply);
        m.respond(new Uint8Array(0));
      },
    });
    await r.flush();
    const hostile = [
      '$JS.API.STREAM.DELETE.EVENTS',
      '$JS.API.STREAM.PURGE.EVENTS',
      '$KV.config.x',
      '$SYS.REQ.SERVER.PING',
      'vigil.v1.globex.gw-1.cfg',
      'vigil.internal.v1.committed.acme',
      '_INBOX.cloud.1',
    ];
    // The request crossed the device account's service import: the responder sees only the server's `_R_.…`
    // reply (mapped back into that account), whatever the device named, and may publish nowhere else.
    for (const reply of hostile) dev.publish('vigil.v1.acme.gw-1.status', 'q', { reply });
    await dev.flush();
    await waitFor('every request answered', () => (answered.length === hostile.length ? true : undefined));
    for (const reply of answered) expect(reply).toMatch(/^_R_\.[A-Za-z0-9]+\.[A-Za-z0-9]+$/);
    for (const subject of hostile) {
      const bad = badInput(`responder publishes on ${subject}`);
      r.publish(subject, 'x');
      await r.flush().catch(() => undefined);
      await waitFor(`violation for ${subject}`, () =>
        statuses.find((x) => x.type === 'error' && x.error.message.includes(`"${subject}"`)),
      );
      bad.refused();
    }
    expect((await jsm.streams.info('EVENTS')).config.name).toBe('EVENTS');
    // Its own device inbox works.
    expect((await dev.request('vigil.v1.acme.gw-1.status', 'q', { timeout: 2_000 })).subject).toMatch(
      /^_DEVINBOX\.acme\.gw-1\./,
    );
    // Nor may it subscribe to anything but the two request subjects.
    for (const subject of ['vigil.v1.*.*.evt.*', '_INBOX.>', '$JS.API.>']) {
      const bad = badInput(`responder subscribes ${subject}`);
      expect((await refusedSubscription(r, subject)).subject).toBe(subject);
      bad.refused();
    }
    serve.unsubscribe();
  });

  describe('connection-level refusals', () => {
    const certA1 = (): CertKeyPaths => pki().devices[key(A1)]!;
    const scopedTags = ['vigil-tenant:acme', 'vigil-device:gw-1'];
    // gw-1 is the user of its own account (its scoped device key); VIGIL has no device signing key any more.
    const acmeAccount = (): string => deviceAccountKeys(authority, 'acme', 'gw-1').account.publicKey;
    const acmeDeviceSeed = (): string => deviceAccountKeys(authority, 'acme', 'gw-1').deviceSigningKey.seed;

    /**
     * Dials and expects the server to refuse in CONNECT: nats.js rejects with AuthorizationError
     * ('Authorization Violation'); the server logs `[ERR] ... authentication error` and, at debug level, the
     * reason (`reason`, or nothing more when null).
     */
    async function refusedAtConnect(
      name: string,
      attempt: () => Promise<unknown>,
      reason: RegExp | null,
    ): Promise<void> {
      const bad = badInput(name);
      const mark = nats().logs.text().length;
      const err = await rejection(attempt());
      expect(err).toBeInstanceOf(errors.AuthorizationError);
      expect((err as Error).message).toBe('Authorization Violation');
      await logLine(/\[ERR\] .* - authentication error$/, mark);
      if (reason) await logLine(reason, mark);
      bad.refused();
    }

    it('a valid device JWT without a client certificate fails the TLS handshake', async () => {
      const bad = badInput('JWT without client cert');
      const mark = nats().logs.text().length;
      const err = await rejection(
        dial({ cert: null, creds: await deviceCreds(A1), inboxPrefix: inboxOf(A1) }),
      );
      // TLS 1.3: the client's handshake is done when the server checks for a certificate, so the client
      // only sees the connection reset (no NATS error).
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(errors.AuthorizationError);
      expect(String(err)).toMatch(/ECONNRESET|EPIPE|socket|closed|certificate/i);
      await logLine(/\[ERR\] .* - TLS handshake error: tls: client didn't provide a certificate/, mark);
      bad.refused();
    });

    it('a device certificate without a JWT is an authorization violation', async () => {
      await refusedAtConnect('client cert without JWT', () => dial({ cert: certA1() }), null);
    });

    it('a user JWT signed by a foreign account, or by an unknown signing key of VIGIL, is refused', async () => {
      const u1 = createUser();
      const jwt1 = await encodeUser('acme/gw-1', u1, createAccount(), { tags: scopedTags });
      await refusedAtConnect(
        'user JWT issued by a foreign account',
        () => dial({ cert: certA1(), creds: { jwt: jwt1, kp: u1 } }),
        // The full resolver logs an unknown account as an authentication error (the MEMORY one: lookup error).
        /Account JWT lookup error: account missing|authentication error/,
      );

      const u2 = createUser();
      const jwt2 = await encodeUser(
        'acme/gw-1',
        u2,
        acmeAccount(),
        { tags: scopedTags },
        { signer: createAccount(), scopedUser: true },
      );
      await refusedAtConnect(
        'user JWT claiming DEVICE_acme.gw-1, signed by an unregistered key',
        () => dial({ cert: certA1(), creds: { jwt: jwt2, kp: u2 } }),
        /User JWT issuer is not known/,
      );
    });

    it('the device signing key cannot mint a user with its own (wider) permissions', async () => {
      const u = createUser();
      const jwt = await encodeUser(
        'acme/gw-1',
        u,
        acmeAccount(),
        { pub: { allow: ['>'] }, sub: { allow: ['>'] }, tags: scopedTags },
        { signer: fromSeed(new TextEncoder().encode(acmeDeviceSeed())) },
      );
      await refusedAtConnect(
        'device-key-signed JWT carrying pub/sub ">"',
        () => dial({ cert: certA1(), creds: { jwt, kp: u } }),
        /User JWT is not valid: scoped users require no permissions or limits set/,
      );
    });

    it('an inbox tag (the template of older releases) grants nothing: service replies and the JS API stay closed', async () => {
      // Older device templates read a free-text `vigil-inbox` tag: vigil-inbox:_INBOX allowed `_INBOX.>`.
      // The inbox is now built from the tenant and device tags alone, and the deny list stays as a backstop.
      for (const [inboxTag, subject] of [
        ['_INBOX', '_INBOX.>'],
        ['$JS', '$JS.API.>'],
      ] as const) {
        const u = createUser();
        const jwt = await encodeUser(
          'acme/gw-1',
          u,
          acmeAccount(),
          { tags: ['vigil-tenant:acme', 'vigil-device:gw-1', `vigil-inbox:${inboxTag}`] },
          {
            signer: fromSeed(new TextEncoder().encode(acmeDeviceSeed())),
            scopedUser: true,
          },
        );
        const { nc } = await dial({ cert: certA1(), creds: { jwt, kp: u } });
        const bad = badInput(`forged vigil-inbox:${inboxTag} subscribes ${subject}`);
        expect((await refusedSubscription(nc, subject)).subject).toBe(subject);
        bad.refused();
      }
    });

    it('an expired device JWT is refused', async () => {
      const creds = await deviceCreds(A1, 60, new Date(Date.now() - 3_600_000));
      await refusedAtConnect(
        'expired user JWT',
        () => dial({ cert: certA1(), creds, inboxPrefix: inboxOf(A1) }),
        /User JWT no longer valid: .*claim is expired/,
      );
    });

    it('a stolen JWT without its seed (no bearer tokens) or with another seed is refused', async () => {
      const creds = await deviceCreds(A1);
      await refusedAtConnect(
        'JWT presented without a nonce signature',
        () => dial({ cert: certA1(), creds: { jwt: creds.jwt } }),
        null,
      );
      await refusedAtConnect(
        'JWT with a nonce signature from another seed',
        () => dial({ cert: certA1(), creds: { jwt: creds.jwt, seed: createUser().getSeed() } }),
        null,
      );
    });
  });

  it('the cloud service consumes EVENTS, answers a device request and pushes a receipt it receives', async () => {
    const c = await cloud();
    const { nc: dev } = await device(A1);
    const js = jetstream(dev);
    await js.publish(subjectFor('acme', 'gw-1', 'evt', 'cam2'), 'e2', { msgID: 'e2' });

    const cjsm = await jetstreamManager(c);
    await cjsm.consumers.add('EVENTS', { durable_name: 'ingest', ack_policy: AckPolicy.Explicit });
    const consumer = await jetstream(c).consumers.get('EVENTS', 'ingest');
    const batch = await consumer.fetch({ max_messages: 10, expires: 1_000 });
    const seen: string[] = [];
    for await (const m of batch) {
      seen.push(m.subject);
      await m.ackAck();
    }
    expect(seen).toEqual(
      expect.arrayContaining(['vigil.v1.acme.gw-1.evt.cam1', 'vigil.v1.acme.gw-1.evt.cam2']),
    );

    // Receipts pushed on the device's rcpt subject reach it; ReceiptQuery-style requests get answered by
    // the responder user (replies into _DEVINBOX.acme.gw-1.*).
    const rcpt = subjectFor('acme', 'gw-1', 'rcpt');
    const got: string[] = [];
    const devSub = dev.subscribe(rcpt, {
      callback: (_e, m) => void (m.reply ? undefined : got.push(m.string())),
    });
    const { nc: r } = await responder();
    const serve = r.subscribe('vigil.v1.*.*.rcpt', {
      callback: (_e, m) => void (m.reply && m.respond('answer')),
    });
    await dev.flush();
    await r.flush();
    c.publish(rcpt, 'receipt-1');
    await waitFor('receipt at the device', () => got.length > 0 || undefined);
    expect(got).toEqual(['receipt-1']);
    const answer = await dev.request(rcpt, 'query', { timeout: 2_000 });
    expect(answer.string()).toBe('answer');
    expect(answer.subject.startsWith('_DEVINBOX.acme.gw-1.')).toBe(true);
    devSub.unsubscribe();
    serve.unsubscribe();

    // creds files work the same way (credsAuthenticator).
    const kp = createUser();
    const text = new TextDecoder().decode(
      credsFile(
        await issueDeviceUser(authority, { ...A2, userPublicKey: kp.getPublicKey(), expiresInSeconds: 60 }),
        kp.getSeed(),
      ),
    );
    expect(text).toContain(['-----BEGIN', 'NATS USER JWT-----'].join(' ')); // split: no credential-looking literal in git
    expect(text).toContain(new TextDecoder().decode(kp.getSeed()));
  });

  it('a device whose JWT expires while connected is disconnected at expiry', async () => {
    const creds = await deviceCreds(A2, 2);
    const exp = JSON.parse(Buffer.from(creds.jwt.split('.')[1]!, 'base64url').toString()) as { exp: number };
    const mark = nats().logs.text().length;
    const { nc, statuses } = await device(A2, creds);
    const closed = await nc.closed();
    const lateMs = Date.now() - exp.exp * 1000;
    console.log(`[nats-auth] expired JWT: disconnected ${lateMs} ms after exp (second granularity)`);
    expect(closed).toBeInstanceOf(errors.UserAuthenticationExpiredError);
    expect(
      statuses.some((s) => s.type === 'error' && s.error instanceof errors.UserAuthenticationExpiredError),
    ).toBe(true);
    expect((closed as Error).message).toBe('User Authentication Expired');
    // Enforced by the server's own timer at exp (a server that only checked at connect would never close:
    // the test would time out). The bound allows a nats-server starved on a loaded machine.
    expect(lateMs).toBeLessThan(5_000);
    await serverClosedFor('User Authentication Expired', 'Authentication Expired', mark);
  });

  let revokedA2: Creds | undefined;
  it('revocation pushed through the SYSTEM account cuts a connected device off at once', async () => {
    const creds = await deviceCreds(A2);
    const { nc, statuses } = await device(A2, creds);
    nc.subscribe(subjectFor('acme', 'gw-2', 'rcpt'));
    await nc.flush();

    const sysKp = createUser();
    const sysJwt = await issueSystemUser(authority, { name: 'revoker', userPublicKey: sysKp.getPublicKey() });
    const sys = (
      await dial({ cert: pki().services.cloud!, creds: { jwt: sysJwt, kp: sysKp }, name: 'revoker' })
    ).nc;

    const acmeAccount = await revokeDevice(A2, creds.kp.getPublicKey());
    const mark = nats().logs.text().length;
    const t0 = performance.now();
    expect(await pushAccountJwt(sys, acmeAccount)).toBe('jwt updated');
    // At once: nothing else would ever close it (its JWT is valid for an hour), so the closed() below proves the
    // push cut it; the 10 s bound only turns "never" into a failure a loaded machine cannot cause.
    const closed = await closedWithin(nc, 10_000);
    const cutMs = performance.now() - t0;
    console.log(`[nats-auth] revocation via $SYS claims update: device cut off after ${cutMs.toFixed(1)} ms`);
    // nats.js has no class for this -ERR: a ProtocolError, also what closed() resolves with.
    expect(closed).toBeInstanceOf(errors.ProtocolError);
    expect((closed as Error).message).toBe('User Authentication Revoked');
    expect(statuses.some((s) => s.type === 'error' && s.error === closed)).toBe(true);
    await serverClosedFor('User Authentication Revoked', 'Credentials Revoked', mark);

    const again = badInput('revoked JWT reconnects');
    const mark2 = nats().logs.text().length;
    const err = await rejection(device(A2, creds));
    expect(err).toBeInstanceOf(errors.AuthorizationError);
    await logLine(/ - User authentication revoked$/, mark2);
    again.refused();
    revokedA2 = creds;

    // A device re-enrolled with a new key is welcome.
    const fresh = await device(A2);
    expect(fresh.nc.isClosed()).toBe(false);

    // The system user may do nothing else.
    const sysBad = badInput('system user publishes on a device subject');
    violation(await rejection(sys.request('vigil.v1.acme.gw-2.cfg', 'x', { timeout: 1_000 })));
    sysBad.refused();
  });

  it('revocations pushed to the full resolver persist across a server restart (its JWT directory)', async () => {
    const creds = await deviceCreds(G1);
    const { nc } = await device(G1, creds);
    const sysKp = createUser();
    const sysJwt = await issueSystemUser(authority, {
      name: 'revoker2',
      userPublicKey: sysKp.getPublicKey(),
    });
    const sys = (
      await dial({ cert: pki().services.cloud!, creds: { jwt: sysJwt, kp: sysKp }, name: 'revoker2' })
    ).nc;
    expect(await pushAccountJwt(sys, await revokeDevice(G1, creds.kp.getPublicKey()))).toBe('jwt updated');
    const closed = await closedWithin(nc, 10_000);
    expect((closed as Error).message).toBe('User Authentication Revoked');
    await sys.close();

    // The config on disk still preloads the unrevoked device account JWTs: the resolver directory keeps the newer ones.
    void serverCtx;
    await nats().restart();
    for (const [name, d, creds0] of [
      ['reload-revoked JWT reconnects after a server restart', G1, creds],
      ['$SYS-revoked JWT reconnects after a server restart', A2, revokedA2!],
    ] as const) {
      const again = badInput(name);
      expect(await rejection(device(d, creds0))).toBeInstanceOf(errors.AuthorizationError);
      again.refused();
    }
  });

  it('builder input checks: ids that would widen a subject, non-user keys, lifetimes over the cap', async () => {
    const pk = createUser().getPublicKey();
    for (const [tenantId, deviceId] of [
      ['acme', '*'],
      ['acme', 'gw-1.>'],
      ['ac me', 'gw-1'],
      ['>', 'gw-1'],
      ['', 'gw-1'],
    ] as const) {
      const bad = badInput(`issueDeviceUser(${JSON.stringify(tenantId)}, ${JSON.stringify(deviceId)})`);
      await expect(
        issueDeviceUser(authority, { tenantId, deviceId, userPublicKey: pk, expiresInSeconds: 60 }),
      ).rejects.toThrow(/invalid (tenant|device) id/);
      bad.refused();
    }
    const acct = badInput('issueDeviceUser with an account key');
    await expect(
      issueDeviceUser(authority, {
        ...A1,
        userPublicKey: createAccount().getPublicKey(),
        expiresInSeconds: 60,
      }),
    ).rejects.toThrow(/not a NATS user public key/);
    acct.refused();
    const long = badInput('issueDeviceUser lifetime over the cap');
    await expect(
      issueDeviceUser(authority, { ...A1, userPublicKey: pk, expiresInSeconds: 86_401 }),
    ).rejects.toThrow(/expiresInSeconds/);
    long.refused();
  });
});

function reEscape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
