// The simulator's ConfigStatus over a sequence of configs, pinned to @vigil/proto's CONFIG_REPORT_CONTRACT (the
// table the edge agent's test replays against the real RemoteConfigManager): it must not be kinder than the
// agent (issue #13). Configs are handed to the simulated agent directly (no NATS needed for its decisions).
import { CompactSign, exportJWK, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { CONFIG_REPORT_CONTRACT, DeviceConfig, SignedConfig } from '@vigil/proto';
import { DEFAULT_BEHAVIOUR, SimAgent, type EnrolledDevice } from '../src/index.js';

const DEVICE = { tenantId: 'acme', deviceId: 'sim-report', siteId: 'hq' };

describe('fleet-sim agent: the status it reports follows the config report contract', () => {
  it('replays CONFIG_REPORT_CONTRACT', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const kid = 'cfg-test';
    const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256' }] });
    const device: EnrolledDevice = {
      ...DEVICE,
      keyPem: '',
      certificatePem: '',
      natsUserJwt: '',
      natsSeed: '',
      natsUrls: [],
      configSigningJwks: jwks,
    };
    const agent = new SimAgent(device, '', { ...DEFAULT_BEHAVIOUR, applyMinMs: 0, applyMaxMs: 1 });
    const sign = async (version: bigint, attributes: Record<string, string>): Promise<Uint8Array> => {
      const body = DeviceConfig.fromPartial({ ...DEVICE, version, issuedAt: new Date(), attributes });
      const jws = await new CompactSign(DeviceConfig.encode(body).finish())
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'vigil-config+jws' })
        .sign(privateKey);
      return SignedConfig.encode({ jws, keyId: kid, version }).finish();
    };

    for (const c of CONFIG_REPORT_CONTRACT) {
      const s = c.step;
      if ('deliver' in s) {
        const fail = s.outcome === 'unhealthy' ? 'true' : s.outcome === 'invalid' ? 'refuse' : undefined;
        await agent.deliver(await sign(s.deliver, fail ? { 'sim.fail': fail } : { rev: `v${s.deliver}` }));
      } else if ('replay' in s) {
        await agent.deliver(await sign(s.replay, { rev: 'again' }));
      } else {
        await agent.poll(); // not connected: records the status it would send
      }
      const st = agent.status();
      const label = JSON.stringify(s, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
      expect({ version: st.version, appliedVersion: st.appliedVersion, state: st.state }, label).toEqual({
        version: c.expect.version,
        appliedVersion: c.expect.appliedVersion,
        state: c.expect.state,
      });
      if (c.expect.reason) expect(st.reason, label).toMatch(c.expect.reason);
      if ('poll' in s) expect(agent.statuses.at(-1)).toMatchObject({ version: st.version, state: st.state });
    }
    await agent.close();
  });
});
