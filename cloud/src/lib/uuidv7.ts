/** A canonical (lowercase) RFC 9562 version-7 UUID, as the edge generates them. */
export const UUID_V7_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export function isUuidV7(id: string): boolean {
  return UUID_V7_PATTERN.test(id);
}

/** The unix time in ms in a UUIDv7's first 48 bits; undefined for anything but a canonical v7. */
export function uuidV7Time(id: string): number | undefined {
  if (!UUID_V7_PATTERN.test(id)) return undefined;
  return Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}
