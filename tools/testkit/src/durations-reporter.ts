import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Reporter, TestModule, Vitest } from 'vitest/node';
import { mergeDurations, parseDurations, type Durations, type DurationsFile } from './durations.js';
import { DURATIONS_FILE, repoPath } from './sequencer.js';

const ABOUT =
  'Seconds each test file took in a whole run (vitest run, 2 workers), read by tools/testkit/src/sequencer.ts to ' +
  'start the longest files first. Refresh on an idle machine: VIGIL_RECORD_DURATIONS=1 pnpm test, then commit.';

/**
 * With `VIGIL_RECORD_DURATIONS=1`, writes each passed file's duration (set-up, import and tests, as its
 * worker spent them) into the committed durations file at the end of the run; otherwise does nothing. Files
 * that failed or were skipped keep what was recorded: a failure can end a file early, and a skip (assets
 * absent) is not what CI runs.
 */
export default class DurationsReporter implements Reporter {
  private root = '';

  onInit(vitest: Vitest): void {
    this.root = vitest.config.root;
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    if (process.env.VIGIL_RECORD_DURATIONS !== '1') return;
    const measured: Durations = {};
    for (const mod of testModules) {
      if (mod.state() !== 'passed') continue;
      const d = mod.diagnostic();
      const ms =
        d.environmentSetupDuration + d.prepareDuration + d.collectDuration + d.setupDuration + d.duration;
      measured[repoPath(this.root, mod.moduleId)] = ms / 1000;
    }
    const file = join(this.root, DURATIONS_FILE);
    const before = existsSync(file) ? parseDurations(readFileSync(file, 'utf8'), file).files : {};
    const out: DurationsFile = {
      about: ABOUT,
      files: mergeDurations(before, measured, (p) => existsSync(join(this.root, p))),
    };
    writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
    console.log(`[testkit] recorded ${Object.keys(measured).length} file durations in ${DURATIONS_FILE}`);
  }
}
