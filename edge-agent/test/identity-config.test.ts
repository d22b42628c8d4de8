import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentConfigError, parseAgentConfig } from '../src/config/load.js';
import { IdentityError, IdentityStore, natsPlan, resolveDeviceIdentity } from '../src/identity/index.js';
import { IDS, issueIdentity, tempDir } from './helpers/identity-fixtures.js';

function configError(fn: () => unknown): AgentConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(AgentConfigError);
    return e as AgentConfigError;
  }
  throw new Error('expected an AgentConfigError');
}

describe('agent config: identity', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => {
    tmp = tempDir('identity-config');
  });
  afterEach(() => tmp.cleanup());

  const enroll = (dir = join(tmp.dir, 'identity'), ids = IDS) => {
    const issued = issueIdentity({ ids, natsUrls: ['tls://nats.example:4222'] });
    return new IdentityStore(dir).save(issued.info, issued.material);
  };

  it('makes device optional and fills identity defaults', () => {
    const cfg = parseAgentConfig({ dataDir: tmp.dir });
    expect(cfg.device).toBeUndefined();
    expect(cfg.identity).toEqual({ renew: { enabled: true, atFraction: 0.66 } });
    expect(() => parseAgentConfig({ identity: { renew: { atFraction: 0.95 } } })).toThrow(
      /identity\.renew\.atFraction/,
    );
    expect(() => parseAgentConfig({ identity: { grpcEndpoint: 'no-port' } })).toThrow(
      /grpcEndpoint: must be host:port/,
    );
    expect(
      parseAgentConfig({
        device: IDS,
        nats: { servers: ['tls://x:1'], tls: { caFile: 'a', certFile: 'b', keyFile: 'c' }, credsFile: 'd' },
      }).nats?.credsFile,
    ).toBe('d');
  });

  it('takes tenant, site and device from the enrolled identity when the config has no device', () => {
    const saved = enroll();
    const r = resolveDeviceIdentity(parseAgentConfig({ dataDir: tmp.dir }));
    expect(r.device).toEqual(IDS);
    expect(r.identity?.notAfter).toEqual(saved.notAfter);
    // identity.dir points elsewhere than <dataDir>/identity
    const other = join(tmp.dir, 'elsewhere');
    enroll(other, { ...IDS, deviceId: 'gw-9' });
    expect(
      resolveDeviceIdentity(parseAgentConfig({ dataDir: tmp.dir, identity: { dir: other } })).device.deviceId,
    ).toBe('gw-9');
  });

  it('accepts a config device that matches the identity, refuses one that differs, naming both', () => {
    enroll();
    expect(resolveDeviceIdentity(parseAgentConfig({ dataDir: tmp.dir, device: IDS })).device).toEqual(IDS);
    const err = configError(() =>
      resolveDeviceIdentity(parseAgentConfig({ dataDir: tmp.dir, device: { ...IDS, siteId: 'warehouse' } })),
    );
    expect(err.code).toBe('IDENTITY_CONFLICT');
    expect(err.message).toContain('acme/warehouse/gw-1');
    expect(err.message).toContain('acme/hq/gw-1');
  });

  it('refuses to start with neither a device nor an identity, saying to enroll first', () => {
    const err = configError(() => resolveDeviceIdentity(parseAgentConfig({ dataDir: tmp.dir })));
    expect(err.code).toBe('NOT_ENROLLED');
    expect(err.message).toMatch(/run vigil-agent enroll first/i);
    // Pre-provisioned (dev stack, tests): a device and no identity is fine.
    const r = resolveDeviceIdentity(parseAgentConfig({ dataDir: tmp.dir, device: IDS }));
    expect(r.identity).toBeUndefined();
    expect(natsPlan(parseAgentConfig({ dataDir: tmp.dir, device: IDS }), r.identity)).toBeUndefined();
  });

  it('an unusable stored identity stops the start with the file named', () => {
    const saved = enroll();
    expect(readFileSync(saved.files.meta, 'utf8')).toContain('"deviceId": "gw-1"');
    writeFileSync(saved.files.key, issueIdentity().material.keyPem); // a foreign key under the current cert
    const start = () => resolveDeviceIdentity(parseAgentConfig({ dataDir: tmp.dir }));
    expect(start).toThrow(IdentityError);
    expect(start).toThrow(/does not match the private key in .*device\.key/);
  });

  it('connects to NATS as configured, else as the identity says (files, so renewals are re-read)', () => {
    const saved = enroll();
    const fromIdentity = natsPlan(parseAgentConfig({ dataDir: tmp.dir }), saved);
    expect(fromIdentity?.source).toBe('identity');
    expect(fromIdentity?.options.servers).toEqual(['tls://nats.example:4222']);
    expect(fromIdentity?.options.tls).toEqual({
      caFile: saved.files.ca,
      certFile: saved.files.cert,
      keyFile: saved.files.key,
    });
    expect(saved.files.cert).toContain(join('identity', 'current'));
    const auth = fromIdentity?.options.authenticator;
    expect(typeof auth).toBe('function');
    const connectFields = (auth as (nonce?: string) => { jwt?: string; nkey?: string; sig?: string })(
      'nonce-1',
    );
    expect(connectFields.jwt).toBe(saved.material.natsJwt);
    expect(connectFields.nkey).toBe(saved.natsPublicKey);

    const configured = natsPlan(
      parseAgentConfig({
        dataDir: tmp.dir,
        nats: { servers: ['tls://localhost:14222'], tls: { caFile: 'ca', certFile: 'crt', keyFile: 'key' } },
      }),
      saved,
    );
    expect(configured?.source).toBe('config');
    expect(configured?.options.authenticator).toBeUndefined();
    expect(configured?.options.servers).toEqual(['tls://localhost:14222']);
  });
});
