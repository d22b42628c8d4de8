import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { agentConfigSchema, type AgentConfig } from './schema.js';

export class AgentConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  readonly retryable = false;
}

function describe(error: z.ZodError): string {
  return error.issues
    .map((i) => `  ${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('\n');
}

/** Validates once at start-up (every bad key named) and freezes the result. */
export function parseAgentConfig(input: unknown, source = 'config'): Readonly<AgentConfig> {
  const result = agentConfigSchema.safeParse(input);
  if (!result.success) throw new AgentConfigError(`invalid agent ${source}:\n${describe(result.error)}`);
  return freeze(result.data);
}

export function loadAgentConfig(path: string): Readonly<AgentConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new AgentConfigError(`cannot read agent config ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseAgentConfig(raw, path);
}

function freeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) freeze(v);
    Object.freeze(value);
  }
  return value;
}
