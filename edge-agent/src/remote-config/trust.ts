import { existsSync, readFileSync } from 'node:fs';
import type { AgentConfig } from '../config/schema.js';
import type { IdentityStore } from '../identity/index.js';
import { parseTrustSet, type ConfigTrustSet } from './verify.js';

/**
 * The config signing keys this agent trusts: the JWKS the cloud handed out with the enrolled identity
 * (<identity>/current/config-jwks.json) plus `remoteConfig.trustedKeysFile` for pre-provisioned agents.
 * Read on each use (small files), so a renewal that brings a rotated key takes effect at once.
 */
export function loadTrustSet(
  config: Readonly<AgentConfig>,
  store: IdentityStore | undefined,
  warn: (message: string) => void,
): ConfigTrustSet | undefined {
  const keys: ConfigTrustSet['keys'] = [];
  for (const file of [store?.jwksFile, config.remoteConfig.trustedKeysFile]) {
    if (!file || !existsSync(file)) continue;
    try {
      keys.push(...parseTrustSet(readFileSync(file, 'utf8')).keys);
    } catch (err) {
      warn(`${file}: not a usable JWKS (${(err as Error).message})`);
    }
  }
  return keys.length > 0 ? { keys } : undefined;
}
