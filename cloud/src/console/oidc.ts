import { readFileSync } from 'node:fs';
import * as client from 'openid-client';
import { AuthenticationError } from '../auth/errors.js';
import { principalFromClaims } from '../auth/jwt.js';
import type { Principal } from '../auth/principal.js';
import { ConfigError } from '../lib/errors.js';
import { LoginError } from './errors.js';
import type { PendingLogin } from './session.js';

export interface OidcSettings {
  issuer: string;
  clientId: string;
  clientSecretFile?: string | undefined;
  redirectUrl: string;
  scopes: readonly string[];
}

const isLoopback = (u: URL): boolean => ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname);

/**
 * The console's OpenID Connect relying party (openid-client): authorization code with PKCE (S256), state and
 * nonce. Discovery runs at the first login (and again after a failure), so the cloud starts while the
 * provider is down; only that login fails.
 */
export class OidcClient {
  private config: Promise<client.Configuration> | undefined;
  private readonly secret: string | undefined;

  constructor(private readonly s: OidcSettings) {
    if (s.clientSecretFile !== undefined) {
      try {
        this.secret = readFileSync(s.clientSecretFile, 'utf8').split('\n')[0]!.trim();
      } catch (cause) {
        throw new ConfigError(`console.oidc.clientSecretFile: ${s.clientSecretFile} cannot be read`, {
          cause,
        });
      }
      if (this.secret === '')
        throw new ConfigError(`console.oidc.clientSecretFile: ${s.clientSecretFile} is empty`);
    }
  }

  private discover(): Promise<client.Configuration> {
    if (this.config === undefined) {
      const issuer = new URL(this.s.issuer);
      // Plain http only for a provider on loopback (development, tests): the schema refuses it elsewhere.
      const options =
        isLoopback(issuer) && issuer.protocol === 'http:' ? { execute: [client.allowInsecureRequests] } : {};
      this.config = client
        .discovery(
          issuer,
          this.s.clientId,
          this.secret,
          this.secret === undefined ? client.None() : client.ClientSecretPost(this.secret),
          { ...options, timeout: 5 },
        )
        .catch((cause: unknown) => {
          this.config = undefined;
          throw new LoginError('provider', 'the identity provider cannot be reached', { cause });
        });
    }
    return this.config;
  }

  /** Where to send the browser for `login`. */
  async authorizationUrl(login: PendingLogin): Promise<URL> {
    const config = await this.discover();
    return client.buildAuthorizationUrl(config, {
      redirect_uri: this.s.redirectUrl,
      scope: this.s.scopes.join(' '),
      code_challenge: await client.calculatePKCECodeChallenge(login.verifier),
      code_challenge_method: 'S256',
      state: login.state,
      nonce: login.nonce,
    });
  }

  /**
   * The callback: exchanges the code (PKCE verifier, state and nonce checked by openid-client, the ID token's
   * signature, issuer, audience and expiry too) and maps the ID token's claims like the API maps a bearer token's.
   */
  async finish(
    callbackUrl: URL,
    login: PendingLogin,
  ): Promise<{ principal: Principal; idToken: string | undefined }> {
    const config = await this.discover();
    // The redirect URL as registered, with the provider's query: never the Host header the browser sent.
    const current = new URL(this.s.redirectUrl);
    current.search = callbackUrl.search;
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      tokens = await client.authorizationCodeGrant(config, current, {
        pkceCodeVerifier: login.verifier,
        expectedState: login.state,
        expectedNonce: login.nonce,
        idTokenExpected: true,
      });
    } catch (cause) {
      throw new LoginError('exchange', `code exchange failed: ${(cause as Error).message}`, { cause });
    }
    const claims = tokens.claims();
    if (claims === undefined) throw new LoginError('claims', 'the provider returned no ID token');
    try {
      return { principal: principalFromClaims(claims), idToken: tokens.id_token };
    } catch (err) {
      if (err instanceof AuthenticationError) throw new LoginError('claims', err.logDetail, { cause: err });
      throw err;
    }
  }
}
