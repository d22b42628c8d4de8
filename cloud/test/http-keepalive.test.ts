import { Agent, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { applyServerTimeouts, createHttpApp } from '../src/api/http.js';
import { cloudConfigSchema } from '../src/config/schema.js';

// Issue 20 soak: client-side ECONNRESETs came from Node's 5 s keep-alive default closing idle connections that
// clients were reusing. The cloud sets its server timeouts from config (http.*TimeoutSeconds).

const minimal = {
  database: { url: 'postgres://localhost/x' },
  nats: { servers: ['tls://localhost:4222'], tls: { caFile: 'a', certFile: 'b', keyFile: 'c' } },
};

function get(port: number, agent: Agent): Promise<{ keepAlive: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/healthz', agent }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve({ keepAlive: String(res.headers['keep-alive']), reused: req.reusedSocket }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

describe('HTTP server timeouts', () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

  it('defaults: keep-alive 65 s (above a 60 s proxy idle timeout), headers 60 s, request 300 s', () => {
    const { http } = cloudConfigSchema.parse(minimal);
    expect(http).toMatchObject({
      keepAliveTimeoutSeconds: 65,
      headersTimeoutSeconds: 60,
      requestTimeoutSeconds: 300,
    });
    expect(() =>
      cloudConfigSchema.parse({
        ...minimal,
        http: { headersTimeoutSeconds: 120, requestTimeoutSeconds: 60 },
      }),
    ).toThrow(/headersTimeoutSeconds must not exceed requestTimeoutSeconds/);
  });

  it('announces its keep-alive and keeps an idle connection past Node default (5 s + 1 s)', async () => {
    const app = createHttpApp(new Registry(), []);
    server = await new Promise<Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    applyServerTimeouts(server, cloudConfigSchema.parse(minimal).http);
    expect(server.keepAliveTimeout).toBe(65_000);
    expect(server.headersTimeout).toBe(60_000);
    expect(server.requestTimeout).toBe(300_000);
    const { port } = server.address() as AddressInfo;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await get(port, agent);
      expect(first.keepAlive).toBe('timeout=65');
      expect(first.reused).toBe(false);
      // Idle longer than Node's default would keep it (the server would have closed it at 6 s).
      await new Promise((r) => setTimeout(r, 7_000));
      const second = await get(port, agent);
      expect(second.reused).toBe(true);
    } finally {
      agent.destroy();
    }
  }, 30_000);
});
