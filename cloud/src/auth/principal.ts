/**
 * Who is calling: the verified claims of a bearer token. Only auth/ builds one (from a token whose
 * signature, issuer, audience and lifetime were checked); everything else treats it as trusted.
 */
export interface Principal {
  /** The token's `sub`: a user or service id, for audit logs. */
  readonly subject: string;
  /** The tenant every query and route of this request is scoped to. */
  readonly tenant: string;
  /** Coarse roles (admin, operator, viewer, auditor, ...); the policy engine decides what they allow. */
  readonly roles: readonly string[];
  /**
   * Set for a site-scoped user (the token's `sites` claim): it may act on these sites of its tenant only.
   * Absent: the whole tenant. An empty list scopes the user to no site at all.
   */
  readonly sites?: readonly string[] | undefined;
}

/** Site ids: the same token rules as tenant and device ids. */
export const SITE_ID_PATTERN = /^[A-Za-z0-9_-]{1,63}$/;

/** Tenant ids: the same token rules as device ids and NATS subject tokens (letters, digits, `-`, `_`). */
export const TENANT_ID_PATTERN = /^[A-Za-z0-9_-]{1,63}$/;
