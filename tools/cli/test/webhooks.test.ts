import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { useCliCloud } from './support/cloud.js';

// `vigil webhooks` against the real cloud: a webhook made with the CLI receives a committed event (the receiver is
// a local HTTP server: an outside party), and its deliveries are listed.
describe('vigil webhooks (against the cloud)', () => {
  const { cli, publish } = useCliCloud({
    integrations: { allowInsecureHttp: true, allowPrivateNetworks: true },
  });

  it('creates a webhook, delivers a committed event to it, lists deliveries, disables it', async () => {
    const received: Array<{ headers: Record<string, unknown>; body: string }> = [];
    const server: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      const made = await cli('webhooks', 'create', '--tenant', 'acme', '--url', url, '--label', 'person');
      expect(made.code, made.err).toBe(0);
      const [first, second] = made.out.split('\n');
      const id = /^webhook (\S+) -> /.exec(first ?? '')?.[1];
      expect(id).toBeDefined();
      expect(second).toMatch(/^secret: \S{16,}$/);
      expect(made.err).toContain('shown only now');

      const list = await cli('webhooks', 'list', '--tenant', 'acme');
      expect(list.out).toMatch(
        new RegExp(`^${id}\\s+enabled\\s+${url.replaceAll('.', '\\.')}\\s+labels=person$`, 'm'),
      );

      const eventId = await publish('door', 'person');
      await expect.poll(() => received.length, { timeout: 20_000 }).toBe(1);
      expect(JSON.parse(received[0]!.body)).toMatchObject({ event: { event_id: eventId } });
      expect(received[0]!.headers['signature-input']).toMatch(/keyid=/);

      await expect
        .poll(async () => (await cli('webhooks', 'deliveries', id!, '--tenant', 'acme')).out, {
          timeout: 10_000,
        })
        .toMatch(new RegExp(`${eventId}\\s+1\\s+delivered\\s+204`));

      const off = await cli('webhooks', 'disable', id!, '--tenant', 'acme', '--reason', 'partner gone');
      expect(off.out).toBe(`webhook ${id} disabled`);
      expect((await cli('webhooks', 'list', '--tenant', 'acme')).out).toContain('disabled (partner gone)');
      // a viewer may not manage webhooks
      const viewer = await cli('webhooks', 'list', '--tenant', 'acme', '--role', 'viewer');
      expect(viewer.code).toBe(1);
      expect(viewer.err).toContain('403');
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
