// An authority file made before the responder signing key existed: the cloud cannot start its responder
// from it (a clear message), ensureNatsAuthority adds the key once (persisted: every cloud process uses it).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, type Account } from '@nats-io/jwt';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureNatsAuthority } from '../src/fleet/nats-authority-files.js';
import { connectWithAuthority, loadNatsAuthority } from '../src/fleet/nats-account.js';

describe('NATS authority upgrade (responder signing key)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-authority-upgrade-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a responder from an old authority, and ensureNatsAuthority upgrades it once', async () => {
    const made = await ensureNatsAuthority(dir);
    const file = made.authorityFile;
    const old = JSON.parse(readFileSync(file, 'utf8')) as { account: Record<string, unknown> };
    delete old.account.responderSigningKey;
    writeFileSync(file, JSON.stringify(old), { mode: 0o600 });
    // The CLI's service user still loads it; a responder cannot be minted from it.
    await expect(
      connectWithAuthority(loadNatsAuthority(file), 'responder', 'cloud-responder', { servers: [] }),
    ).rejects.toThrow(/no responder signing key/);

    const upgraded = await ensureNatsAuthority(dir);
    const key = upgraded.authority.account.responderSigningKey;
    expect(key.publicKey).toMatch(/^A/);
    expect(loadNatsAuthority(file).account.responderSigningKey).toEqual(key);
    // The account JWT names the responder key, scoped, with no response permission for any role.
    const claims = decode<Account>(upgraded.authority.account.jwt).nats;
    const scopes = (claims.signing_keys ?? []).filter((k) => typeof k !== 'string');
    expect(scopes.map((s) => s.role).sort()).toEqual(['responder', 'service']);
    for (const s of scopes) expect(s.template).not.toHaveProperty('resp');
    const responder = scopes.find((s) => s.role === 'responder')!;
    expect(responder.key).toBe(key.publicKey);
    expect(responder.template.pub?.allow).toEqual(['_R_.>']);
    expect(readFileSync(upgraded.serverConfigFile, 'utf8')).toContain(upgraded.authority.account.jwt);
    // A second run keeps the key.
    expect((await ensureNatsAuthority(dir)).authority.account.responderSigningKey).toEqual(key);
  });
});
