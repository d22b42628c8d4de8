/*
 * Two small concurrency tools of the webhook worker (pure: no I/O, no clock).
 *
 * GroupBatcher ("group commit"): callers submit one item each and get its own result; items that arrive while
 * `maxInFlight` flushes are running wait and go together in the next flush (up to `maxBatch`). An idle batcher
 * flushes a lone item at once (no added latency); a busy one turns N callers into N / batch statements. The
 * worker uses it for the per-job reads (webhook and attempts so far) and for recording outcomes, which were
 * three PostgreSQL round trips per delivery.
 *
 * KeyedLimiter: at most `limit` holders per key (the receiver's origin), the others wait in FIFO order. It bounds
 * the requests (and keep-alive connections) one receiver gets, and it is taken before the request's deadline
 * starts, so a job never times out merely waiting for its turn.
 */

interface Waiter<I, O> {
  item: I;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
}

export class GroupBatcher<I, O> {
  private pending: Array<Waiter<I, O>> = [];
  private running = 0;

  constructor(
    /** Must return one result per item, in order; a throw fails every item of that flush. */
    private readonly flush: (items: I[]) => Promise<O[]>,
    private readonly opts: { maxBatch: number; maxInFlight: number },
  ) {
    if (opts.maxBatch < 1 || opts.maxInFlight < 1)
      throw new RangeError('maxBatch and maxInFlight must be >= 1');
  }

  /** Items waiting for a flush (bounded by the callers: each waits for its own result). */
  get waiting(): number {
    return this.pending.length;
  }

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.opts.maxInFlight && this.pending.length > 0) {
      const batch = this.pending.splice(0, this.opts.maxBatch);
      this.running++;
      void this.run(batch);
    }
  }

  private async run(batch: Array<Waiter<I, O>>): Promise<void> {
    try {
      const out = await this.flush(batch.map((b) => b.item));
      if (out.length !== batch.length)
        throw new Error(`batch flush returned ${out.length} results for ${batch.length} items`);
      batch.forEach((b, i) => b.resolve(out[i]!));
    } catch (err) {
      for (const b of batch) b.reject(err);
    } finally {
      this.running--;
      this.pump();
    }
  }
}

export class KeyedLimiter {
  private readonly keys = new Map<string, { holders: number; queue: Array<() => void> }>();

  constructor(private readonly limit: number) {
    if (limit < 1) throw new RangeError('limit must be >= 1');
  }

  /** Resolves with a release function once the caller holds one of `key`'s slots. */
  acquire(key: string): Promise<() => void> {
    let k = this.keys.get(key);
    if (!k) {
      k = { holders: 0, queue: [] };
      this.keys.set(key, k);
    }
    const entry = k;
    const release = once(() => {
      const next = entry.queue.shift();
      if (next)
        next(); // the slot passes to the next waiter: holders unchanged
      else if (--entry.holders === 0) this.keys.delete(key); // no state kept for idle keys
    });
    if (entry.holders < this.limit) {
      entry.holders++;
      return Promise.resolve(release);
    }
    return new Promise((resolve) => entry.queue.push(() => resolve(release)));
  }

  /** Holders and waiters of `key` (tests, metrics). */
  state(key: string): { holders: number; waiting: number } {
    const k = this.keys.get(key);
    return { holders: k?.holders ?? 0, waiting: k?.queue.length ?? 0 };
  }

  /** Keys with at least one holder. */
  get size(): number {
    return this.keys.size;
  }
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}
