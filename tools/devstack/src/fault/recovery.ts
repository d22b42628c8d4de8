// Time to recover from a fault, and the throughput during it (pure; the cluster fault run feeds it samples).
//
// The run samples a monotonic count of events the cloud has committed (the agents' acknowledged events minus what
// is still in their outboxes: an entry leaves an outbox only on a commit receipt) every ~100 ms. For one fault
// injected at `at`:
//   baseline   the commit rate over the `baselineMs` before the fault (events/s)
//   recovered  the first moment after the fault at which the rate over the last `windowMs` is back to
//              `ratio` x baseline (the backlog built up during the fault is not required to have drained)
//   recoverMs  recovered - at; undefined when the run ended first (the fault never recovered: reported as such)
//   during     the commit rate from `at` to recovered (events/s)

export interface Sample {
  /** ms since the epoch */
  t: number;
  /** events committed so far (monotonic, advisory: read from the agents' progress lines) */
  committed: number;
}

export interface Recovery {
  baselinePerSecond: number;
  recoverMs: number | undefined;
  duringPerSecond: number;
}

export interface RecoveryOptions {
  baselineMs?: number;
  windowMs?: number;
  ratio?: number;
}

/** The count at time `t`: the last sample at or before it (0 before the first). */
function countAt(samples: readonly Sample[], t: number): number {
  let c = 0;
  for (const s of samples) {
    if (s.t > t) break;
    c = s.committed;
  }
  return c;
}

const rate = (samples: readonly Sample[], from: number, to: number): number =>
  to > from ? ((countAt(samples, to) - countAt(samples, from)) * 1000) / (to - from) : 0;

/** `samples` sorted by time; `at` the moment the fault was injected. */
export function recoveryOf(samples: readonly Sample[], at: number, opts: RecoveryOptions = {}): Recovery {
  const baselineMs = opts.baselineMs ?? 5_000;
  const windowMs = opts.windowMs ?? 1_000;
  const ratio = opts.ratio ?? 0.5;
  const first = samples[0]?.t ?? at;
  const from = Math.max(first, at - baselineMs);
  const baseline = rate(samples, from, at);
  let recovered: number | undefined;
  for (const s of samples) {
    if (s.t < at + windowMs) continue;
    if (rate(samples, s.t - windowMs, s.t) >= ratio * baseline && s.committed > countAt(samples, at)) {
      recovered = s.t;
      break;
    }
  }
  const end = recovered ?? samples[samples.length - 1]?.t ?? at;
  return {
    baselinePerSecond: Math.round(baseline),
    recoverMs: recovered === undefined ? undefined : recovered - at,
    duringPerSecond: Math.round(rate(samples, at, end)),
  };
}
