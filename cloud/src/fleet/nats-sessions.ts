/*
 * Ends the NATS sessions of a revoked device. Under the auth callout a device's connection is a VIGIL user whose
 * nkey the server chose at connect time, so the account revocation list (keyed by user nkey) cannot name it in
 * advance. Instead the SYSTEM user asks every server for the connections of user `<tenant>/<device>` (the name
 * the callout gives the session) and kicks each one (nats-server >= 2.10). The device's reconnect goes through
 * the callout again, which now refuses it (the registry says revoked).
 */
import type { NatsConnection } from '@nats-io/transport-node';

export interface KickResult {
  /** Servers that answered the CONNZ request. */
  servers: number;
  /** Connections found and kicked. */
  kicked: number;
}

interface ConnzReply {
  server?: { id?: string };
  data?: { connections?: Array<{ cid?: number; authorized_user?: string }> };
}

/** Disconnects every session of one device, on every server that answers within `waitMs`. */
export class NatsSessionKicker {
  constructor(
    private readonly sys: Pick<NatsConnection, 'request' | 'requestMany'>,
    private readonly stallMs = 250,
  ) {}

  async kickDevice(tenantId: string, deviceId: string): Promise<KickResult> {
    const user = `${tenantId}/${deviceId}`;
    // A device holds a handful of connections at most; 1024 is the server's page size.
    const query = JSON.stringify({ user, auth: true, limit: 1024 });
    const replies = await this.sys.requestMany('$SYS.REQ.SERVER.PING.CONNZ', query, {
      strategy: 'stall',
      // Each server answers once; stop listening once they have gone quiet (kicks happen as answers arrive).
      stall: this.stallMs,
      maxWait: 5_000,
    });
    let servers = 0;
    let kicked = 0;
    for await (const m of replies) {
      const body = m.json<ConnzReply>();
      const id = body.server?.id;
      if (!id) continue;
      servers++;
      for (const c of body.data?.connections ?? []) {
        // Filtered by the server already; checked again so that an older server ignoring `user` kicks no one else.
        if (c.authorized_user !== user || typeof c.cid !== 'number') continue;
        await this.sys.request(`$SYS.REQ.SERVER.${id}.KICK`, JSON.stringify({ cid: c.cid }), {
          timeout: 5_000,
        });
        kicked++;
      }
    }
    return { servers, kicked };
  }
}
