import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createVitest } from 'vitest/node';
import {
  DurationsError,
  mergeDurations,
  orderByDuration,
  parseDurations,
  UNKNOWN_SECONDS,
  type FileToOrder,
} from '../src/durations.js';
import { DURATIONS_FILE, DurationSequencer, repoPath } from '../src/sequencer.js';
import { repoRoot } from '../src/assets.js';

/** When the last of two (or `workers`) workers ends, taking files from one queue in `order`. */
function makespan(order: readonly FileToOrder[], workers = 2): number {
  const free = Array.from({ length: workers }, () => 0);
  for (const f of order) {
    const i = free.indexOf(Math.min(...free));
    free[i]! += f.seconds ?? UNKNOWN_SECONDS;
  }
  return Math.max(...free);
}

describe('longest test files first', () => {
  const f = (path: string, size: number, seconds?: number): FileToOrder => ({ path, size, seconds });

  it('orders by recorded seconds, unknown files at the estimate, then larger first, then by path', () => {
    const files = [
      f('a.test.ts', 100, 2),
      f('clip.test.ts', 3_500, 141),
      f('big-unknown.test.ts', 40_000),
      f('small-unknown.test.ts', 900),
      f('e2e.test.ts', 39_000, 225),
      f('b.test.ts', 100, 2),
      f('mid.test.ts', 50, UNKNOWN_SECONDS),
    ];
    expect(orderByDuration(files).map((x) => x.path)).toEqual([
      'e2e.test.ts',
      'clip.test.ts',
      'big-unknown.test.ts',
      'small-unknown.test.ts',
      'mid.test.ts',
      'a.test.ts',
      'b.test.ts',
    ]);
    // The input is not reordered in place.
    expect(files[0]!.path).toBe('a.test.ts');
  });

  it('on two workers, a long file that is small in bytes no longer runs alone at the end', () => {
    // Largest-file-first (vitest's order without a results cache) queues the 141 s clip test behind the
    // bulk; longest first starts it at once.
    const files = [
      f('e2e.test.ts', 39_000, 225),
      ...Array.from({ length: 40 }, (_, i) => f(`unit-${i}.test.ts`, 20_000 - i, 8)),
      f('clip.test.ts', 3_500, 141),
      f('fault.test.ts', 2_600, 75),
    ];
    const bySize = [...files].sort((a, b) => b.size - a.size);
    const longest = orderByDuration(files);
    expect(makespan(bySize)).toBe(413);
    expect(makespan(longest)).toBe(384);
    // Longest first ends within one short file (8 s) of the ideal, half the total; largest first does not.
    const half = files.reduce((s, x) => s + x.seconds!, 0) / 2;
    expect(makespan(longest) - half).toBeLessThanOrEqual(8);
    expect(makespan(bySize) - half).toBeGreaterThan(8);
  });

  it('merges a run into the recorded durations: measured files replaced, others kept, deleted ones dropped', () => {
    const merged = mergeDurations(
      { 'z.test.ts': 3, 'gone.test.ts': 9, 'kept.test.ts': 4.04 },
      { 'z.test.ts': 12.345, 'new.test.ts': 0.06 },
      (p) => p !== 'gone.test.ts',
    );
    expect(merged).toEqual({ 'kept.test.ts': 4, 'new.test.ts': 0.1, 'z.test.ts': 12.3 });
    expect(Object.keys(merged)).toEqual(['kept.test.ts', 'new.test.ts', 'z.test.ts']);
  });

  it('refuses a durations file with unknown keys or anything but seconds, naming the file', () => {
    const ok = { about: 'x', files: { 'a.test.ts': 1.5 } };
    expect(parseDurations(JSON.stringify(ok), 'd.json')).toEqual(ok);
    const parse = (doc: unknown) => () =>
      parseDurations(typeof doc === 'string' ? doc : JSON.stringify(doc), 'd.json');
    expect(parse('{')).toThrow(new DurationsError('DURATIONS_INVALID', 'd.json: not JSON'));
    expect(parse({ ...ok, extra: 1 })).toThrow(DurationsError);
    expect(parse({ ...ok, extra: 1 })).toThrow('d.json: unknown key(s) extra');
    expect(parse([])).toThrow('d.json: not an object');
    expect(parse({ files: {} })).toThrow('d.json: "about" must be a string');
    expect(parse({ about: 'x' })).toThrow('d.json: "files" must be an object of path -> seconds');
    expect(parse({ about: 'x', files: { 'a.test.ts': -1 } })).toThrow(
      'd.json: "a.test.ts": -1 is not a number of seconds >= 0',
    );
    expect(parse({ about: 'x', files: { 'a.test.ts': '3' } })).toThrow('"a.test.ts": "3" is not a number');
    let caught: unknown;
    try {
      parse('{')();
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(DurationsError);
    expect((caught as DurationsError).code).toBe('DURATIONS_INVALID');
  });

  it('the committed durations name test files that exist', () => {
    const root = repoRoot();
    const { files } = parseDurations(readFileSync(join(root, DURATIONS_FILE), 'utf8'), DURATIONS_FILE);
    expect(Object.keys(files).length).toBeGreaterThan(0);
    for (const path of Object.keys(files)) expect(existsSync(join(root, path)), path).toBe(true);
  });

  it("the sequencer, on this repository's own test files through vitest, starts the recorded slowest first", async () => {
    const root = repoRoot();
    // No results cache, as in CI's clean clone (cached durations of a local run count for unrecorded files).
    const vitest = await createVitest('test', { root, watch: false, cache: false });
    try {
      const specs = await vitest.globTestSpecifications();
      expect(specs.length).toBeGreaterThan(100);
      const ordered = await new DurationSequencer(vitest).sort(specs);
      expect(ordered).toHaveLength(specs.length);
      const { files } = parseDurations(readFileSync(join(root, DURATIONS_FILE), 'utf8'), DURATIONS_FILE);
      const slowest = Object.entries(files)
        .filter(([, s]) => s > UNKNOWN_SECONDS)
        .sort((a, b) => b[1] - a[1])
        .map(([p]) => p);
      expect(ordered.slice(0, slowest.length).map((s) => repoPath(root, s.moduleId))).toEqual(slowest);
    } finally {
      await vitest.close();
    }
  });
});
