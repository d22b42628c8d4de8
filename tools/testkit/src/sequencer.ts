import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { orderByDuration, parseDurations, type Durations } from './durations.js';

/** Recorded durations, relative to the repository root (written by durations-reporter.ts). */
export const DURATIONS_FILE = 'tools/testkit/test-durations.json';

/** The repository-relative path of a test file, with forward slashes (the key of the durations file). */
export function repoPath(root: string, moduleId: string): string {
  return relative(root, moduleId).split(sep).join('/');
}

/** The recorded durations, or none when the file is absent (a missing file must not stop the suite). */
export function readDurations(root: string): Durations {
  const file = join(root, DURATIONS_FILE);
  if (!existsSync(file)) return {};
  return parseDurations(readFileSync(file, 'utf8'), file).files;
}

/**
 * Starts the longest test files first (durations.ts). Vitest's own order (its results cache, else larger
 * files first) only knows durations from an earlier run in the same checkout: CI runs a clean clone, where
 * the 141 s real-time clip test was queued 161st of 204 files. The committed durations come first; vitest's
 * cache fills in files they do not list; a file neither knows gets the estimate for unknown files.
 * `VIGIL_TEST_ORDER=print` prints the order with the seconds it assumed.
 */
export class DurationSequencer extends BaseSequencer {
  override sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const root = this.ctx.config.root;
    const recorded = readDurations(root);
    const rows = files.map((spec) => {
      const path = repoPath(root, spec.moduleId);
      // Vitest's cache key (BaseSequencer's).
      const key = `${spec.project.name}:${relative(root, spec.moduleId)}`;
      const cached = this.ctx.cache.getFileTestResults(key);
      const size =
        this.ctx.cache.getFileStats(key)?.size ??
        statSync(spec.moduleId, { throwIfNoEntry: false })?.size ??
        0;
      const seconds = recorded[path] ?? (cached && !cached.failed ? cached.duration / 1000 : undefined);
      return { spec, path, size, seconds };
    });
    const ordered = orderByDuration(rows);
    if (process.env.VIGIL_TEST_ORDER === 'print')
      console.log(
        `[testkit] file order (seconds assumed; - = unknown):\n${ordered
          .map(
            (r, i) =>
              `  ${String(i + 1).padStart(3)} ${r.seconds === undefined ? '    -' : r.seconds.toFixed(0).padStart(5)}  ${r.path}`,
          )
          .join('\n')}`,
      );
    return Promise.resolve(ordered.map((r) => r.spec));
  }
}
