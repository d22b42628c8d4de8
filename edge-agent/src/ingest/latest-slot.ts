/**
 * Latest-frame-wins hand-off between ingest and detection: holds at most one item. A new item replaces
 * an unconsumed one, which is counted as dropped: when detection is slower than the camera we skip
 * frames, we never queue them.
 */
export class LatestSlot<T> {
  private item: T | undefined;
  private waiter: ((item: T | undefined) => void) | undefined;
  private closed = false;
  dropped = 0;
  offered = 0;

  offer(item: T): void {
    if (this.closed) return;
    this.offered++;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w(item);
      return;
    }
    if (this.item !== undefined) this.dropped++;
    this.item = item;
  }

  /** Takes the current item, or undefined when the slot is empty. */
  take(): T | undefined {
    const item = this.item;
    this.item = undefined;
    return item;
  }

  /** Resolves with the next item (immediately if one is waiting), or undefined once closed. One waiter at a time. */
  next(): Promise<T | undefined> {
    const item = this.take();
    if (item !== undefined || this.closed) return Promise.resolve(item);
    if (this.waiter) return Promise.reject(new Error('LatestSlot.next(): a consumer is already waiting'));
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** Wakes the consumer with undefined; later offers are ignored. */
  close(): void {
    this.closed = true;
    this.item = undefined;
    const w = this.waiter;
    this.waiter = undefined;
    w?.(undefined);
  }
}
