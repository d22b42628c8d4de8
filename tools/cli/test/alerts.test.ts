import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { capSchemaFile } from '@vigil/testkit';
import { describe, expect, it } from 'vitest';
import { useCliCloud } from './support/cloud.js';

const XSD = capSchemaFile();

// `vigil alerts` against the real cloud: a target and a rule made with the CLI; the agency (a local server, an
// outside party; http with RFC 9421 signatures here, mTLS is covered by cloud/test/alerts-cap.test.ts) refuses
// the first Alert, which becomes a dead letter; the CLI lists it and replays it; the incident is cancelled.
describe('vigil alerts (against the cloud)', () => {
  const { cli, publish } = useCliCloud({
    integrations: {
      allowInsecureHttp: true,
      allowPrivateNetworks: true,
      backoff: { initialMs: 100, maxMs: 200 },
    },
    alerts: { capSchemaFile: XSD },
  });

  it('creates a target and a rule, lists a dead letter, replays it, cancels the incident', async () => {
    const received: Array<{ type: string; signed: boolean }> = [];
    let refuse = true;
    const server: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push({
          type: /<msgType>(\w+)</.exec(body)?.[1] ?? '?',
          signed: typeof req.headers.signature === 'string',
        });
        res.writeHead(refuse ? 400 : 200).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/cap`;
      const t = await cli(
        'alerts',
        'targets',
        'create',
        '--tenant',
        'acme',
        '--name',
        'dispatch',
        '--url',
        url,
        '--signature',
      );
      expect(t.code, t.err).toBe(0);
      const target = /^target (\S+) -> /.exec(t.out)?.[1];
      expect(t.out).toMatch(/^secret: \S{16,}$/m);
      const pull = await cli(
        'alerts',
        'targets',
        'create',
        '--tenant',
        'acme',
        '--name',
        'feed-only',
        '--pull',
        '--format',
        'eido',
      );
      expect(pull.code, pull.err).toBe(0);
      expect(pull.out).toMatch(/^target \S+ -> Atom feed only \(feed, eido\)$/m);
      expect(pull.out).toMatch(/^feed token: \S{20,}$/m);
      const both = await cli(
        'alerts',
        'targets',
        'create',
        '--tenant',
        'acme',
        '--name',
        'x',
        '--pull',
        '--url',
        url,
      );
      expect(both.code).not.toBe(0);
      expect((await cli('alerts', 'targets', 'list', '--tenant', 'acme')).out).toMatch(
        /feed-only\s+eido\s+feed\s+enabled\s+\(pull: Atom feed\)/,
      );
      const r = await cli(
        'alerts',
        'rules',
        'create',
        '--tenant',
        'acme',
        '--name',
        'people',
        '--event',
        'Intrusion',
        '--target',
        target!,
        '--label',
        'person',
        '--camera',
        'door',
      );
      expect(r.code, r.err).toBe(0);
      expect((await cli('alerts', 'rules', 'list', '--tenant', 'acme')).out).toContain('people');

      await publish('door', 'car'); // not matching
      await publish('door', 'person');
      await expect
        .poll(
          async () => (await cli('alerts', 'list', '--tenant', 'acme', '--messages', '--state', 'dead')).out,
          { timeout: 30_000 },
        )
        .toMatch(/Alert\s+dead\s+1\s+400\s+HTTP 400/);
      const dead = (
        await cli('alerts', 'list', '--tenant', 'acme', '--messages', '--state', 'dead', '--json')
      ).out;
      const id = (JSON.parse(dead.split('\n')[0]!) as { id: string }).id;
      refuse = false;
      const replay = await cli('alerts', 'replay', id, '--tenant', 'acme');
      expect(replay.out).toBe(`message ${id} pending`);
      await expect
        .poll(
          async () =>
            (await cli('alerts', 'list', '--tenant', 'acme', '--messages', '--state', 'delivered')).out,
          { timeout: 30_000 },
        )
        .toContain(id);
      expect(received.map((x) => x.type)).toEqual(['Alert', 'Alert']);
      expect(received.every((x) => x.signed)).toBe(true);

      const incidents = (await cli('alerts', 'list', '--tenant', 'acme', '--json')).out
        .split('\n')
        .filter(Boolean);
      expect(incidents).toHaveLength(1);
      const incident = (JSON.parse(incidents[0]!) as { id: string }).id;
      const viewer = await cli(
        'alerts',
        'cancel',
        incident,
        '--tenant',
        'acme',
        '--role',
        'viewer',
        '--reason',
        'x',
      );
      expect(viewer.code).toBe(1);
      const cancel = await cli('alerts', 'cancel', incident, '--tenant', 'acme', '--reason', 'false alarm');
      expect(cancel.out).toBe(`incident ${incident} cancelled`);
      await expect
        .poll(() => received.map((x) => x.type), { timeout: 30_000 })
        .toEqual(['Alert', 'Alert', 'Cancel']);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
