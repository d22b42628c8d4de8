// A small evaluator of Kubernetes NetworkPolicy semantics, enough to check the flows infra/k8s needs (and the
// ones it must refuse) on rendered manifests without a cluster. Supported: matchLabels selectors (a policy
// with matchExpressions is refused, so a selector this cannot read never passes silently), namespaceSelector
// and podSelector alone or together, IPv4 ipBlock with except, numeric ports.

export type Labels = Readonly<Record<string, string>>;

/** A pod (namespace and labels) or an address outside the cluster. */
export type Peer = { namespace: string; nsLabels: Labels; pod: Labels } | { ip: string };

interface Selector {
  matchLabels?: Labels;
  matchExpressions?: unknown;
}
interface PolicyPeer {
  podSelector?: Selector;
  namespaceSelector?: Selector;
  ipBlock?: { cidr: string; except?: string[] };
}
interface PolicyPort {
  protocol?: string;
  port?: number | string;
}
interface Rule {
  from?: PolicyPeer[];
  to?: PolicyPeer[];
  ports?: PolicyPort[];
}
export interface NetworkPolicy {
  metadata: { name: string; namespace?: string };
  spec: { podSelector: Selector; policyTypes?: string[]; ingress?: Rule[]; egress?: Rule[] };
}

export function selects(selector: Selector | undefined, labels: Labels): boolean {
  if (selector?.matchExpressions !== undefined)
    throw new Error('matchExpressions is not supported by this evaluator');
  return Object.entries(selector?.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
}

function ipv4(ip: string): number | undefined {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return undefined;
  return parts.reduce((n, p) => n * 256 + p, 0);
}

function inCidr(ip: string, cidr: string): boolean {
  const [base, bits] = cidr.split('/');
  const a = ipv4(ip);
  const b = ipv4(base ?? '');
  if (a === undefined || b === undefined) return false; // IPv6 blocks are not evaluated
  const size = 2 ** (32 - Number(bits));
  return Math.floor(a / size) === Math.floor(b / size);
}

function peerMatches(rulePeer: PolicyPeer, peer: Peer, policyNamespace: string): boolean {
  if (rulePeer.ipBlock) {
    if (!('ip' in peer)) return false; // ipBlock is meant for traffic leaving or entering the cluster
    const { cidr, except = [] } = rulePeer.ipBlock;
    return inCidr(peer.ip, cidr) && !except.some((e) => inCidr(peer.ip, e));
  }
  if ('ip' in peer) return false;
  const nsOk = rulePeer.namespaceSelector
    ? selects(rulePeer.namespaceSelector, peer.nsLabels)
    : peer.namespace === policyNamespace;
  const podOk = rulePeer.podSelector ? selects(rulePeer.podSelector, peer.pod) : true;
  return nsOk && podOk;
}

function portMatches(ports: PolicyPort[] | undefined, protocol: string, port: number): boolean {
  if (!ports || ports.length === 0) return true;
  return ports.some((p) => (p.protocol ?? 'TCP') === protocol && (p.port === undefined || p.port === port));
}

function types(p: NetworkPolicy): string[] {
  return p.spec.policyTypes ?? (p.spec.egress ? ['Ingress', 'Egress'] : ['Ingress']);
}

/**
 * Whether `direction` traffic of the pod (namespace, labels) with `peer` on protocol/port is allowed: allowed
 * when no policy of that direction selects the pod, else when any selecting policy has a matching rule.
 */
export function allowed(
  policies: readonly NetworkPolicy[],
  direction: 'Ingress' | 'Egress',
  pod: { namespace: string; labels: Labels },
  peer: Peer,
  protocol: string,
  port: number,
): boolean {
  const applying = policies.filter(
    (p) =>
      (p.metadata.namespace ?? 'default') === pod.namespace &&
      types(p).includes(direction) &&
      selects(p.spec.podSelector, pod.labels),
  );
  if (applying.length === 0) return true;
  return applying.some((p) =>
    (direction === 'Ingress' ? p.spec.ingress : p.spec.egress)?.some((rule) => {
      const peers = direction === 'Ingress' ? rule.from : rule.to;
      const peerOk = !peers || peers.length === 0 || peers.some((rp) => peerMatches(rp, peer, pod.namespace));
      return peerOk && portMatches(rule.ports, protocol, port);
    }),
  );
}

/** Pod to pod inside the cluster: the source's egress and the destination's ingress must both allow it. */
export function podToPod(
  policies: readonly NetworkPolicy[],
  from: { namespace: string; nsLabels: Labels; labels: Labels },
  to: { namespace: string; nsLabels: Labels; labels: Labels },
  port: number,
  protocol = 'TCP',
): boolean {
  return (
    allowed(
      policies,
      'Egress',
      from,
      { namespace: to.namespace, nsLabels: to.nsLabels, pod: to.labels },
      protocol,
      port,
    ) &&
    allowed(
      policies,
      'Ingress',
      to,
      { namespace: from.namespace, nsLabels: from.nsLabels, pod: from.labels },
      protocol,
      port,
    )
  );
}
