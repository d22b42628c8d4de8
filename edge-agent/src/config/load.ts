import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { agentConfigSchema, type AgentConfig } from './schema.js';

export type AgentConfigErrorCode =
  | 'CONFIG_INVALID' // the file is unreadable or does not match the schema
  | 'NOT_ENROLLED' // no `device` in the config and no enrolled identity
  | 'IDENTITY_CONFLICT'; // `device` in the config names another device than the enrolled identity

export class AgentConfigError extends Error {
  readonly code: AgentConfigErrorCode;
  readonly retryable = false;
  constructor(message: string, options?: { cause?: unknown; code?: AgentConfigErrorCode }) {
    super(message, options);
    this.code = options?.code ?? 'CONFIG_INVALID';
  }
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
