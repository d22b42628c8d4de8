// The fault test's agent processes (producer.ts): spawns them, kill -9s one at random, respawns the dead with the
// budget they have left, and knows when all is produced and every outbox is empty. What each process
// acknowledged is read from its ack file once it is dead (the file, not its stdout, is the truth).
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { stopChild, waitForExit, type ProcessRegistry } from '@vigil/devservices';
import { readAckLog } from './ack-log.js';

export interface AgentDevice {
  tenantId: string;
  deviceId: string;
  cert: string;
  key: string;
}

interface Live {
  child: ChildProcess;
  /** Its ack file (`acks-<n>.log`, n counting this agent's processes). */
  file: string;
  /** From its `progress` lines: advisory (a kill can cut them), the ack file is read when it dies. */
  acked: number;
  depth: number;
}

interface Producer {
  device: AgentDevice;
  dir: string;
  budget: number;
  /** Acknowledged by its dead processes (read from their ack files). */
  ackedDone: number;
  /** Processes started for this agent so far: names each one's ack file. */
  runs: number;
  live: Live | undefined;
}

export class FaultAgents {
  private readonly producers: Producer[];

  constructor(
    private readonly o: {
      root: string;
      registry: ProcessRegistry;
      dir: string;
      devices: AgentDevice[];
      caFile: string;
      /** One URL, or every cluster node's, comma-separated. */
      natsUrl: string;
      events: number;
      rate: number;
      log: (line: string) => void;
    },
  ) {
    const per = Math.floor(o.events / o.devices.length);
    this.producers = o.devices.map((device, i) => ({
      device,
      dir: join(o.dir, device.deviceId),
      budget: i === 0 ? o.events - per * (o.devices.length - 1) : per,
      ackedDone: 0,
      runs: 0,
      live: undefined,
    }));
  }

  startAll(): void {
    for (const p of this.producers) this.spawn(p);
  }

  /** Accounts for and respawns every agent process that died. */
  async supervise(): Promise<void> {
    for (const p of this.producers) {
      if (p.live && !exited(p.live.child)) continue;
      if (p.live) await this.account(p);
      this.spawn(p);
    }
  }

  /** kill -9 of a random agent that is up (has reported progress, not still starting); false when none is. */
  async killOne(): Promise<boolean> {
    const running = this.producers.filter((p) => p.live && !exited(p.live.child) && p.live.depth >= 0);
    const p = running[Math.floor(Math.random() * running.length)];
    if (!p?.live) return false;
    p.live.child.kill('SIGKILL');
    await waitForExit(p.live.child, 10_000);
    await this.supervise();
    return true;
  }

  acked(): number {
    return this.producers.reduce((n, p) => n + p.ackedDone + (p.live?.acked ?? 0), 0);
  }

  /**
   * Events the cloud has committed so far, as the agents see it: what they acknowledged minus what is still in
   * their outboxes (an entry leaves only on a commit receipt). Advisory (progress lines come every 500 ms).
   */
  committed(): number {
    return this.producers.reduce(
      (n, p) => n + p.ackedDone + (p.live ? p.live.acked - Math.max(0, p.live.depth) : 0),
      0,
    );
  }

  /** Every agent acknowledged its whole budget. */
  produced(): boolean {
    return this.producers.every((p) => p.ackedDone + (p.live?.acked ?? 0) >= p.budget);
  }

  /** All produced and every outbox empty (as last reported by a live process). */
  drained(): boolean {
    return (
      this.produced() && this.producers.every((p) => p.live && !exited(p.live.child) && p.live.depth === 0)
    );
  }

  depths(): string {
    return this.producers.map((p) => p.live?.depth ?? -1).join(',');
  }

  async stopAll(): Promise<void> {
    for (const p of this.producers) if (p.live) await stopChild(p.live.child, 5_000);
  }

  private async account(p: Producer): Promise<void> {
    const file = join(p.dir, p.live!.file);
    if (existsSync(file)) p.ackedDone += (await readAckLog(file, () => undefined)).acks;
    p.live = undefined;
  }

  private spawn(p: Producer): void {
    mkdirSync(p.dir, { recursive: true });
    // Numbered, not by pid: over a long run pids are reused, and one file read twice counted its acks twice.
    const file = `acks-${++p.runs}.log`;
    const child = this.o.registry.spawn(
      process.execPath,
      [
        '--conditions=@vigil/source',
        '--import',
        'tsx',
        join(this.o.root, 'tools/devstack/src/fault/producer.ts'),
        ...['--dir', p.dir, '--nats', this.o.natsUrl, '--ca', this.o.caFile],
        ...['--cert', p.device.cert, '--key', p.device.key],
        ...['--tenant', p.device.tenantId, '--device', p.device.deviceId],
        ...['--rate', String(this.o.rate), '--budget', String(Math.max(0, p.budget - p.ackedDone))],
        ...['--ack-file', file],
      ],
      { cwd: this.o.root },
    );
    const live: Live = { child, file, acked: 0, depth: -1 };
    p.live = live;
    let partial = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        const m = /^progress (\d+) (\d+)$/.exec(l);
        if (m) {
          live.acked = Number(m[1]);
          live.depth = Number(m[2]);
        }
      }
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (t: string) => {
      if (!/ExperimentalWarning|--trace-warnings/.test(t))
        this.o.log(`  [${p.device.deviceId}] ${t.trim().slice(0, 300)}`);
    });
  }
}

const exited = (c: ChildProcess): boolean => c.exitCode !== null || c.signalCode !== null;
