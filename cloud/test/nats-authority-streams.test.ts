// Issue 12, PubAcks: a device can aim a PubAck at `$JS.API.STREAM.RESTORE.<name>`, which nats-server 2.10
// starts (and leaves waiting for chunks) unless the account is at its stream limit. ensureNatsAuthority gives
// the VIGIL account exactly the cloud's streams, new or existing authority.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, type Account } from '@nats-io/jwt';
import { afterAll, describe, expect, it } from 'vitest';
import { ACCOUNT_MAX_STREAMS, ensureNatsAuthority } from '../src/fleet/nats-authority-files.js';
import type { NatsAuthority } from '../src/fleet/nats-auth.js';
import { loadNatsAuthority } from '../src/fleet/nats-account.js';

describe('NATS authority: the account stream limit', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-authority-streams-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const limitOf = (jwt: string): number | undefined => decode<Account>(jwt).nats.limits?.streams;

  it('a new authority allows exactly the cloud streams; an existing unlimited one converges, and the option wins', async () => {
    const made = await ensureNatsAuthority(dir);
    expect(ACCOUNT_MAX_STREAMS).toBe(5); // EVENTS, DEAD_LETTER, TELEMETRY, MEDIA, JOBS
    expect(limitOf(made.authority.account.jwt)).toBe(ACCOUNT_MAX_STREAMS);
    // An authority from before this limit: unlimited (-1).
    const old = JSON.parse(readFileSync(made.authorityFile, 'utf8')) as NatsAuthority;
    old.account.jetstream.streams = -1;
    writeFileSync(made.authorityFile, JSON.stringify(old), { mode: 0o600 });
    const again = await ensureNatsAuthority(dir);
    expect(limitOf(again.authority.account.jwt)).toBe(ACCOUNT_MAX_STREAMS);
    expect(loadNatsAuthority(made.authorityFile).account.jetstream.streams).toBe(ACCOUNT_MAX_STREAMS);
    expect(readFileSync(again.serverConfigFile, 'utf8')).toContain(again.authority.account.jwt);
    const wider = await ensureNatsAuthority(dir, { maxStreams: 7 });
    expect(limitOf(wider.authority.account.jwt)).toBe(7);
  });
});
