/**
 * Pure planning of the time windows a newest-first events list reads, one statement each (event-store.ts).
 *
 * Why: `events` has one partition per UTC day. A list with no time bound makes PostgreSQL plan (and open) every
 * partition for each page, hundreds of them after a year, although a page of 50 usually comes from the newest
 * day. Walking bounded windows newest-first and stopping once the page is full lets each statement prune to
 * the partitions of its window at plan time.
 */

export const DAY_MS = 86_400_000;

/** occurred_at in [from, to): null is unbounded on that side. */
export interface TimeWindow {
  from: Date | null;
  to: Date | null;
}

/** What the catalog says about the partitions (bounds of the oldest and the newest), possibly a bit old. */
export interface PartitionSpan {
  /** Lower bound of the oldest partition. */
  oldest: Date;
  /** Upper bound (exclusive) of the newest partition. */
  newest: Date;
}

export interface WindowRequest {
  /** The newest instant the list can return: the cursor's occurred_at or the (exclusive) until; else none. */
  upper?: Date | undefined;
  /** Inclusive lower bound of the request (since). */
  since?: Date | undefined;
  /** null: unknown (no partition, or one without day bounds such as a DEFAULT partition): one open query. */
  span: PartitionSpan | null;
  now: Date;
}

/** Start of the UTC day holding `ms`. */
export function utcDayStart(ms: number): number {
  return Math.floor(ms / DAY_MS) * DAY_MS;
}

/**
 * The windows of a list, newest first. They are contiguous and disjoint, the first is open above and the last
 * reaches `since` or is open below, so the request's rows are exactly the union of (request AND window) over
 * them, in this order, whatever the catalog said: `span` only decides where the walk starts and when it stops
 * (a partition created after `span` was read is still inside the open first or last window).
 *
 * The first window is the day of the newest possible row; each later one is twice as long as the one before
 * (1, 2, 4 ... days), so a selective filter that needs many days costs a logarithmic number of statements,
 * while the usual page (newest day) prunes to a single partition.
 */
export function planWindows(r: WindowRequest): TimeWindow[] {
  if (r.span === null) return [{ from: null, to: null }];
  const since = r.since?.getTime() ?? -Infinity;
  const oldest = r.span.oldest.getTime();
  // The newest row is before `upper` (or at it, for a cursor) and before the newest partition's end. One
  // millisecond back so that an upper bound at midnight starts in the day before it (a cursor exactly at
  // midnight then reads that day too, which is harmless).
  const top = Math.min(r.upper?.getTime() ?? r.now.getTime(), r.span.newest.getTime()) - 1;
  const windows: TimeWindow[] = [];
  let to: number | null = null;
  let from = utcDayStart(top);
  let days = 1;
  for (;;) {
    if (from <= since) {
      windows.push({ from: new Date(since), to: to === null ? null : new Date(to) });
      return windows;
    }
    if (from <= oldest) {
      windows.push({ from: null, to: to === null ? null : new Date(to) });
      return windows;
    }
    windows.push({ from: new Date(from), to: to === null ? null : new Date(to) });
    to = from;
    from -= days * DAY_MS;
    days *= 2;
  }
}
