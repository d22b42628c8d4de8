import type { Command } from 'commander';
import {
  DEFAULT_AUDIENCE,
  DEFAULT_ISSUER,
  devSubject,
  loadDevSigningKey,
  MAX_TTL_SECONDS,
  mintToken,
} from '../adapters/dev-token.js';
import { globals, int, roleOption, subjectOption, type CliContext } from './common.js';

/** `vigil token`: development access tokens for the REST API. */
export function register(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const token = program.command('token').description('development access tokens for the REST API');
  token
    .command('mint')
    .description('mint a token signed with the dev signing key (<pki>/api-signing.jwk.json)')
    .requiredOption('--tenant <id>', 'tenant claim: the tenant every API call is scoped to')
    .addOption(roleOption('admin'))
    .option(
      '--ttl <seconds>',
      `lifetime in seconds, at most ${MAX_TTL_SECONDS}`,
      int(1, MAX_TTL_SECONDS),
      3600,
    )
    .addOption(subjectOption())
    .option('--issuer <iss>', 'issuer claim: must match the cloud auth.issuer', DEFAULT_ISSUER)
    .option('--audience <aud>', 'audience claim: must match the cloud auth.audience', DEFAULT_AUDIENCE)
    .addHelpText(
      'after',
      '\nPrints only the token on stdout:\n  TOKEN=$(pnpm vigil token mint --tenant dev)\n  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/v1/events',
    )
    .action(
      async (
        o: { tenant: string; role: string[]; ttl: number; sub?: string; issuer: string; audience: string },
        cmd: Command,
      ) => {
        const g = globals(cmd);
        const roles = o.role;
        const minted = await mintToken(loadDevSigningKey(g.pki), {
          tenant: o.tenant,
          roles,
          sub: o.sub ?? devSubject(o.tenant, roles),
          ttlSeconds: o.ttl,
          issuer: o.issuer,
          audience: o.audience,
          ...(ctx.now ? { now: ctx.now() } : {}),
        });
        if (g.json)
          io.out(
            JSON.stringify({
              token: minted.token,
              expires_at: minted.expiresAt.toISOString(),
              claims: minted.claims,
            }),
          );
        else {
          io.out(minted.token);
          io.err(`tenant ${o.tenant}, roles ${roles.join(',')}, expires ${minted.expiresAt.toISOString()}`);
        }
      },
    );
}
