import type { ConfigBody } from './body.js';

/** The scopes a desired-state document may have, least specific first. */
export const CONFIG_SCOPES = ['tenant', 'site', 'device'] as const;
export type ConfigScope = (typeof CONFIG_SCOPES)[number];

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);

function mergeValue(base: unknown, over: unknown): unknown {
  if (over === undefined) return base;
  if (isPlain(base) && isPlain(over)) {
    const out: Plain = { ...base };
    for (const [k, v] of Object.entries(over)) out[k] = mergeValue(base[k], v);
    return out;
  }
  // Arrays (cameras, models, and anything inside them) and scalars: the more specific level wins whole.
  return over;
}

/**
 * The effective body of a device: its tenant's document, overlaid by its site's, overlaid by its own. Objects
 * (buffer, retention, privacy, attributes) merge key by key; arrays (cameras, models) are replaced whole by the
 * most specific level that sets them. Pure; absent levels are skipped.
 */
export function mergeConfigBodies(...levels: Array<ConfigBody | undefined>): ConfigBody {
  let out: unknown = {};
  for (const level of levels) if (level !== undefined) out = mergeValue(out, level);
  return out as ConfigBody;
}
