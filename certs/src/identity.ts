import { PkiError } from './errors.js';

/** Tenant ids, device ids and service names: 1..63 chars, letters/digits/`_`/`-`, starting alphanumeric. */
const ID_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/i;

export function assertId(kind: string, value: string): void {
  if (typeof value !== 'string' || !ID_RE.test(value)) {
    throw new PkiError(
      'INVALID_ARGUMENT',
      `invalid ${kind} ${JSON.stringify(value)}: expected 1-63 characters [A-Za-z0-9_-], starting with a letter or digit`,
    );
  }
}

/** The SPIFFE-style URI SAN that names a device: `spiffe://vigil/tenant/<tenant>/device/<device>`. */
export function deviceUri(tenantId: string, deviceId: string): string {
  assertId('tenant id', tenantId);
  assertId('device id', deviceId);
  return `spiffe://vigil/tenant/${tenantId}/device/${deviceId}`;
}

/** The SPIFFE-style URI SAN that names a cloud service: `spiffe://vigil/service/<name>`. */
export function serviceUri(service: string): string {
  assertId('service name', service);
  return `spiffe://vigil/service/${service}`;
}
