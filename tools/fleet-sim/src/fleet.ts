import type { ConfigState } from '@vigil/proto';
import { DEFAULT_BEHAVIOUR, SimAgent, type SimBehaviour } from './agent.js';
import type { EnrolledDevice } from './enroll.js';

/** What one agent did with one config version. */
export interface ApplyRecord {
  deviceId: string;
  version: bigint;
  state: ConfigState;
  at: number;
}

/** N simulated agents in this process. */
export class SimFleet {
  readonly agents: SimAgent[] = [];
  readonly records: ApplyRecord[] = [];
  /** Every simulated agent upgrade that ended (committed or rolled back), in order. */
  readonly upgrades: Array<{ deviceId: string; version: string; state: string; at: number }> = [];
  /** Agents whose connect() has resolved. */
  connected = 0;

  constructor(devices: readonly EnrolledDevice[], caPem: string, behaviour: Partial<SimBehaviour> = {}) {
    for (const d of devices) {
      const a = new SimAgent(d, caPem, { ...DEFAULT_BEHAVIOUR, ...behaviour });
      a.onApplied = (agent, version, state) =>
        this.records.push({ deviceId: agent.id, version, state, at: Date.now() });
      a.onUpgraded = (agent, version, state) =>
        this.upgrades.push({ deviceId: agent.id, version, state, at: Date.now() });
      this.agents.push(a);
    }
  }

  /**
   * Connects every agent (at most `concurrency` handshakes at a time). Agent i is given `servers` rotated by i
   * and dials them in that order, so that with a cluster the connections split evenly over the nodes (each
   * agent still knows every node to reconnect to).
   */
  async connect(
    servers: string[],
    concurrency = 16,
    onConnected?: (connected: number) => void,
  ): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      for (;;) {
        const i = next++;
        const a = this.agents[i];
        if (!a) return;
        const k = i % servers.length;
        await a.connect([...servers.slice(k), ...servers.slice(0, k)]);
        this.connected++;
        onConnected?.(this.connected);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, () => worker()));
  }

  /** Heartbeats every agent sent so far. */
  heartbeatsSent(): number {
    let n = 0;
    for (const a of this.agents) n += a.counters.heartbeats;
    return n;
  }

  async close(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.close()));
  }

  /** Agents whose running config carries attribute `key` = `value`. */
  running(key: string, value: string): SimAgent[] {
    return this.agents.filter((a) => a.attributes[key] === value);
  }

  byId(id: string): SimAgent | undefined {
    return this.agents.find((a) => a.id === id);
  }
}
