/**
 * At most `maxInFlight` tasks at once and `maxQueued` waiting; a task that waited longer than `maxWaitMs` is
 * dropped when its turn comes (whoever wanted it has given up). What happened to each submission is returned so
 * the caller can count it. The clock (milliseconds, monotonic) is injected for tests.
 */
export type Submitted = 'started' | 'queued' | 'busy';

export interface BoundedWorkOptions<T> {
  maxInFlight: number;
  maxQueued: number;
  maxWaitMs: number;
  /** Called for a queued task dropped because it waited too long. */
  onLate?: (item: T) => void;
  /** Called with whatever a task threw (tasks should handle their own errors). */
  onError?: (err: unknown) => void;
  clock?: () => number;
}

export class BoundedWork<T> {
  private active = 0;
  private readonly waiting: Array<{ item: T; at: number }> = [];
  private readonly idlers = new Set<() => void>();
  private readonly clock: () => number;

  constructor(
    private readonly task: (item: T, submittedAt: number) => Promise<void>,
    private readonly opts: BoundedWorkOptions<T>,
  ) {
    this.clock = opts.clock ?? (() => performance.now());
  }

  get inFlight(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  submit(item: T): Submitted {
    const at = this.clock();
    if (this.active < this.opts.maxInFlight) {
      this.start(item, at);
      return 'started';
    }
    if (this.waiting.length < this.opts.maxQueued) {
      this.waiting.push({ item, at });
      return 'queued';
    }
    return 'busy';
  }

  /** Resolves when nothing runs and nothing waits. */
  idle(): Promise<void> {
    if (this.active === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idlers.add(resolve));
  }

  private start(item: T, at: number): void {
    this.active++;
    void this.task(item, at)
      .catch((err: unknown) => this.opts.onError?.(err))
      .finally(() => {
        this.active--;
        this.next();
      });
  }

  private next(): void {
    while (this.active < this.opts.maxInFlight && this.waiting.length > 0) {
      const w = this.waiting.shift()!;
      if (this.clock() - w.at > this.opts.maxWaitMs) this.opts.onLate?.(w.item);
      else this.start(w.item, w.at);
    }
    if (this.active === 0 && this.waiting.length === 0) {
      for (const resolve of this.idlers) resolve();
      this.idlers.clear();
    }
  }
}
