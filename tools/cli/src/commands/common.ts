import { InvalidArgumentError, Option, type Command } from 'commander';
import { ROLES, rolesGranted, type Action } from '@vigil/cloud';
import { ApiClient } from '../adapters/api.js';
import {
  DEFAULT_AUDIENCE,
  DEFAULT_ISSUER,
  DEV_SUBJECT_HELP,
  devSubject,
  loadDevSigningKey,
  mintToken,
} from '../adapters/dev-token.js';
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
  /** Never empty: commander fills in the command's default role. */
  role: string[];
  sub?: string;
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
 * `--role`, repeatable, checked against the cloud's role list (the one source of roles), with `defaultRole`
 * as commander's real default (so the help shows the default the command uses, once). With `action`, the help
 * also says which roles the cloud grants it, and the default must be one of them.
 */
export function roleOption(defaultRole: string, action?: Action): Option {
  if (!ROLES.includes(defaultRole)) throw new Error(`default role ${defaultRole} is not a cloud role`);
  const granted = action ? rolesGranted(action) : undefined;
  if (granted && !granted.includes(defaultRole))
    throw new Error(`default role ${defaultRole} is not granted ${action}`);
  const defaults = [defaultRole];
  return new Option(
    '--role <role>',
    `role of the minted token, repeatable: ${ROLES.join(', ')}` +
      (granted ? `; ${action} needs ${granted.join(' or ')}` : ''),
  )
    .default(defaults, defaultRole)
    .argParser((value: string, previous: string[]) => {
      if (!ROLES.includes(value)) throw new InvalidArgumentError(`expected one of ${ROLES.join(', ')}`);
      // The first --role replaces the default instead of adding to it.
      return [...(previous === defaults ? [] : previous), value];
    });
}

/** `--sub`: who the minted token says acts; the cloud records that principal (revocations, audit). */
export const subjectOption = (): Option =>
  new Option('--sub <subject>', `subject of the minted token: ${DEV_SUBJECT_HELP}`).env('VIGIL_SUBJECT');

/**
 * Adds the options of a REST command: the tenant, role(s) and subject of the dev token it mints, or --token.
 * `defaultRole` is the role used without --role; `action` (what the command asks the cloud) adds which roles
 * may do it to the help.
 */
export const withAuth = (cmd: Command, defaultRole = 'viewer', action?: Action): Command =>
  cmd
    .addOption(
      new Option('--tenant <id>', 'tenant to mint the dev token for').env('VIGIL_TENANT').default('dev'),
    )
    .addOption(roleOption(defaultRole, action))
    .addOption(subjectOption())
    .addOption(new Option('--token <jwt>', 'use this bearer token instead of minting one').env('VIGIL_TOKEN'))
    .option('--issuer <iss>', 'issuer of the minted token', DEFAULT_ISSUER)
    .option('--audience <aud>', 'audience of the minted token', DEFAULT_AUDIENCE);

/** A REST client with --token, or with a short-lived dev token for --tenant, --role and --sub. */
export async function apiClient(ctx: CliContext, g: GlobalOptions, a: AuthOptions): Promise<ApiClient> {
  return new ApiClient(g.api, await bearerToken(ctx, g, a));
}

/** --token, or a freshly minted short-lived dev token for --tenant, --role and --sub. */
export async function bearerToken(ctx: CliContext, g: GlobalOptions, a: AuthOptions): Promise<string> {
  return (
    a.token ??
    (
      await mintToken(loadDevSigningKey(g.pki), {
        tenant: a.tenant,
        roles: a.role,
        sub: a.sub ?? devSubject(a.tenant, a.role),
        ttlSeconds: 300,
        issuer: a.issuer,
        audience: a.audience,
        ...(ctx.now ? { now: ctx.now() } : {}),
      })
    ).token
  );
}
