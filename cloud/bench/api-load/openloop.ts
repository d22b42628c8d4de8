// Fixed-rate, open-loop request driving: request k is due at t0 + k/rate whether or not earlier ones have
// answered (a closed loop would slow down with the server and hide its latency: coordinated omission). Latency is
// measured from the due time, so a stalled server shows up in the percentiles. Bounded: at most `maxInFlight`
// outstanding (a request due beyond that is counted as `shed`, not sent), at most `rate * seconds` requests.
import { Agent, request } from 'node:http';

export interface Outcome {
  /** HTTP status, or 0 for a transport error (connection refused or reset: the server died). */
  status: number;
  /** From the due time to the end of the response body, ms. */
  latencyMs: number;
  /** For status 0: the error code (ECONNRESET, ECONNREFUSED, timeout...). */
  error?: string;
}

export interface Recorder {
  record(route: string, o: Outcome, atMs: number): void;
}

/** A request to send: its route name (for the report), method, path, body and token. */
export interface Call {
  route: string;
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
  token: string;
  /** Gets the response body (e.g. to learn a created resource's id); status 0 and '' on a transport error. */
  onBody?: (status: number, body: string) => void;
}

export class HttpClient {
  // `timeout` makes the agent honour the server's `Keep-Alive: timeout=N` hint (it closes an idle socket 1 s
  // before; without a `timeout` Node's Agent ignores the hint) and bounds how long a socket idles in the pool.
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 128, timeout: 60_000 });
  constructor(private readonly port: number) {}

  send(call: Call, dueMs: number): Promise<Outcome> {
    const body = call.body === undefined ? undefined : JSON.stringify(call.body);
    return new Promise((resolve) => {
      const fail = (err: NodeJS.ErrnoException): void => {
        call.onBody?.(0, '');
        resolve({ status: 0, latencyMs: performance.now() - dueMs, error: err.code ?? err.message });
      };
      const req = request(
        {
          host: '127.0.0.1', // loopback only: the generator never targets another host
          port: this.port,
          method: call.method,
          path: call.path,
          agent: this.agent,
          headers: {
            authorization: `Bearer ${call.token}`,
            ...(body === undefined
              ? {}
              : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }),
          },
          timeout: 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => {
            if (call.onBody) chunks.push(c);
          });
          res.on('end', () => {
            call.onBody?.(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'));
            resolve({ status: res.statusCode ?? 0, latencyMs: performance.now() - dueMs });
          });
          res.on('error', (err: NodeJS.ErrnoException) => fail(err));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', fail);
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

export interface PhaseResult {
  sent: number;
  shed: number;
  seconds: number;
  /** Set when `stop()` returned true (e.g. the server died): the phase ended early. */
  stoppedEarly: boolean;
}

/**
 * Sends `next(k)` at `rate`/s for `seconds` (k = 0, 1, ...), open loop, and waits for the answers (at most
 * `drainMs` after the last send). `stop` is polled every tick.
 */
export async function runOpenLoop(opts: {
  rate: number;
  seconds: number;
  maxInFlight: number;
  client: HttpClient;
  next: (k: number) => Call;
  recorder: Recorder;
  stop?: () => boolean;
  drainMs?: number;
}): Promise<PhaseResult> {
  const total = Math.max(0, Math.floor(opts.rate * opts.seconds));
  const interval = 1000 / opts.rate;
  const t0 = performance.now();
  let k = 0;
  let shed = 0;
  let inFlight = 0;
  let stoppedEarly = false;
  const pending = new Set<Promise<void>>();
  await new Promise<void>((done) => {
    const tick = (): void => {
      if (opts.stop?.()) {
        stoppedEarly = true;
        done();
        return;
      }
      const now = performance.now();
      while (k < total && t0 + k * interval <= now) {
        const due = t0 + k * interval;
        if (inFlight >= opts.maxInFlight) shed++;
        else {
          const call = opts.next(k);
          inFlight++;
          const p = opts.client.send(call, due).then((o) => {
            inFlight--;
            opts.recorder.record(call.route, o, performance.now());
          });
          pending.add(p);
          void p.finally(() => pending.delete(p));
        }
        k++;
      }
      if (k >= total) done();
      else setTimeout(tick, Math.max(1, Math.min(5, t0 + k * interval - performance.now())));
    };
    tick();
  });
  const drain = new Promise<void>((r) => setTimeout(r, opts.drainMs ?? 30_000).unref());
  await Promise.race([Promise.all([...pending]), drain]);
  return { sent: k - shed, shed, seconds: (performance.now() - t0) / 1000, stoppedEarly };
}

export interface Summary {
  n: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
  byStatus: Record<string, number>;
  /** Transport failures (no HTTP answer: ECONNRESET, ECONNREFUSED, timeout), by error code. */
  connectionErrors: number;
  /** HTTP answers 500-599. */
  http5xx: number;
  /** HTTP answers 400-499 (expected ones, e.g. a 404 for an unknown id, are the route's to explain). */
  http4xx: number;
  /** connectionErrors + http5xx: what the soak must keep at 0. */
  errors: number;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const r2 = (x: number | null): number | null => (x === null ? null : Math.round(x * 100) / 100);

export function summarize(outcomes: readonly Outcome[]): Summary {
  const lat = outcomes.map((o) => o.latencyMs).sort((a, b) => a - b);
  const byStatus: Record<string, number> = {};
  let connectionErrors = 0;
  let http5xx = 0;
  let http4xx = 0;
  for (const o of outcomes) {
    const s = o.status === 0 ? `transport:${o.error ?? '?'}` : String(o.status);
    byStatus[s] = (byStatus[s] ?? 0) + 1;
    if (o.status === 0) connectionErrors++;
    else if (o.status >= 500) http5xx++;
    else if (o.status >= 400) http4xx++;
  }
  return {
    n: outcomes.length,
    p50: r2(percentile(lat, 0.5)),
    p90: r2(percentile(lat, 0.9)),
    p99: r2(percentile(lat, 0.99)),
    max: r2(lat.at(-1) ?? null),
    byStatus,
    connectionErrors,
    http5xx,
    http4xx,
    errors: connectionErrors + http5xx,
  };
}

/** Keeps every outcome with its route and completion time, to summarize per route and per time window. */
export class OutcomeLog implements Recorder {
  readonly rows: Array<{ route: string; o: Outcome; atMs: number }> = [];
  record(route: string, o: Outcome, atMs: number): void {
    this.rows.push({ route, o, atMs });
  }
  summary(filter: (row: { route: string; atMs: number }) => boolean = () => true): Summary {
    return summarize(this.rows.filter(filter).map((r) => r.o));
  }
  byRoute(filter: (row: { route: string; atMs: number }) => boolean = () => true): Record<string, Summary> {
    const routes = [...new Set(this.rows.map((r) => r.route))].sort();
    return Object.fromEntries(
      routes.map((route) => [route, this.summary((r) => r.route === route && filter(r))]),
    );
  }
  /**
   * Consecutive windows of `windowMs` from `t0` (completion time): overall p50/p99 and each route's n/p50/p99, to
   * see which route drifts over a soak.
   */
  windows(t0: number, windowMs: number): Array<Record<string, unknown>> {
    const end = Math.max(t0, ...this.rows.map((r) => r.atMs));
    const out: Array<Record<string, unknown>> = [];
    for (let a = 0; t0 + a <= end; a += windowMs) {
      const inside = (r: { atMs: number }): boolean => r.atMs - t0 >= a && r.atMs - t0 < a + windowMs;
      const all = this.summary(inside);
      if (all.n === 0) continue;
      const byRoute = Object.fromEntries(
        Object.entries(this.byRoute(inside)).map(([route, s]) => [
          route,
          { n: s.n, p50: s.p50, p99: s.p99, http4xx: s.http4xx, errors: s.errors },
        ]),
      );
      out.push({
        fromS: a / 1000,
        toS: (a + windowMs) / 1000,
        n: all.n,
        p50: all.p50,
        p99: all.p99,
        byRoute,
      });
    }
    return out;
  }
}
