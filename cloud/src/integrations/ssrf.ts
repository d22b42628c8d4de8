import { lookup as dnsLookup } from 'node:dns/promises';
import { isIPv4, isIPv6, type LookupFunction } from 'node:net';

/*
 * The SSRF guard of outgoing webhooks. A tenant names the URL, so without a guard the cloud would POST, from
 * inside its network, wherever a tenant likes: the cloud metadata service (169.254.169.254), PostgreSQL on
 * loopback, other tenants' private services. Two checks:
 *
 * - At creation (validateWebhookUrl): https only (http with integrations.allowInsecureHttp), no credentials in
 *   the URL (they would be sent in the clear to logs and to the receiver's proxies), and an IP-literal host must
 *   be a public address.
 * - At every delivery (resolvePublicAddress): the host is resolved and every address it resolves to must be
 *   public, because DNS can change after creation. The request then connects to exactly the address that was
 *   checked (pinnedLookup as the request's `lookup`), so a second, different DNS answer between check and
 *   connect (DNS rebinding) cannot point the connection elsewhere. TLS still verifies the certificate against
 *   the hostname.
 *
 * integrations.allowPrivateNetworks turns the address checks off (tests, a receiver on the same host).
 */

export interface UrlPolicy {
  allowInsecureHttp: boolean;
  allowPrivateNetworks: boolean;
}

export class UnsafeUrlError extends Error {
  override readonly name = 'UnsafeUrlError';
}

/** Largest URL accepted (it is stored and sent on every delivery). */
export const MAX_URL_LENGTH = 2048;

/** The parsed URL if it may be a webhook URL; else throws UnsafeUrlError saying why. */
export function validateWebhookUrl(raw: string, policy: UrlPolicy): URL {
  if (raw.length > MAX_URL_LENGTH) throw new UnsafeUrlError(`must be at most ${MAX_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UnsafeUrlError('must be an absolute URL');
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && policy.allowInsecureHttp))
    throw new UnsafeUrlError(policy.allowInsecureHttp ? 'must be an http(s) URL' : 'must be an https URL');
  if (url.username !== '' || url.password !== '') throw new UnsafeUrlError('must not contain credentials');
  if (url.hash !== '') throw new UnsafeUrlError('must not contain a fragment');
  const host = hostOf(url);
  if (host === '') throw new UnsafeUrlError('must name a host');
  if ((isIPv4(host) || isIPv6(host)) && !policy.allowPrivateNetworks) {
    const reason = forbiddenAddressReason(host);
    if (reason !== null) throw new UnsafeUrlError(`must not point at a ${reason} address`);
  }
  return url;
}

/** The URL's host without IPv6 brackets. */
export function hostOf(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

/** [network bytes, prefix length, what it is]. */
type Range = readonly [readonly number[], number, string];

const V4_RANGES: readonly Range[] = [
  [[0, 0, 0, 0], 8, 'unspecified'],
  [[10, 0, 0, 0], 8, 'private'],
  [[100, 64, 0, 0], 10, 'CGNAT'],
  [[127, 0, 0, 0], 8, 'loopback'],
  [[169, 254, 0, 0], 16, 'link-local'],
  [[172, 16, 0, 0], 12, 'private'],
  [[192, 0, 0, 0], 24, 'reserved'],
  [[192, 0, 2, 0], 24, 'documentation'],
  [[192, 168, 0, 0], 16, 'private'],
  [[198, 18, 0, 0], 15, 'benchmarking'],
  [[198, 51, 100, 0], 24, 'documentation'],
  [[203, 0, 113, 0], 24, 'documentation'],
  [[224, 0, 0, 0], 4, 'multicast'],
  [[240, 0, 0, 0], 4, 'reserved'], // and 255.255.255.255, broadcast
];

const V6_RANGES: readonly Range[] = [
  [[...zeros(15), 0], 128, 'unspecified'],
  [[...zeros(15), 1], 128, 'loopback'],
  // IPv4-compatible (deprecated) ::a.b.c.d; the mapped ::ffff:a.b.c.d are judged by their IPv4 address.
  [zeros(16), 96, 'reserved'],
  [[0x01, 0x00, ...zeros(14)], 64, 'discard'],
  [[0x20, 0x01, 0x00, 0x00, ...zeros(12)], 32, 'Teredo'],
  [[0x20, 0x01, 0x0d, 0xb8, ...zeros(12)], 32, 'documentation'],
  [[0xfc, ...zeros(15)], 7, 'unique-local'],
  [[0xfe, 0x80, ...zeros(14)], 10, 'link-local'],
  [[0xfe, 0xc0, ...zeros(14)], 10, 'site-local'],
  [[0xff, ...zeros(15)], 8, 'multicast'],
];

function zeros(n: number): number[] {
  return new Array<number>(n).fill(0);
}

function inRange(bytes: readonly number[], [net, bits]: Range): boolean {
  for (let i = 0; i < bits; i += 8) {
    const take = Math.min(8, bits - i);
    const mask = (0xff << (8 - take)) & 0xff;
    if (((bytes[i / 8] ?? 0) & mask) !== ((net[i / 8] ?? 0) & mask)) return false;
  }
  return true;
}

function v4Bytes(ip: string): number[] {
  return ip.split('.').map(Number);
}

/** 16 bytes of an IPv6 address (with or without an embedded dotted quad); undefined if it is not one. */
export function v6Bytes(ip: string): number[] | undefined {
  if (!isIPv6(ip)) return undefined;
  let text = ip.split('%')[0]!; // a zone id (fe80::1%eth0) says nothing about the address
  const tail: number[] = [];
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad) {
    tail.push(...v4Bytes(quad[1]!));
    text = text.slice(0, -quad[1]!.length);
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1);
  }
  const groupsWanted = (16 - tail.length) / 2;
  const [head, rest] = text.includes('::') ? text.split('::') : [text, undefined];
  const parse = (s: string | undefined): string[] => (s ? s.split(':').filter((g) => g !== '') : []);
  const left = parse(head);
  const right = parse(rest);
  const groups =
    rest === undefined
      ? left
      : [...left, ...zeros(groupsWanted - left.length - right.length).map(String), ...right];
  if (groups.length !== groupsWanted) return undefined;
  const bytes = groups.flatMap((g) => {
    const v = parseInt(g, 16);
    return [(v >> 8) & 0xff, v & 0xff];
  });
  return [...bytes, ...tail];
}

/** Why `ip` must not be called (e.g. 'loopback'), or null for a public address. Not an IP: 'invalid'. */
export function forbiddenAddressReason(ip: string): string | null {
  if (isIPv4(ip)) {
    const bytes = v4Bytes(ip);
    return V4_RANGES.find((r) => inRange(bytes, r))?.[2] ?? null;
  }
  const bytes = v6Bytes(ip);
  if (bytes === undefined) return 'invalid';
  // IPv4-mapped (::ffff:0:0/96) and NAT64 (64:ff9b::/96): the IPv4 address inside is what gets reached.
  const mapped = inRange(bytes, [[...zeros(10), 0xff, 0xff, 0, 0, 0, 0], 96, '']);
  const nat64 = inRange(bytes, [[0, 0x64, 0xff, 0x9b, ...zeros(12)], 96, '']);
  if (mapped || nat64) return forbiddenAddressReason(bytes.slice(12).join('.'));
  // 6to4 (2002::/16) carries an IPv4 address in bytes 2-5.
  if (inRange(bytes, [[0x20, 0x02, ...zeros(14)], 16, ''])) {
    const inner = forbiddenAddressReason(bytes.slice(2, 6).join('.'));
    if (inner !== null) return inner;
  }
  return V6_RANGES.find((r) => inRange(bytes, r))?.[2] ?? null;
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a hostname to every address (dns.lookup: what the OS resolver, /etc/hosts included, answers). */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (hostname) =>
  (await dnsLookup(hostname, { all: true, verbatim: true })).map((a) => ({
    address: a.address,
    family: a.family === 6 ? 6 : 4,
  }));

/** How long the worker reuses a name's resolution (see cachedResolver). */
export const DNS_CACHE_MS = 2000;

/**
 * `resolve` with its answers kept for `ttlMs` (at most `maxEntries` names, the oldest dropped first) and
 * concurrent look-ups of one name shared. dns.lookup runs on libuv's 4-thread pool, one getaddrinfo per call:
 * once per delivery it capped a busy worker at a few hundred requests/s for a name the OS does not cache. The
 * guard is unchanged: resolvePublicAddress still checks every address of the (cached) answer at each delivery
 * and the request connects to the address checked; a DNS change is seen up to `ttlMs` later. Failures are not
 * kept.
 */
export function cachedResolver(
  resolve: Resolver,
  opts: { ttlMs: number; maxEntries?: number; now?: () => number },
): Resolver {
  const now = opts.now ?? (() => performance.now());
  const max = opts.maxEntries ?? 1000;
  const cache = new Map<string, { at: number; answer: Promise<ResolvedAddress[]> }>();
  return (hostname) => {
    const t = now();
    const hit = cache.get(hostname);
    if (hit && t - hit.at < opts.ttlMs) return hit.answer;
    if (hit) cache.delete(hostname);
    const answer = resolve(hostname);
    cache.set(hostname, { at: t, answer });
    answer.catch(() => {
      if (cache.get(hostname)?.answer === answer) cache.delete(hostname);
    });
    if (cache.size > max) cache.delete(cache.keys().next().value!);
    return answer;
  };
}

/**
 * The address to connect to for `host`: an IP literal as is, else the first address it resolves to. Refused
 * (UnsafeUrlError) unless every resolved address is public: a name with one private answer among public ones
 * could be steered to it. allowPrivateNetworks skips the check.
 */
export async function resolvePublicAddress(
  host: string,
  policy: Pick<UrlPolicy, 'allowPrivateNetworks'>,
  resolve: Resolver = systemResolver,
): Promise<ResolvedAddress> {
  const literal: ResolvedAddress | undefined = isIPv4(host)
    ? { address: host, family: 4 }
    : isIPv6(host)
      ? { address: host, family: 6 }
      : undefined;
  const addresses = literal ? [literal] : await resolve(host);
  if (addresses.length === 0) throw new UnsafeUrlError(`${host} resolves to no address`);
  if (!policy.allowPrivateNetworks)
    for (const a of addresses) {
      const reason = forbiddenAddressReason(a.address);
      if (reason !== null) throw new UnsafeUrlError(`${host} resolves to a ${reason} address (${a.address})`);
    }
  return addresses[0]!;
}

/** A `lookup` for http(s).request that answers with the address already checked, whatever it is asked. */
export function pinnedLookup(pinned: ResolvedAddress): LookupFunction {
  return ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (options.all) callback(null, [{ address: pinned.address, family: pinned.family }]);
    else callback(null, pinned.address, pinned.family);
  }) as unknown as LookupFunction;
}
