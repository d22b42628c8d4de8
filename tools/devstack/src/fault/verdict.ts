// The fault test's verdict and summary (pure): what must hold at the end of a run, and how it is printed.
import type { Recovery } from './recovery.js';
import type { EventCounts, WebhookCounts } from './verify.js';

export const FAULT_KINDS = [
  'agentKill',
  'ingestKill',
  'natsKill',
  'pgCrash',
  'pgFreeze',
  'uplinkCut',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** The cluster mode's faults (cluster.ts), injected in turn: the EVENTS leader's node, one ingest process, PostgreSQL. */
export const CLUSTER_FAULT_KINDS = ['natsLeaderKill', 'ingestKill', 'pgCrash'] as const;
export type ClusterFaultKind = (typeof CLUSTER_FAULT_KINDS)[number];

const FAULT_LABELS: Record<FaultKind | ClusterFaultKind, string> = {
  natsLeaderKill: 'EVENTS leader node kill -9',
  agentKill: 'agent kill -9',
  ingestKill: 'ingest (cloud) kill -9',
  natsKill: 'nats-server kill -9',
  pgCrash: 'PostgreSQL crash (-m immediate)',
  pgFreeze: 'PostgreSQL freeze (SIGSTOP)',
  uplinkCut: 'uplink cut (proxy)',
};

export interface StreamCounts {
  /** Messages left in EVENTS at the end (after the drain and the stranded repair): must be 0. */
  eventsLeft: number;
  /** Messages in DEAD_LETTER (every fault-test event is valid): must be 0. */
  deadLetters: number;
  /** Stranded messages repaired over the run, summed from every cloud process's repair log lines, by outcome. */
  strandedRepaired: { removed: number; reingested: number; deadLettered: number };
  /** The last cloud process's `vigil_cloud_ingest_stranded_total` lines from /metrics. */
  strandedMetric: string[];
}

export interface FaultResult {
  /** Events the run was asked to produce (acknowledged). */
  target: number;
  events: EventCounts;
  stream: StreamCounts;
  /** Present when the run included a webhook receiver. */
  webhook?: WebhookCounts;
  /** Faults injected, by kind: every kind listed must have happened at least once. */
  faults: Partial<Record<FaultKind | ClusterFaultKind, number>>;
  /** Cluster mode: each fault in turn, with the time to recover and the throughput during it (recovery.ts). */
  recoveries?: FaultRecovery[];
  /** Seconds spent starting, producing under faults, draining, checking. */
  phases: { setup: number; produce: number; drain: number; check: number };
  seconds: number;
  workDir: string;
}

export interface FaultRecovery extends Recovery {
  kind: ClusterFaultKind;
  /** What was killed: the node name, the ingest process. */
  target: string;
  /** Seconds since the production began. */
  atSecond: number;
}

const kindsOf = (r: FaultResult): Array<FaultKind | ClusterFaultKind> =>
  Object.keys(r.faults) as Array<FaultKind | ClusterFaultKind>;

/** Every reason the run fails; empty means PASS. */
export function judge(r: FaultResult): string[] {
  const e = r.events;
  const why: string[] = [];
  if (e.acked !== r.target) why.push(`${e.acked} events acknowledged, expected ${r.target}`);
  if (e.lost > 0) why.push(`${e.lost} acknowledged events lost`);
  if (e.duplicates > 0) why.push(`${e.duplicates} duplicated rows`);
  if (e.unexplained > 0) why.push(`${e.unexplained} rows no agent wrote`);
  if (e.malformedLines > 0) why.push(`${e.malformedLines} malformed ack lines`);
  if (e.rows !== e.acked + e.inDoubtStored + e.duplicates + e.unexplained)
    why.push(
      `rows ${e.rows} != acked ${e.acked} + in-doubt stored ${e.inDoubtStored} (+ duplicates, unexplained)`,
    );
  if (r.stream.eventsLeft > 0) why.push(`${r.stream.eventsLeft} messages stranded in EVENTS`);
  if (r.stream.deadLetters > 0) why.push(`${r.stream.deadLetters} messages dead-lettered`);
  const w = r.webhook;
  if (w) {
    // A full outbox drops jobs by design (bounded, counted, logged): those, and only those, may be missing.
    if (w.missing !== w.droppedOutboxFull)
      why.push(
        `${w.missing} events never reached the webhook, ${w.droppedOutboxFull} dropped by the full outbox (counted)`,
      );
    if (w.unexpected > 0) why.push(`${w.unexpected} webhook requests for events not stored`);
    if (w.recordedTwice > 0) why.push(`${w.recordedTwice} (webhook, event) pairs recorded delivered twice`);
    if (w.dead > 0) why.push(`${w.dead} webhook deliveries dead`);
  }
  for (const k of kindsOf(r)) if (!r.faults[k]) why.push(`no ${FAULT_LABELS[k]} happened`);
  for (const f of r.recoveries ?? [])
    if (f.recoverMs === undefined)
      why.push(`no recovery from the ${FAULT_LABELS[f.kind]} at ${f.atSecond} s (${f.target})`);
  return why;
}

/** The human summary: counts per fault kind, the totals, and PASS or FAIL with the reasons. */
export function summary(r: FaultResult, why: readonly string[]): string {
  const e = r.events;
  const s = r.stream.strandedRepaired;
  const pad = (t: string): string => t.padEnd(34);
  const lines = [
    'faults injected:',
    ...kindsOf(r).map((k) => `  ${pad(FAULT_LABELS[k])}${r.faults[k]}`),
    `  ${pad('total')}${kindsOf(r).reduce((n, k) => n + (r.faults[k] ?? 0), 0)}`,
    ...(r.recoveries?.length
      ? [
          'recovery (commit rate back to half the rate before the fault, 1 s windows):',
          ...r.recoveries.map(
            (f) =>
              `  ${`${FAULT_LABELS[f.kind]} (${f.target})`.padEnd(44)}at ${f.atSecond} s: ` +
              `${f.recoverMs === undefined ? 'NOT recovered' : `recovered in ${(f.recoverMs / 1000).toFixed(1)} s`}, ` +
              `${f.duringPerSecond}/s during it (${f.baselinePerSecond}/s before)`,
          ),
        ]
      : []),
    'events:',
    `  ${pad('acknowledged (must all be stored)')}${e.acked} of ${r.target}`,
    `  ${pad('in doubt (killed mid-append)')}${e.inDoubt} (${e.inDoubtStored} stored)`,
    `  ${pad('rows in PostgreSQL')}${e.rows} (${e.distinct} distinct)`,
    `  ${pad('lost')}${e.lost}`,
    `  ${pad('duplicated')}${e.duplicates}`,
    `  ${pad('unexplained rows')}${e.unexplained}`,
    `  ${pad('ack files (torn last lines)')}${e.ackFiles} (${e.tornLines})`,
    'streams:',
    `  ${pad('left in EVENTS (stranded)')}${r.stream.eventsLeft}`,
    `  ${pad('DEAD_LETTER')}${r.stream.deadLetters}`,
    `  ${pad('stranded repaired over the run')}removed ${s.removed}, reingested ${s.reingested}, dead-lettered ${s.deadLettered}`,
    ...(r.webhook
      ? [
          'webhook (one receiver, all events):',
          `  ${pad('expected (stored events)')}${r.webhook.expected}`,
          `  ${pad('missing')}${r.webhook.missing}`,
          `  ${pad('dropped: outbox full (counted)')}${r.webhook.droppedOutboxFull}`,
          `  ${pad('recorded delivered twice')}${r.webhook.recordedTwice}`,
          `  ${pad('dead')}${r.webhook.dead}`,
          `  ${pad('unexpected')}${r.webhook.unexpected}`,
          `  ${pad('repeated POSTs (at least once)')}${r.webhook.repeatedPosts}`,
        ]
      : []),
    `time: ${r.seconds} s (setup ${r.phases.setup}, produce ${r.phases.produce}, drain ${r.phases.drain}, check ${r.phases.check}); ` +
      `${r.phases.produce > 0 ? Math.round(e.acked / r.phases.produce) : 0} events/s while producing`,
    why.length === 0
      ? `PASS: 0 lost, 0 duplicated, 0 stranded, 0 unexplained, every fault kind injected${r.recoveries ? ', every fault recovered' : ''}`
      : `FAIL: ${why.join('; ')}\nevidence kept in ${r.workDir}`,
  ];
  return lines.join('\n');
}
