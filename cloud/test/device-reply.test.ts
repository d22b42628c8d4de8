// The one reply check of every cloud responder (fleet/device-reply.ts): pure, no NATS.
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { checkDeviceReply, DeviceReplier, LogBudget } from '../src/fleet/device-reply.js';

const STATUS = 'vigil.v1.acme.gw-1.status';

describe('checkDeviceReply', () => {
  it('accepts only the inbox of the device the request subject names', () => {
    expect(checkDeviceReply(STATUS, '_DEVINBOX.acme.gw-1.NUID.1')).toEqual({
      ok: true,
      tenant: 'acme',
      device: 'gw-1',
      reply: '_DEVINBOX.acme.gw-1.NUID.1',
    });
    expect(checkDeviceReply('vigil.v1.acme.gw-1.rcpt', '_DEVINBOX.acme.gw-1.x').ok).toBe(true);
  });

  it("accepts a service import's reply (mapped back by the server into the requesting tenant's account)", () => {
    expect(checkDeviceReply(STATUS, '_R_.Tblj4q.ApaKt1').ok).toBe(true);
    for (const bad of ['_R_.x', '_R_.a.b.c.d.e', '_R_.a.*', '_R_.a.>', `_R_.a.${'b'.repeat(130)}`, '_R_a.b'])
      expect(checkDeviceReply(STATUS, bad)).toEqual({ ok: false, reason: 'foreign_reply' });
  });

  it.each([
    ['$JS.API.STREAM.DELETE.JOBS', 'foreign_reply'],
    ['$JS.API.STREAM.PURGE.DEAD_LETTER', 'foreign_reply'],
    ['$JS.ACK.EVENTS.ingest.1.2.3.4.5', 'foreign_reply'],
    ['$KV.config.x', 'foreign_reply'],
    ['$SYS.REQ.SERVER.PING', 'foreign_reply'],
    ['vigil.v1.globex.gw-1.cfg', 'foreign_reply'],
    ['vigil.v1.acme.gw-2.rcpt', 'foreign_reply'],
    ['vigil.internal.v1.committed.acme', 'foreign_reply'],
    ['_INBOX.x', 'foreign_reply'],
    ['_DEVINBOX.acme.gw-2.x', 'foreign_reply'],
    ['_DEVINBOX.globex.gw-1.x', 'foreign_reply'],
    ['_DEVINBOX.acme.gw-1', 'foreign_reply'],
    ['_DEVINBOX.acme.gw-1.>', 'foreign_reply'],
    ['', 'no_reply'],
    [undefined, 'no_reply'],
  ] as const)('refuses reply %j (%s)', (reply, reason) => {
    expect(checkDeviceReply(STATUS, reply)).toEqual({ ok: false, reason });
  });

  it('refuses a request subject that names no device', () => {
    expect(checkDeviceReply('vigil.v1.*.*.status', '_DEVINBOX.*.*.x')).toEqual({
      ok: false,
      reason: 'not_device_subject',
    });
    expect(checkDeviceReply('other', '_DEVINBOX.acme.gw-1.x').ok).toBe(false);
  });
});

describe('DeviceReplier', () => {
  function setup(): { replier: DeviceReplier; metrics: Registry; logs: string[]; sent: string[] } {
    const metrics = new Registry();
    const logs: string[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => void logs.push(l) });
    let t = 0;
    const replier = new DeviceReplier('config_status', metrics, log, () => (t += 1000), 3);
    return { replier, metrics, logs, sent: [] };
  }
  const msg = (reply: string | undefined, sent: string[]) => ({
    subject: STATUS,
    reply,
    respond: (d: Uint8Array) => {
      sent.push(`${reply}:${new TextDecoder().decode(d)}`);
      return true;
    },
  });

  it('answers on the checked inbox and drops, counts and logs (bounded) everything else', async () => {
    const { replier, metrics, logs, sent } = setup();
    const ok = replier.accept(msg('_DEVINBOX.acme.gw-1.a', sent));
    expect(ok?.respond(new TextEncoder().encode('hi'))).toBe(true);
    expect(sent).toEqual(['_DEVINBOX.acme.gw-1.a:hi']);
    for (let i = 0; i < 10; i++)
      expect(replier.accept(msg('$JS.API.STREAM.DELETE.JOBS', sent))).toBeUndefined();
    expect(replier.accept(msg(undefined, sent))).toBeUndefined();
    expect(sent).toHaveLength(1);
    const text = await metrics.metrics();
    expect(text).toContain(
      'vigil_cloud_device_replies_refused_total{responder="config_status",reason="foreign_reply"} 10',
    );
    expect(text).toContain(
      'vigil_cloud_device_replies_refused_total{responder="config_status",reason="no_reply"} 1',
    );
    expect(logs).toHaveLength(3); // 3 per minute; the clock advanced 11 s
    expect(logs[0]).toContain('$JS.API.STREAM.DELETE.JOBS');
  });
});

describe('LogBudget', () => {
  it('allows max lines per window and reports how many were suppressed', () => {
    let t = 0;
    const b = new LogBudget(2, 60_000, () => t);
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([0, 0, undefined, undefined]);
    t = 60_000;
    expect(b.take()).toBe(2);
    expect(b.take()).toBe(0);
  });
});
