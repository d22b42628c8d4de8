// Issue 12 (PubAck reply subjects): verifies on the installed nats-server (2.10) the NATS mechanics the
// per-tenant device accounts rely on, with hand-made accounts and no cloud code, so that a server upgrade that
// changes one of them fails here and not in production:
// - a stream in account VIGIL captures what a user of a tenant account publishes through a service import, and
//   the PubAck comes back through the import to the reply the publisher chose (Nats-Msg-Id dedupe works too);
// - whatever reply subject the publisher names ($JS.API.STREAM.MSG.DELETE.<s>, another tenant's subject, a
//   captured subject), the PubAck is delivered in the publisher's own account and reaches nothing in VIGIL;
// - a full resolver takes a new account at run time ($SYS.REQ.CLAIMS.UPDATE), and the auth callout can place
//   a user in it (allowed_accounts) with a JWT signed by that account's scoped key.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  createAccount,
  createOperator,
  createUser,
  encodeAccount,
  encodeAuthorizationResponse,
  encodeOperator,
  encodeUser,
  decode,
  type Account,
  type AuthorizationRequest,
  type KeyPair,
} from '@nats-io/jwt';
import { connect, jwtAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsConfig, useNats } from '@vigil/testkit';

const OPEN = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
};
const op = createOperator();
const opSk = createOperator();
const sys = createAccount();
const vigil = createAccount();
const auth = createAccount();
const calloutUser = createUser();
const tenants = { acme: createAccount(), globex: createAccount() };
const tenantSk = { acme: createAccount(), globex: createAccount() };

function tenantAccount(t: 'acme' | 'globex'): Promise<string> {
  const claims: Partial<Account> = {
    limits: { ...OPEN, mem_storage: 0, disk_storage: 0, streams: 0, consumer: 0 },
    signing_keys: [
      {
        kind: 'user_scope',
        key: tenantSk[t].getPublicKey(),
        role: 'device',
        template: {
          pub: { allow: [`vigil.v1.${t}.{{tag(d)}}.>`], deny: [] },
          sub: { allow: [`vigil.v1.${t}.{{tag(d)}}.cfg`, `_DEVINBOX.${t}.{{tag(d)}}.>`], deny: [] },
          subs: -1,
          data: -1,
          payload: -1,
        },
      },
    ],
    imports: [
      { name: 'devices', type: 'service', subject: `vigil.v1.${t}.*.evt.>`, account: vigil.getPublicKey() },
      { name: 'status', type: 'service', subject: `vigil.v1.${t}.*.status`, account: vigil.getPublicKey() },
      { name: 'cfg', type: 'stream', subject: `vigil.v1.${t}.*.cfg`, account: vigil.getPublicKey() },
    ],
  };
  return encodeAccount(t, tenants[t], claims, { signer: opSk });
}

describe('nats-server: streams behind service imports, PubAcks through the import, run-time accounts', () => {
  let conf = '';
  beforeAll(async () => {
    const opJwt = await encodeOperator('op', op, {
      system_account: sys.getPublicKey(),
      signing_keys: [opSk.getPublicKey()],
    });
    const sysJwt = await encodeAccount('SYS', sys, { limits: OPEN }, { signer: opSk });
    const vigilJwt = await encodeAccount(
      'VIGIL',
      vigil,
      {
        limits: { ...OPEN, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 },
        exports: [
          { name: 'dev', type: 'service', subject: 'vigil.v1.*.*.evt.>', response_type: 'Singleton' },
          { name: 'status', type: 'service', subject: 'vigil.v1.*.*.status', response_type: 'Singleton' },
          { name: 'cfg', type: 'stream', subject: 'vigil.v1.*.*.cfg' },
        ],
      },
      { signer: opSk },
    );
    const authJwt = await encodeAccount(
      'AUTH',
      auth,
      {
        limits: OPEN,
        authorization: {
          auth_users: [calloutUser.getPublicKey()],
          allowed_accounts: [tenants.acme.getPublicKey(), tenants.globex.getPublicKey()],
        },
      },
      { signer: opSk },
    );
    conf = [
      `operator: ${JSON.stringify(opJwt)}`,
      `system_account: ${sys.getPublicKey()}`,
      // The full resolver keeps account JWTs in a directory and takes new ones at run time.
      'resolver: { type: full, dir: "./jwt", allow_delete: false, interval: "2m" }',
      'resolver_preload: {',
      `  ${sys.getPublicKey()}: ${JSON.stringify(sysJwt)}`,
      `  ${vigil.getPublicKey()}: ${JSON.stringify(vigilJwt)}`,
      `  ${auth.getPublicKey()}: ${JSON.stringify(authJwt)}`,
      '}',
    ].join('\n');
  });
  const nats = useNats({ config: (ctx) => natsConfig({ jetstream: true, extra: conf })(ctx) });
  const open: NatsConnection[] = [];
  afterAll(async () => {
    for (const nc of open) await nc.close().catch(() => undefined);
  });
  async function as(
    account: KeyPair,
    name: string,
    claims: object = {},
    signer = account,
    inboxPrefix?: string,
  ): Promise<NatsConnection> {
    const u = createUser();
    const jwt = await encodeUser(name, u, account, claims, { signer, scopedUser: signer !== account });
    const nc = await connect({
      servers: nats().url,
      authenticator: jwtAuthenticator(jwt, u.getSeed()),
      inboxPrefix,
    });
    open.push(nc);
    return nc;
  }

  it('adds tenant accounts at run time, stores through the import, routes PubAcks back and nowhere else', async () => {
    const s = await as(sys, 'sys');
    for (const t of ['acme', 'globex'] as const) {
      const reply = await s.request('$SYS.REQ.CLAIMS.UPDATE', await tenantAccount(t), { timeout: 5000 });
      expect(reply.string()).toContain('"code":200');
    }
    const cloud = await as(vigil, 'cloud');
    const jsm = await jetstreamManager(cloud);
    await jsm.streams.add({ name: 'EVENTS', subjects: ['vigil.v1.*.*.evt.>'], deny_delete: false });
    await jsm.streams.add({ name: 'DEAD_LETTER', subjects: ['vigil.dlq.>'] });
    await jetstream(cloud).publish('vigil.dlq.x', 'victim');

    const acme = await as(tenants.acme, 'acme/gw1', { tags: ['d:gw1'] }, tenantSk.acme, '_DEVINBOX.acme.gw1');
    const js = jetstream(acme);
    const ack = await js.publish('vigil.v1.acme.gw1.evt.cam1', 'e1', { msgID: 'm1' });
    expect(ack).toMatchObject({ stream: 'EVENTS', seq: 1, duplicate: false });
    const again = await js.publish('vigil.v1.acme.gw1.evt.cam1', 'e1', { msgID: 'm1' });
    expect(again).toMatchObject({ stream: 'EVENTS', seq: 1, duplicate: true });
    await js.publish('vigil.v1.acme.gw1.evt.cam1', 'e2', { msgID: 'm2' });

    // Hostile replies: a PubAck for seq 1..3 aimed at the JetStream API, a captured subject of another device,
    // another tenant's cfg. Observers in VIGIL and globex see nothing; the streams keep their messages.
    const watchVigil = cloud.subscribe('>');
    const globex = await as(
      tenants.globex,
      'globex/gw1',
      { tags: ['d:gw1'] },
      tenantSk.globex,
      '_DEVINBOX.globex.gw1',
    );
    const watchGlobex = globex.subscribe('vigil.v1.globex.gw1.cfg');
    const hostile = [
      '$JS.API.STREAM.MSG.DELETE.EVENTS',
      '$JS.API.STREAM.MSG.DELETE.DEAD_LETTER',
      '$JS.API.STREAM.PURGE.EVENTS',
      'vigil.v1.acme.gw2.evt.cam9',
      'vigil.v1.globex.gw1.cfg',
      'vigil.dlq.junk',
    ];
    for (const reply of hostile) acme.publish('vigil.v1.acme.gw1.evt.cam1', 'x', { reply });
    await acme.flush();
    // The last hostile publish stored seq 3+len-1; wait for all of them to be stored.
    await expect
      .poll(async () => (await jsm.streams.info('EVENTS')).state.messages, { timeout: 10_000 })
      .toBe(2 + hostile.length);
    await cloud.flush();
    await globex.flush();
    const seenVigil: string[] = [];
    watchVigil.unsubscribe();
    for await (const m of watchVigil) seenVigil.push(m.subject);
    // In VIGIL each PubAck goes to the import's `_R_.…` reply only (mapped back into acme by the server).
    expect(seenVigil.filter((s) => hostile.includes(s))).toEqual([]);
    expect(seenVigil.filter((s) => s.startsWith('_R_.'))).toHaveLength(hostile.length);
    watchGlobex.unsubscribe();
    expect(watchGlobex.getProcessed()).toBe(0);
    expect((await jsm.streams.info('DEAD_LETTER')).state.messages).toBe(1);
    expect((await jsm.streams.getMessage('EVENTS', { seq: 1 }))?.string()).toBe('e1');
    // Nothing landed on a captured subject through a chained import (the reply vigil.v1.acme.gw2.evt.cam9).
    expect((await jsm.streams.info('EVENTS', { subjects_filter: '>' })).state.subjects).toEqual({
      'vigil.v1.acme.gw1.evt.cam1': 2 + hostile.length,
    });

    // The cloud's cfg push reaches only the device of that tenant, through the stream import.
    const cfg = acme.subscribe('vigil.v1.acme.gw1.cfg', { max: 1 });
    await acme.flush();
    cloud.publish('vigil.v1.acme.gw1.cfg', 'cfg');
    for await (const m of cfg) expect(m.string()).toBe('cfg');

    // A responder in VIGIL answers on the import's reply (`_R_.…`), which the server maps back to the device.
    const responder = cloud.subscribe('vigil.v1.*.*.status', {
      callback: (_e, m) => {
        expect(m.reply?.startsWith('_R_.')).toBe(true);
        m.respond('ok');
      },
    });
    await cloud.flush();
    const answer = await acme.request('vigil.v1.acme.gw1.status', 'q', { timeout: 5000 });
    expect(answer.string()).toBe('ok');
    responder.unsubscribe();
  });

  it('the auth callout places a user in a tenant account added at run time', async () => {
    const cj = await encodeUser('callout', calloutUser, auth, {
      sub: { allow: ['$SYS.REQ.USER.AUTH'] },
      pub: { allow: [] },
      resp: { max: 1, ttl: 0 },
    });
    const svc = await connect({
      servers: nats().url,
      authenticator: jwtAuthenticator(cj, calloutUser.getSeed()),
    });
    open.push(svc);
    svc.subscribe('$SYS.REQ.USER.AUTH', {
      callback: (_e, m) => {
        const req = decode<AuthorizationRequest>(m.string()).nats;
        void (async () => {
          const jwt = await encodeUser(
            'acme/gw7',
            req.user_nkey!,
            tenants.acme,
            { tags: ['d:gw7'] },
            {
              signer: tenantSk.acme,
              scopedUser: true,
            },
          );
          m.respond(
            await encodeAuthorizationResponse(
              req.user_nkey!,
              req.server_id!.id,
              auth,
              { jwt },
              { signer: auth },
            ),
          );
        })();
      },
    });
    await svc.flush();
    const t = createUser();
    const ticket = await encodeUser('ticket', t, auth, {}, { signer: auth });
    const dev = await connect({
      servers: nats().url,
      authenticator: jwtAuthenticator(ticket, t.getSeed()),
      inboxPrefix: '_DEVINBOX.acme.gw7',
    });
    open.push(dev);
    // Placed in acme with the scoped template: it can publish its own evt subject and the PubAck comes back.
    expect(await jetstream(dev).publish('vigil.v1.acme.gw7.evt.cam1', 'e')).toMatchObject({
      stream: 'EVENTS',
    });
  });
});
