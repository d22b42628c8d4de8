// Issue 20 soak: the client-side ECONNRESETs. Reproduces the keep-alive race and shows what removes it. Prints JSON.
//
//   node --conditions=@vigil/source --import tsx cloud/bench/keepalive-race.bench.ts [--tries 4]
//
// A request reaches an idle keep-alive connection just before the server's keep-alive timer (keepAliveTimeout
// + Node's 1 s of grace) while the server's event loop is busy (a loaded machine). When the loop resumes, the
// timer runs before the socket is read: the server destroys the socket with the request unread, the kernel
// answers RST and the client gets ECONNRESET. Cases, each --tries times, the server in its own process:
//   node-default   server keepAliveTimeout 5 s (Node's default), client Agent without `timeout` (ignores the
//                  Keep-Alive hint): the request lands at the server's deadline -> the race.
//   client-hint    same server, client Agent with `timeout` (honours `Keep-Alive: timeout=5`: closes idle
//                  sockets after 4 s), same idle time: the client opens a new connection, no race.
//   cloud-config   server timeouts as the cloud sets them (applyServerTimeouts, config defaults: 65 s), the
//                  client of node-default, same idle time: the connection is simply reused.
import { fork } from 'node:child_process';
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { applyServerTimeouts } from '../src/api/http.js';
import { cloudConfigSchema } from '../src/config/schema.js';

const NODE_DEFAULT_MS = 5000;
const GRACE_MS = 1000; // Node's HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER
const BLOCK_MS = 150;

if (process.argv[2] === '--serve') {
  // The server: `/block` keeps the event loop busy for BLOCK_MS (what load does to it).
  const server = createServer((req, res) => {
    if (req.url === '/block') for (const until = performance.now() + BLOCK_MS; performance.now() < until;);
    res.end('ok');
  });
  if (process.argv[3] === 'cloud-config')
    applyServerTimeouts(
      server,
      cloudConfigSchema.parse({
        database: { url: 'postgres://x/y' },
        nats: { servers: ['tls://x:4222'], tls: { caFile: 'a', certFile: 'b', keyFile: 'c' } },
      }).http,
    );
  else server.keepAliveTimeout = NODE_DEFAULT_MS;
  server.listen(0, '127.0.0.1', () => process.send?.((server.address() as AddressInfo).port));
} else {
  const { values } = parseArgs({ options: { tries: { type: 'string', default: '4' } } });
  const tries = Math.max(1, Math.min(50, Number(values.tries)));
  const results: Record<string, Record<string, number>> = {};
  for (const c of ['node-default', 'client-hint', 'cloud-config'] as const) results[c] = await run(c, tries);
  process.stdout.write(
    `${JSON.stringify({ tries, loadavg: loadavg().map((x) => +x.toFixed(2)), results }, null, 2)}\n`,
  );
}

async function run(c: string, tries: number): Promise<Record<string, number>> {
  const child = fork(new URL(import.meta.url).pathname, ['--serve', c], {
    execArgv: process.execArgv,
  });
  const port = await new Promise<number>((resolve) => child.once('message', (m) => resolve(Number(m))));
  const agent = new Agent({
    keepAlive: true,
    maxSockets: 1,
    ...(c === 'client-hint' ? { timeout: 60_000 } : {}),
  });
  const busy = new Agent({ keepAlive: false });
  const get = (path: string, a: Agent): Promise<string> =>
    new Promise((resolve) => {
      const req = request({ host: '127.0.0.1', port, path, agent: a }, (res) => {
        res.resume();
        res.on('end', () => resolve(`${res.statusCode}${req.reusedSocket ? ' reused' : ' new'}`));
      });
      req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      req.end();
    });
  const out: Record<string, number> = {};
  try {
    for (let i = 0; i < tries; i++) {
      await get('/', agent);
      // Idle until just before the node-default server's deadline, make it busy, then reuse the connection.
      await new Promise((r) => setTimeout(r, NODE_DEFAULT_MS + GRACE_MS - 80));
      void get('/block', busy);
      await new Promise((r) => setTimeout(r, 40));
      const r = await get('/', agent);
      out[r] = (out[r] ?? 0) + 1;
    }
  } finally {
    agent.destroy();
    child.kill();
  }
  return out;
}
