import type { Reporter, TestModule } from 'vitest/node';

/** Prints one plain closing line (`vitest: N passed, N failed, N skipped`) that any CI log reader understands. */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown> = []): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const mod of testModules) {
      let failedHere = 0;
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failedHere++;
        else skipped++;
      }
      // A file that failed without a failing test: it did not load, or a beforeAll/afterAll hook threw (its
      // tests then show as skipped). Count the file as one failure.
      if (mod.state() === 'failed' && failedHere === 0) failedHere = 1;
      failed += failedHere;
    }
    // An unhandled error fails the run (vitest exits 1) even when every test passed: count it as a failure so
    // that this line never says "0 failed" for a red run.
    failed += unhandledErrors.length;
    console.log(`\nvitest: ${passed} passed, ${failed} failed, ${skipped} skipped`);
  }
}
