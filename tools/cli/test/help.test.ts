import type { Command } from 'commander';
import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { ensureDevSigningKey, ROLES, rolesGranted } from '@vigil/cloud';
import { usePki } from '@vigil/testkit';
import { buildProgram, runCli } from '../src/index.js';

// The help texts say what the commands do: the roles are the cloud's role list (one source), each command
// shows the default role it really uses, once, and the roles the cloud grants its action.

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, { io: { out: (t) => out.push(t), err: (t) => err.push(t) } });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** The help entry of `--role`, joined into one line. */
function roleEntry(help: string): string {
  const lines = help.split('\n');
  const at = lines.findIndex((l) => l.trimStart().startsWith('--role <role>'));
  expect(at, help).toBeGreaterThanOrEqual(0);
  const entry = [lines[at]!];
  for (const l of lines.slice(at + 1)) {
    if (/^\s+-/.test(l) || l.trim() === '') break;
    entry.push(l.trim());
  }
  return entry.join(' ').replace(/\s+/g, ' ');
}

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}

describe('vigil help: roles and defaults', () => {
  it('enroll-token create: the cloud roles, installer among those it needs, one default (admin)', async () => {
    const { code, out } = await cli('enroll-token', 'create', '--help');
    expect(code).toBe(0);
    const role = roleEntry(out);
    expect(role).toContain(`repeatable: ${ROLES.join(', ')};`);
    expect(role).toContain(
      `enrollment-tokens:create needs ${rolesGranted('enrollment-tokens:create').join(' or ')}`,
    );
    expect(role).toContain('installer');
    expect(role.match(/\(default: [^)]*\)/g)).toEqual(['(default: admin)']);
    expect(out).not.toMatch(/has role admin unless/); // the old, second statement of the default
  });

  it('token mint: the cloud roles (installer too), one default (admin)', async () => {
    const { code, out } = await cli('token', 'mint', '--help');
    expect(code).toBe(0);
    const role = roleEntry(out);
    expect(role).toContain(`repeatable: ${ROLES.join(', ')}`);
    expect(role.match(/\(default: [^)]*\)/g)).toEqual(['(default: admin)']);
  });

  it('every command with --role: one default, a cloud role, granted its action when it names one', () => {
    const program = buildProgram({ io: { out: () => undefined, err: () => undefined } }, { exitCode: 0 });
    let checked = 0;
    for (const cmd of allCommands(program)) {
      const opt = cmd.options.find((o) => o.long === '--role');
      if (!opt) continue;
      checked++;
      const entry = roleEntry(cmd.helpInformation());
      expect(entry).not.toContain('(default: [])');
      const defaults = entry.match(/\(default: ([^)]*)\)/g) ?? [];
      expect(defaults, `${cmd.name()}: ${entry}`).toHaveLength(1);
      expect(ROLES).toContain(opt.defaultValueDescription);
      expect(opt.defaultValue).toEqual([opt.defaultValueDescription]);
      const needs = /(\S+:\S+) needs (.*?) \(default/.exec(entry);
      if (needs) expect(needs[2]!.split(' or ')).toContain(opt.defaultValueDescription);
    }
    expect(checked).toBeGreaterThan(10);
  });

  it('refuses a role the cloud does not know, naming the known ones', async () => {
    const res = await cli('token', 'mint', '--tenant', 'dev', '--role', 'superuser');
    expect(res.code).toBe(2);
    expect(res.err).toContain(
      `option '--role <role>' argument 'superuser' is invalid. expected one of ${ROLES.join(', ')}`,
    );
  });
});

describe('vigil token mint: the claims it prints are the ones in the help', () => {
  const pki = usePki({ services: [] });

  it('mints role admin and subject dev-admin@<tenant> by default; --role replaces the default', async () => {
    ensureDevSigningKey(pki().dir);
    const def = await cli('--pki', pki().dir, 'token', 'mint', '--tenant', 'acme');
    expect(def.code, def.err).toBe(0);
    expect(decodeJwt(def.out)).toMatchObject({ roles: ['admin'], sub: 'dev-admin@acme', tenant: 'acme' });
    const two = await cli(
      ...['--pki', pki().dir, 'token', 'mint', '--tenant', 'acme', '--role', 'installer', '--role', 'viewer'],
    );
    expect(decodeJwt(two.out)).toMatchObject({
      roles: ['installer', 'viewer'],
      sub: 'dev-installer+viewer@acme',
    });
    const named = await cli('--pki', pki().dir, 'token', 'mint', '--tenant', 'acme', '--sub', 'alice@acme');
    expect(decodeJwt(named.out)).toMatchObject({ roles: ['admin'], sub: 'alice@acme' });
  });
});
