import { Server, ServerCredentials, credentials, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DeviceServiceClient,
  DeviceServiceDefinition,
  EnrollResponse,
  RenewResponse,
  type DeviceServiceServer,
  type EnrollRequest,
} from '../src/index.js';

// The generated grpc-js definitions over a real HTTP/2 connection on localhost (plaintext: TLS is the enroll
// capability's business, this only proves the wire contract and the generated glue).
describe('DeviceService over grpc-js', () => {
  const server = new Server();
  let client: InstanceType<typeof DeviceServiceClient>;
  const notAfter = new Date('2026-01-01T00:00:00.000Z');

  const impl: DeviceServiceServer = {
    enroll(call, callback) {
      if (call.request.token !== 'good-token') {
        callback({ code: status.PERMISSION_DENIED, details: 'bad token' });
        return;
      }
      callback(
        null,
        EnrollResponse.create({
          deviceId: `gw-${call.request.hardwareId}`,
          tenantId: 'acme',
          siteId: 'depot-1',
          certificatePem: 'CERT',
          caChainPem: ['INT', 'ROOT'],
          natsUrls: ['tls://127.0.0.1:4222'],
          natsUserJwt: 'JWT',
          notAfter,
        }),
      );
    },
    fetchRelease(call) {
      call.end();
    },
    fetchModel(call) {
      call.end();
    },
    renew(call, callback) {
      callback(null, RenewResponse.create({ certificatePem: `RENEWED:${call.request.csrPem}`, notAfter }));
    },
  };

  beforeAll(async () => {
    server.addService(DeviceServiceDefinition, impl);
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      );
    });
    client = new DeviceServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  });

  afterAll(async () => {
    client.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  });

  function enroll(request: EnrollRequest): Promise<EnrollResponse> {
    return new Promise((resolve, reject) => {
      client.enroll(request, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  it('enrolls', async () => {
    const res = await enroll({
      token: 'good-token',
      csrPem: 'CSR',
      agentVersion: '0.3.1',
      hardwareId: 'h1',
      natsPublicKey: 'UABC',
    });
    expect(res.deviceId).toBe('gw-h1');
    expect(res.caChainPem).toEqual(['INT', 'ROOT']);
    expect(res.notAfter).toEqual(notAfter);
  });

  it('carries gRPC status codes', async () => {
    const err = await enroll({
      token: 'bad',
      csrPem: '',
      agentVersion: '',
      hardwareId: '',
      natsPublicKey: '',
    }).catch((e: unknown) => e as ServiceError);
    expect(err).toMatchObject({ code: status.PERMISSION_DENIED, details: 'bad token' });
  });

  it('renews', async () => {
    const res = await new Promise<RenewResponse>((resolve, reject) => {
      client.renew({ csrPem: 'CSR2', natsPublicKey: '' }, (err, r) => (err ? reject(err) : resolve(r)));
    });
    expect(res.certificatePem).toBe('RENEWED:CSR2');
  });
});
