/*
 * Load figures of a fleet-sim run: the cloud's heartbeat counter (Prometheus text from its /metrics), PostgreSQL's
 * activity counters, and how the devices' connections split over the nats-server nodes (/connz).
 */
import type { PgActivity } from '@vigil/devservices';

/**
 * The sum of every sample of metric `name` (counter or gauge) whose labels include `labels`, from Prometheus
 * text exposition; 0 when there is none.
 */
export function sumMetric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    let labelText = '';
    let value: string;
    if (rest.startsWith('{')) {
      const end = rest.indexOf('}');
      if (end < 0) continue;
      labelText = rest.slice(1, end);
      value = rest.slice(end + 1).trim();
    } else if (rest.startsWith(' ')) value = rest.trim();
    else continue; // another metric whose name starts with this one
    const have = new Map<string, string>();
    for (const m of labelText.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have.set(m[1]!, m[2]!);
    if (!Object.entries(labels).every(([k, v]) => have.get(k) === v)) continue;
    const n = Number(value.split(' ')[0]);
    if (Number.isFinite(n)) sum += n;
  }
  return sum;
}

/** Heartbeats the cloud counted, by result (vigil_cloud_heartbeats_total{result}). */
export function heartbeatCounts(metricsText: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of metricsText.matchAll(
    /^vigil_cloud_heartbeats_total\{[^}]*result="([^"]+)"[^}]*\}\s+(\S+)/gm,
  ))
    out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
  return out;
}

/** Config statuses the cloud counted, by result (vigil_cloud_config_status_total{result}: config, current, busy, ...). */
export function configStatusCounts(metricsText: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of metricsText.matchAll(
    /^vigil_cloud_config_status_total\{[^}]*result="([^"]+)"[^}]*\}\s+(\S+)/gm,
  ))
    out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
  return out;
}

export async function fetchText(url: string, timeoutMs = 10_000): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return res.text();
}

/** Client connections of one node that are simulated devices (named `fleet-sim-<device>`). */
export function countSimConnections(connz: { connections?: Array<{ name?: string }> }): number {
  return (connz.connections ?? []).filter((c) => c.name?.startsWith('fleet-sim-')).length;
}

/** Simulated-device connections per node, from each node's monitoring port (null: the node did not answer). */
export async function simConnectionsPerNode(
  nodes: ReadonlyArray<{ name: string; monitorUrl: string }>,
  devices: number,
): Promise<Record<string, number | null>> {
  const out: Record<string, number | null> = {};
  await Promise.all(
    nodes.map(async (n) => {
      try {
        // Names only: no subscriptions, and a limit above every connection the node can hold for this run.
        const body = await fetchText(`${n.monitorUrl}/connz?limit=${devices + 1000}&subs=0`, 30_000);
        out[n.name] = countSimConnections(JSON.parse(body) as { connections?: Array<{ name?: string }> });
      } catch {
        out[n.name] = null;
      }
    }),
  );
  return out;
}

/** What one end of the steady window read. */
export interface SteadyReading {
  t_ms: number;
  /** Heartbeats the simulated agents sent so far. */
  sent: number;
  /** The cloud's heartbeat counter by result; undefined when its /metrics was not reachable. */
  received: Record<string, number> | undefined;
  pg: PgActivity | undefined;
}

export interface SteadyFigures {
  seconds: number;
  heartbeats_sent_per_s: number;
  /** Heartbeats the cloud recorded per second (result ok) and by result over the window. */
  heartbeats_received_per_s: number | null;
  heartbeats_received_by_result: Record<string, number> | null;
  postgres: {
    xact_commit_per_s: number;
    xact_rollback_per_s: number;
    rows_updated_per_s: number;
    rows_inserted_per_s: number;
    rows_deleted_per_s: number;
    backends: number;
  } | null;
}

const rate = (a: number, b: number, s: number): number => Math.round(((b - a) / s) * 10) / 10;

/** Rates over the steady window from its two readings. */
export function steadyFigures(from: SteadyReading, to: SteadyReading): SteadyFigures {
  const s = Math.max(0.001, (to.t_ms - from.t_ms) / 1000);
  let received: SteadyFigures['heartbeats_received_by_result'] = null;
  if (from.received && to.received) {
    received = {};
    for (const k of new Set([...Object.keys(from.received), ...Object.keys(to.received)]))
      received[k] = (to.received[k] ?? 0) - (from.received[k] ?? 0);
  }
  const a = from.pg;
  const b = to.pg;
  return {
    seconds: Math.round(s * 10) / 10,
    heartbeats_sent_per_s: rate(from.sent, to.sent, s),
    heartbeats_received_per_s: received ? Math.round(((received.ok ?? 0) / s) * 10) / 10 : null,
    heartbeats_received_by_result: received,
    postgres:
      a && b
        ? {
            xact_commit_per_s: rate(a.xactCommit, b.xactCommit, s),
            xact_rollback_per_s: rate(a.xactRollback, b.xactRollback, s),
            rows_updated_per_s: rate(a.tupUpdated, b.tupUpdated, s),
            rows_inserted_per_s: rate(a.tupInserted, b.tupInserted, s),
            rows_deleted_per_s: rate(a.tupDeleted, b.tupDeleted, s),
            backends: b.backends,
          }
        : null,
  };
}

/** The p-th percentile (0..100) of `values` (nearest rank); null when empty. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((x, y) => x - y);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}
