import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { natsConfig, NatsServer, type NatsTlsFiles } from './nats.js';
import { freePort } from './ports.js';
import { ProcessRegistry } from './processes.js';

export interface NatsClusterOptions {
  /** Nodes (default 3: the smallest JetStream cluster that keeps R3 streams writable with one node down). */
  size?: number;
  /** Client TLS of every node (mutual TLS, as in infra/nats/cluster). */
  tls: NatsTlsFiles;
  /**
   * TLS of the routes between nodes: a certificate with EKU serverAuth and clientAuth naming localhost and
   * 127.0.0.1 (each node dials the others with it and accepts their dial with it), verified against `caFile`.
   */
  routeTls: NatsTlsFiles;
  /** Appended to every node's config (the operator/account JWT fragment: the same on every node). */
  extra?: string;
  /** Seconds each node allows a client's TLS handshake (natsConfig's default: 2). */
  tlsTimeoutSeconds?: number;
  /** Cluster name (default `vigil`). */
  name?: string;
  registry?: ProcessRegistry;
  binary?: string;
  readyTimeoutMs?: number;
  onLog?: (node: string, line: string) => void;
}

interface NodePorts {
  name: string;
  client: number;
  cluster: number;
}

/** The JetStream meta group as one node's monitoring port (`/jsz`) reports it. */
export interface MetaClusterView {
  leader: string | undefined;
  clusterSize: number | undefined;
  /** Other peers the node's meta group sees as current (on the leader: the followers it can place on). */
  currentPeers: number;
  /** Their names. */
  currentPeerNames: string[];
}

/**
 * A real nats-server cluster on loopback: `size` processes, routes over mutual TLS, JetStream clustered. Nodes are
 * named `n1..nN` (server_name, what stream `cluster.leader` reports). `kill(name)` is kill -9, `restart(name)`
 * starts the node again on its ports and store so that it rejoins and catches up.
 */
export class NatsCluster {
  readonly nodes: NatsServer[] = [];
  private readonly ports: NodePorts[] = [];
  private readonly registry: ProcessRegistry;
  private dir: string | undefined;

  constructor(private readonly opts: NatsClusterOptions) {
    this.registry = opts.registry ?? new ProcessRegistry();
  }

  /** Starts every node at once (a lone JetStream node waits for its peers) and waits for a meta leader. */
  async start(timeoutMs = 60_000): Promise<this> {
    const size = this.opts.size ?? 3;
    if (size < 1 || size > 9) throw new Error(`cluster size must be 1..9, got ${size}`);
    this.dir = mkdtempSync(join(tmpdir(), 'vigil-nats-cluster-'));
    for (let i = 1; i <= size; i++)
      this.ports.push({ name: `n${i}`, client: await freePort(), cluster: await freePort() });
    for (const node of this.ports) {
      const dir = join(this.dir, node.name);
      const server = new NatsServer({
        port: node.client,
        dir,
        registry: this.registry,
        binary: this.opts.binary,
        readyTimeoutMs: this.opts.readyTimeoutMs ?? 30_000,
        onLog: this.opts.onLog ? (line) => this.opts.onLog?.(node.name, line) : undefined,
        config: (ctx) => this.nodeConfig(node, ctx),
      });
      this.nodes.push(server);
    }
    await Promise.all(this.nodes.map((n) => n.start()));
    await this.waitForMetaLeader(timeoutMs);
    return this;
  }

  /** The config of one node: natsConfig's client side plus the cluster block (routes to every other node). */
  private nodeConfig(
    node: NodePorts,
    ctx: { port: number; httpPort: number; storeDir: string; dir: string },
  ): string {
    const base = natsConfig({
      tls: this.opts.tls,
      jetstream: true,
      tlsTimeoutSeconds: this.opts.tlsTimeoutSeconds,
    })(ctx).replace(`server_name: "vigil_${ctx.port}"`, `server_name: "${node.name}"`);
    const rt = this.opts.routeTls;
    const routes = this.ports
      .filter((p) => p.name !== node.name)
      .map((p) => `    "nats-route://localhost:${p.cluster}"`);
    const cluster = [
      'cluster {',
      `  name: ${JSON.stringify(this.opts.name ?? 'vigil')}`,
      `  listen: "127.0.0.1:${node.cluster}"`,
      // Clients get the URLs they were configured with (all nodes), not ones the servers gossip.
      '  no_advertise: true',
      '  routes: [',
      ...routes,
      '  ]',
      '  tls {',
      `    cert_file: ${JSON.stringify(rt.certFile)}`,
      `    key_file: ${JSON.stringify(rt.keyFile)}`,
      `    ca_file: ${JSON.stringify(rt.caFile)}`,
      '    verify: true',
      '    timeout: 5',
      '  }',
      '}',
    ];
    return [base.trimEnd(), ...cluster, this.opts.extra ?? ''].join('\n') + '\n';
  }

  /** `tls://localhost:<port>` of every node (clients verify the server certificate's DNS name). */
  get urls(): string[] {
    return this.ports.map((p) => `tls://localhost:${p.client}`);
  }

  node(name: string): NatsServer {
    const i = this.ports.findIndex((p) => p.name === name);
    if (i < 0) throw new Error(`no node ${name} (nodes: ${this.ports.map((p) => p.name).join(', ')})`);
    return this.nodes[i]!;
  }

  /** kill -9 of one node (its store stays; `restart` brings it back). */
  kill(name: string): Promise<void> {
    return this.node(name).kill();
  }

  /** Starts a killed or stopped node again on the same ports and store. */
  async restart(name: string): Promise<void> {
    const n = this.node(name);
    await n.restart();
  }

  /** What one node's monitoring endpoint says about the meta group; undefined when it does not answer. */
  async metaView(name: string): Promise<MetaClusterView | undefined> {
    const n = this.node(name);
    if (!n.running) return undefined;
    try {
      const res = await fetch(`http://127.0.0.1:${n.httpPort}/jsz`, { signal: AbortSignal.timeout(2000) });
      if (!res.ok) return undefined;
      const body = (await res.json()) as {
        meta_cluster?: {
          leader?: string;
          cluster_size?: number;
          replicas?: Array<{ name: string; current?: boolean; offline?: boolean }>;
        };
      };
      const m = body.meta_cluster;
      const current = (m?.replicas ?? []).filter((r) => r.current && !r.offline).map((r) => r.name);
      return {
        leader: m?.leader || undefined,
        clusterSize: m?.cluster_size,
        currentPeers: current.length,
        currentPeerNames: current,
      };
    } catch {
      return undefined;
    }
  }

  /**
   * Waits until every running node names the same meta leader and the leader sees every other running node as a
   * current peer; returns its name. A leader alone is not enough: until the peers have reported, creating an R3
   * stream fails with "no suitable peers for placement".
   */
  async waitForMetaLeader(timeoutMs = 60_000): Promise<string> {
    const started = Date.now();
    const deadline = started + timeoutMs;
    let last = '';
    let nudged = false;
    while (Date.now() < deadline) {
      const running = this.ports.filter((p) => this.node(p.name).running);
      const views = await Promise.all(running.map((p) => this.metaView(p.name)));
      const leaders = new Set(views.map((v) => v?.leader));
      last = JSON.stringify(views);
      const [leader] = [...leaders];
      const leaderView = views[running.findIndex((p) => p.name === leader)];
      if (leaders.size === 1 && leader !== undefined && (leaderView?.currentPeers ?? 0) >= running.length - 1)
        return leader;
      // Seen once in a clean-clone CI run (loaded 2-core machine): three nodes agreed on the leader, but the
      // leader's meta group kept cluster_size 2 and never took the third node in for 60 s. Restarting the
      // node the leader does not count (same ports and store) lets it join; done once, and said on stderr.
      if (!nudged && leader !== undefined && leaderView && Date.now() - started > timeoutMs / 3) {
        nudged = true;
        const lagging = running
          .map((p) => p.name)
          .filter((name) => name !== leader && !leaderView.currentPeerNames.includes(name));
        process.stderr.write(
          `[nats-cluster] no full meta group after ${Date.now() - started} ms (${last}); restarting ${lagging.join(', ')}\n`,
        );
        for (const name of lagging) {
          await this.kill(name);
          await this.restart(name);
        }
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`no JetStream meta leader after ${timeoutMs} ms: ${last}`);
  }

  logs(): string {
    return this.ports.map((p, i) => `--- ${p.name} ---\n${this.nodes[i]!.logs.text()}`).join('\n');
  }

  async dispose(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.dispose()));
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
