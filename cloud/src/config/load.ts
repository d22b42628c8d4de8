import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { ConfigError } from '../lib/errors.js';
import type { CloudRole } from './roles.js';
import { cloudConfigSchema, type CloudConfig } from './schema.js';

/** Formats zod issues as `path.to.key: message` lines so a user sees exactly which key is wrong. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => `  ${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('\n');
}

/** Validates once at start-up and freezes the result. */
export function parseCloudConfig(input: unknown, source = 'config'): Readonly<CloudConfig> {
  const result = cloudConfigSchema.safeParse(input);
  if (!result.success) throw new ConfigError(`invalid cloud ${source}:\n${describeIssues(result.error)}`);
  const problems = crossKeyProblems(result.data);
  if (problems.length > 0) throw new ConfigError(`invalid cloud ${source}:\n${problems.join('\n')}`);
  return deepFreeze(result.data);
}

/** Rules that span sections (kept out of the schema so that each section stays a plain object). */
function crossKeyProblems(c: CloudConfig): string[] {
  const problems: string[] = [];
  const servesApi = c.roles.includes('api') || c.roles.includes('realtime');
  if (servesApi && c.api.enabled && !c.auth.jwksFile && !c.auth.jwksUrl)
    problems.push('  auth: jwksFile or jwksUrl is required when api.enabled is true');
  return problems;
}

/**
 * Reads a JSON config file; `DATABASE_URL` overrides database.url (secrets come from the environment), `roles`
 * (from `--role` flags or VIGIL_CLOUD_ROLES, config/roles.ts) overrides `roles`.
 */
export function loadCloudConfig(
  path: string,
  env: NodeJS.ProcessEnv = process.env,
  roles?: readonly CloudRole[],
): Readonly<CloudConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`cannot read cloud config ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (env.DATABASE_URL && raw && typeof raw === 'object') {
    const r = raw as { database?: Record<string, unknown> };
    r.database = { ...r.database, url: env.DATABASE_URL };
  }
  if (roles && raw && typeof raw === 'object') (raw as { roles?: unknown }).roles = [...roles];
  return parseCloudConfig(raw, path);
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
