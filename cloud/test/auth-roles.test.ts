import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ACTION_RESOURCE_TYPES, ACTIONS, ROLES, rolesGranted, type Resource } from '../src/auth/authorize.js';
import { createCedarAuthorizer, DEFAULT_POLICIES_DIR } from '../src/auth/cedar.js';

// ROLES and rolesGranted are what tools (the CLI's --role help and checks) read: they must say what the
// policies the cloud enforces say.
describe('the role list', () => {
  it('is exactly the roles the Cedar policies name', () => {
    const named = new Set<string>();
    for (const f of readdirSync(DEFAULT_POLICIES_DIR).filter((n) => n.endsWith('.cedar')))
      for (const m of readFileSync(join(DEFAULT_POLICIES_DIR, f), 'utf8').matchAll(
        /principal\.roles\.contains\("([^"]+)"\)/g,
      ))
        named.add(m[1]!);
    expect([...named].sort()).toEqual([...ROLES].sort());
  });

  it('grants each action to the roles the Cedar policies permit it to (tenant-wide, metadata)', async () => {
    const authz = createCedarAuthorizer({ log: pino({ level: 'silent' }), metrics: new Registry() });
    for (const action of ACTIONS) {
      const type = ACTION_RESOURCE_TYPES[action][0]!;
      const resource = { type, tenant: 'acme', id: 'x1' } as unknown as Resource;
      const permitted: string[] = [];
      for (const role of ROLES) {
        const d = await authz.authorize(
          { subject: `u-${role}`, tenant: 'acme', roles: [role] },
          action,
          resource,
        );
        if (d.allowed) permitted.push(role);
      }
      expect([...rolesGranted(action)].sort(), action).toEqual(permitted.sort());
    }
  });
});
