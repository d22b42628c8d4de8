import { InvalidArgumentError, Option, type Command } from 'commander';
import { ApiClient } from '../adapters/api.js';
import { DEFAULT_AUDIENCE, DEFAULT_ISSUER, loadDevSigningKey, mintToken } from '../adapters/dev-token.js';
import type { Io } from '../errors.js';

/** What the commands of every group share: output sinks, the clock, the soft exit code. */
export interface CliContext {
  readonly io: Io;
  /** Clock for minted tokens (tests pin it); the system clock when absent. */
  readonly now: (() => Date) | undefined;
  /** Soft failures: set `exitCode` and return normally (runCli returns it). */
  readonly state: { exitCode: number };
}

/** The root program's options, valid before or after any command. */
export interface GlobalOptions {
  api: string;
  nats: string;
  pki: string;
  json: boolean;
}

/** The options {@link withAuth} adds to a REST command. */
export interface AuthOptions {
  tenant: string;
  role: string[];
  token?: string;
  issuer: string;
  audience: string;
}

export const globals = (cmd: Command): GlobalOptions => cmd.optsWithGlobals<GlobalOptions>();

/** Option parser: an integer from `min` to `max`. */
export const int =
  (min: number, max = Number.MAX_SAFE_INTEGER) =>
  (value: string): number => {
    const n = /^\d{1,15}$/.test(value) ? Number(value) : Number.NaN;
    if (!(n >= min && n <= max))
      throw new InvalidArgumentError(
        max === Number.MAX_SAFE_INTEGER
          ? `expected an integer >= ${min}`
          : `expected an integer from ${min} to ${max}`,
      );
    return n;
  };

/** The API's limit on a `reason` (revocation, erasure), after trimming. */
export const MAX_REASON = 500;

/** Option parser of a reason: 1 to MAX_REASON characters once trimmed. */
export const reasonArg = (value: string): string => {
  const reason = value.trim();
  if (reason.length === 0 || reason.length > MAX_REASON)
    throw new InvalidArgumentError(`expected 1 to ${MAX_REASON} characters`);
  return reason;
};

/** Option parser of repeatable options. */
export const collect = (value: string, previous: string[]): string[] => [...previous, value];

/**
 * Adds the options of a REST command: the tenant and role(s) of the dev token it mints, or --token.
 * `defaultRole` only names the default in the help; the action passes the same role to {@link apiClient}.
 */
export const withAuth = (cmd: Command, defaultRole = 'viewer'): Command =>
  cmd
    .addOption(
      new Option('--tenant <id>', 'tenant to mint the dev token for').env('VIGIL_TENANT').default('dev'),
    )
    .option('--role <role>', `role of the minted token, repeatable (default: ${defaultRole})`, collect, [])
    .addOption(new Option('--token <jwt>', 'use this bearer token instead of minting one').env('VIGIL_TOKEN'))
    .option('--issuer <iss>', 'issuer of the minted token', DEFAULT_ISSUER)
    .option('--audience <aud>', 'audience of the minted token', DEFAULT_AUDIENCE);

/** A REST client with --token, or with a short-lived dev token for --tenant and --role (or `defaultRoles`). */
export async function apiClient(
  ctx: CliContext,
  g: GlobalOptions,
  a: AuthOptions,
  defaultRoles: string[] = ['viewer'],
): Promise<ApiClient> {
  return new ApiClient(g.api, await bearerToken(ctx, g, a, defaultRoles));
}

/** --token, or a freshly minted short-lived dev token for --tenant and --role (or `defaultRoles`). */
export async function bearerToken(
  ctx: CliContext,
  g: GlobalOptions,
  a: AuthOptions,
  defaultRoles: string[] = ['viewer'],
): Promise<string> {
  return (
    a.token ??
    (
      await mintToken(loadDevSigningKey(g.pki), {
        tenant: a.tenant,
        roles: a.role.length > 0 ? a.role : defaultRoles,
        sub: `vigil-cli@${a.tenant}`,
        ttlSeconds: 300,
        issuer: a.issuer,
        audience: a.audience,
        ...(ctx.now ? { now: ctx.now() } : {}),
      })
    ).token
  );
}
