import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, ensureDevPki, issueClientCert, issueServerCert, type DevPkiPaths } from '../src/index.js';
import { makeTempDir } from './helpers.js';

let tmp: ReturnType<typeof makeTempDir>;
let pki: DevPkiPaths;
let server: tls.Server;
let port: number;
const accepted: Array<{ authorized: boolean; cn: string | undefined; uri: string | undefined }> = [];
const serverErrors: string[] = [];

interface Attempt {
  data: string;
  /** client-side error, if any. Node's TLS server rejects an unauthorized client by destroying the socket
   *  after the handshake (no alert), so under TLS 1.3 the client often sees a plain close instead. */
  error: string | undefined;
  secureConnect: boolean;
  /** the connection ended (error or close) before ATTEMPT_TIMEOUT_MS */
  ended: boolean;
}

function read(path: string): Buffer {
  return readFileSync(path);
}

/**
 * Every attempt ends by itself (greeting then close, or refusal) in milliseconds; the cap only stops a hung
 * one, so it is set far beyond what a loaded machine needs for a local handshake.
 */
const ATTEMPT_TIMEOUT_MS = 20_000;

/** Connects, waits until the server greets or the connection fails/closes, reports what the client saw. */
function attempt(opts: tls.ConnectionOptions): Promise<Attempt> {
  return new Promise((resolve) => {
    const result: Attempt = { data: '', error: undefined, secureConnect: false, ended: false };
    const socket = tls.connect({ host: '127.0.0.1', port, ca: read(pki.caCert), ...opts });
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(done, ATTEMPT_TIMEOUT_MS);
    socket.on('secureConnect', () => {
      result.secureConnect = true;
    });
    socket.on('data', (d: Buffer) => {
      result.data += d.toString();
    });
    socket.on('error', (e: Error) => {
      result.error = e.message;
      result.ended = true;
      done();
    });
    socket.on('close', () => {
      result.ended = true;
      done();
    });
  });
}

beforeAll(async () => {
  tmp = makeTempDir('tls');
  pki = ensureDevPki(join(tmp.dir, 'pki'));
  server = tls.createServer(
    {
      cert: read(pki.natsServer.cert),
      key: read(pki.natsServer.key),
      ca: read(pki.caCert),
      requestCert: true,
      rejectUnauthorized: true,
    },
    (socket) => {
      const peer = socket.getPeerCertificate();
      accepted.push({
        authorized: socket.authorized,
        cn: typeof peer.subject?.CN === 'string' ? peer.subject.CN : undefined,
        uri: peer.subjectaltname,
      });
      socket.end(`hello ${String(peer.subject?.CN)}\n`);
    },
  );
  server.on('tlsClientError', (e) => serverErrors.push(e.message));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  tmp?.cleanup();
});

describe('mutual TLS with the dev PKI (node:tls)', () => {
  it('accepts a device cert and the client verifies the server as localhost and 127.0.0.1', async () => {
    const n = accepted.length;
    const dev = pki.devices['dev/dev-001']!;
    const viaName = await attempt({ servername: 'localhost', cert: read(dev.cert), key: read(dev.key) });
    expect(viaName).toMatchObject({
      error: undefined,
      secureConnect: true,
      data: 'hello dev-001\n',
      ended: true,
    });
    const viaIp = await attempt({ cert: read(dev.cert), key: read(dev.key) }); // identity check against IP SAN
    expect(viaIp).toMatchObject({ error: undefined, data: 'hello dev-001\n' });
    expect(accepted.slice(n)).toEqual([
      { authorized: true, cn: 'dev-001', uri: 'URI:spiffe://vigil/tenant/dev/device/dev-001' },
      { authorized: true, cn: 'dev-001', uri: 'URI:spiffe://vigil/tenant/dev/device/dev-001' },
    ]);
  });

  it('accepts a cloud service cert', async () => {
    const svc = pki.services.cloud!;
    const r = await attempt({ servername: 'localhost', cert: read(svc.cert), key: read(svc.key) });
    expect(r.data).toBe('hello cloud\n');
  });

  it('refuses a client cert from an independent CA', async () => {
    const n = accepted.length;
    const e = serverErrors.length;
    const rogueCa = createCa({ commonName: 'Vigil Dev CA' }); // same name, different key
    const rogue = issueClientCert(rogueCa, {
      commonName: 'dev-001',
      uris: ['spiffe://vigil/tenant/dev/device/dev-001'],
    });
    const r = await attempt({ servername: 'localhost', cert: rogue.certPem, key: rogue.keyPem });
    expect(r).toMatchObject({ data: '', ended: true }); // refused: no greeting, connection torn down
    expect(accepted.length).toBe(n); // the server never saw an authorized peer
    expect(serverErrors.length).toBeGreaterThan(e); // and it reported the failed client
  });

  it('refuses a client without a certificate', async () => {
    const n = accepted.length;
    const r = await attempt({ servername: 'localhost' });
    expect(r).toMatchObject({ data: '', ended: true });
    expect(accepted.length).toBe(n);
  });

  it('refuses a serverAuth-only cert used as a client cert (EKU is enforced)', async () => {
    const n = accepted.length;
    const r = await attempt({
      servername: 'localhost',
      cert: read(pki.cloudApi.cert),
      key: read(pki.cloudApi.key),
    });
    expect(r).toMatchObject({ data: '', ended: true });
    expect(accepted.length).toBe(n);
  });

  it('the client refuses a server cert from another CA', async () => {
    const rogueCa = createCa({ commonName: 'Vigil Dev CA' });
    const rogueServer = issueServerCert(rogueCa, {
      commonName: 'nats-server',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
    });
    const other = tls.createServer({ cert: rogueServer.certPem, key: rogueServer.keyPem }, (s) =>
      s.end('hi'),
    );
    other.on('tlsClientError', () => undefined);
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    try {
      const otherPort = (other.address() as { port: number }).port;
      const r = await new Promise<string>((resolve) => {
        const s = tls.connect({
          host: '127.0.0.1',
          port: otherPort,
          servername: 'localhost',
          ca: read(pki.caCert),
        });
        s.on('secureConnect', () => resolve('connected'));
        s.on('error', (e: NodeJS.ErrnoException) => resolve(String(e.code)));
      });
      expect(r).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
    } finally {
      await new Promise((r) => other.close(r));
    }
  });
});

// Go's crypto/x509 is stricter than OpenSSL (serial encoding, string types, EKU): check against the real broker.
const natsServerBin = (() => {
  const r = spawnSync('nats-server', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? 'nats-server' : undefined;
})();

describe.skipIf(!natsServerBin)('mutual TLS against a real nats-server', () => {
  let proc: ChildProcess | undefined;
  let natsPort = 0;

  beforeAll(async () => {
    const conf = join(tmp.dir, 'nats.conf');
    writeFileSync(
      conf,
      `listen: "127.0.0.1:-1"\ntls {\n  cert_file: "${pki.natsServer.cert}"\n  key_file: "${pki.natsServer.key}"\n` +
        `  ca_file: "${pki.caCert}"\n  verify: true\n}\n`,
    );
    proc = spawn(natsServerBin!, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    natsPort = await new Promise<number>((resolve, reject) => {
      let log = '';
      const timer = setTimeout(() => reject(new Error(`nats-server did not start:\n${log}`)), 10_000);
      const onData = (d: Buffer) => {
        log += d.toString();
        const m = /Listening for client connections on 127\.0\.0\.1:(\d+)/.exec(log);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      };
      proc!.stdout!.on('data', onData);
      proc!.stderr!.on('data', onData);
      proc!.on('exit', (code) => reject(new Error(`nats-server exited ${String(code)}:\n${log}`)));
    });
  });

  afterAll(() => {
    if (proc?.pid && proc.exitCode === null) proc.kill('SIGTERM');
  });

  /** Plain INFO, then STARTTLS-style upgrade (NATS default), CONNECT + PING; resolves with the reply or error. */
  function natsPing(cert?: { cert: string | Buffer; key: string | Buffer }): Promise<string> {
    return new Promise((resolve) => {
      const raw = netConnect(natsPort, '127.0.0.1');
      const timer = setTimeout(() => resolve('timeout'), ATTEMPT_TIMEOUT_MS);
      const finish = (v: string) => {
        clearTimeout(timer);
        raw.destroy();
        resolve(v);
      };
      raw.on('error', (e) => finish(`error: ${e.message}`));
      raw.once('data', () => {
        const s = tls.connect({
          socket: raw,
          servername: 'localhost',
          ca: read(pki.caCert),
          ...(cert ?? {}),
        });
        s.on('secureConnect', () => s.write('CONNECT {"verbose":false}\r\nPING\r\n'));
        s.on('data', (d: Buffer) => finish(d.toString()));
        s.on('error', (e: Error) => finish(`error: ${e.message}`));
        s.on('close', () => finish('closed'));
      });
    });
  }

  it('accepts the device cert and refuses no cert, a foreign cert and a server cert', async () => {
    const dev = pki.devices['dev/dev-001']!;
    expect(await natsPing({ cert: read(dev.cert), key: read(dev.key) })).toBe('PONG\r\n');
    expect(await natsPing()).toMatch(/^error|^closed/);
    const rogue = issueClientCert(createCa({ commonName: 'Vigil Dev CA' }), { commonName: 'dev-001' });
    expect(await natsPing({ cert: rogue.certPem, key: rogue.keyPem })).toMatch(/^error|^closed/);
    expect(await natsPing({ cert: read(pki.natsServer.cert), key: read(pki.natsServer.key) })).toMatch(
      /^error|^closed/,
    );
  });
});
