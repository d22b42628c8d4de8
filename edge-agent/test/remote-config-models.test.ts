import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueServerCert } from '@vigil/certs';
import {
  DeviceServiceDefinition,
  ModelSpec,
  type DeviceServiceServer,
  type FetchModelRequest,
} from '@vigil/proto';
import { IdentityStore, type DeviceIdentity } from '../src/identity/index.js';
import { ensureModelFiles, grpcModelFetcher, modelFilePath } from '../src/index.js';
import { fleetCa, issueIdentity, tempDir } from './helpers/identity-fixtures.js';

const log = pino({ level: 'silent' });
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

// Models OTA against a stand-in DeviceService.FetchModel over mutual TLS (written here so that the unit can
// interrupt a stream on demand; the cloud's own tests cover its real FetchModel): resume from the offset
// after an interrupted stream, hash check before the file takes its final name.
describe('models OTA over gRPC FetchModel', () => {
  const tmp = tempDir('models-ota');
  const good = randomBytes(300_000);
  const liar = randomBytes(50_000);
  const liarSha = sha(randomBytes(10)); // the server answers this hash with other bytes
  const requests: Array<{ req: FetchModelRequest; peer: string | undefined }> = [];
  let interruptOnce = true;
  let server: grpc.Server;
  let identity: DeviceIdentity;
  let endpoint = '';

  beforeAll(async () => {
    const ca = fleetCa();
    const impl: Partial<DeviceServiceServer> = {
      fetchModel: (call) => {
        const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
        const peer = raw ? /^CN=(.*)$/m.exec(new X509Certificate(raw).subject)?.[1] : undefined;
        requests.push({ req: call.request, peer });
        const data =
          call.request.sha256 === sha(good) ? good : call.request.sha256 === liarSha ? liar : undefined;
        if (!data) return call.emit('error', { code: grpc.status.NOT_FOUND, details: 'no such model' });
        let pos = Number(call.request.offset);
        const stopAt = interruptOnce ? 100_000 : data.length;
        for (; pos < stopAt; pos += 32_768)
          call.write({
            offset: BigInt(pos),
            data: data.subarray(pos, Math.min(stopAt, pos + 32_768)),
            totalSize: BigInt(data.length),
          });
        if (interruptOnce) {
          interruptOnce = false;
          return call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'connection lost' });
        }
        call.end();
      },
    };
    const cert = issueServerCert(ca, {
      commonName: 'cloud-api',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
    });
    server = new grpc.Server();
    server.addService(DeviceServiceDefinition, impl as DeviceServiceServer);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        '127.0.0.1:0',
        grpc.ServerCredentials.createSsl(
          Buffer.from(ca.certPem),
          [{ private_key: Buffer.from(cert.keyPem), cert_chain: Buffer.from(cert.certPem) }],
          true,
        ),
        (err, p) => (err ? reject(err) : resolve(p)),
      ),
    );
    endpoint = `localhost:${port}`;
    const issued = issueIdentity({ grpcEndpoint: endpoint });
    identity = new IdentityStore(join(tmp.dir, 'identity')).save(issued.info, issued.material);
  });
  afterAll(() => {
    server?.forceShutdown();
    tmp.cleanup();
  });

  it('fetches a missing model with the device certificate, resuming after an interrupted stream', async () => {
    const dataDir = join(tmp.dir, 'a');
    const spec = ModelSpec.fromPartial({ name: 'det', type: 'yolox', sha256: sha(good) });
    await ensureModelFiles(
      dataDir,
      [spec],
      grpcModelFetcher(() => identity),
      log,
    );
    expect(readFileSync(modelFilePath(dataDir, sha(good))).equals(good)).toBe(true);
    const mine = requests.filter((r) => r.req.sha256 === sha(good));
    expect(mine.map((r) => Number(r.req.offset))).toEqual([0, 100_000]);
    expect(mine.every((r) => r.peer === 'gw-1')).toBe(true);
    expect(readdirSync(join(dataDir, 'models'))).toEqual([sha(good)]); // no .part left
    // Present: not fetched again.
    await ensureModelFiles(
      dataDir,
      [spec],
      grpcModelFetcher(() => identity),
      log,
    );
    expect(requests.filter((r) => r.req.sha256 === sha(good))).toHaveLength(2);
  });

  it('refuses a download whose hash does not match and keeps nothing of it', async () => {
    const dataDir = join(tmp.dir, 'b');
    const spec = ModelSpec.fromPartial({ name: 'bad', type: 'yolox', sha256: liarSha });
    await expect(
      ensureModelFiles(
        dataDir,
        [spec],
        grpcModelFetcher(() => identity),
        log,
      ),
    ).rejects.toThrow(/hash mismatch/);
    expect(existsSync(modelFilePath(dataDir, liarSha))).toBe(false);
    expect(readdirSync(join(dataDir, 'models'))).toEqual([]);
  });

  it('names an unknown model', async () => {
    const spec = ModelSpec.fromPartial({ name: 'nope', type: 'yolox', sha256: 'e'.repeat(64) });
    await expect(
      ensureModelFiles(
        join(tmp.dir, 'c'),
        [spec],
        grpcModelFetcher(() => identity),
        log,
      ),
    ).rejects.toThrow(/model "nope" download failed: .*no such model/);
    await expect(ensureModelFiles(join(tmp.dir, 'c'), [spec], undefined, log)).rejects.toThrow(
      /not on this device/,
    );
  });
});

describe('identity store: config signing keys', () => {
  it('stores the JWKS with the generation and carries it over when the cloud sends none', () => {
    const tmp = tempDir('jwks');
    try {
      const store = new IdentityStore(join(tmp.dir, 'identity'));
      const jwks = JSON.stringify({ keys: [{ kty: 'EC', kid: 'k1', crv: 'P-256', x: 'x', y: 'y' }] });
      const a = issueIdentity();
      store.save(a.info, a.material, jwks);
      expect(readFileSync(store.jwksFile, 'utf8')).toBe(jwks);
      const b = issueIdentity();
      store.save(b.info, b.material, ''); // a renewal without keys: keep the set
      expect(readFileSync(store.jwksFile, 'utf8')).toBe(jwks);
      const next = JSON.stringify({ keys: [] });
      const c = issueIdentity();
      store.save(c.info, c.material, next);
      expect(readFileSync(store.jwksFile, 'utf8')).toBe(next);
    } finally {
      tmp.cleanup();
    }
  });
});
