import { defineConfig } from 'vitest/config';
import { DurationSequencer } from './tools/testkit/src/sequencer.js';

// One run over every package. Integration tests start real services (nats-server, PostgreSQL, ffmpeg,
// the RTSP camera-sim) through @vigil/testkit; the global setup reaps any process a crashed worker left.
export default defineConfig({
  resolve: { conditions: ['@vigil/source'] },
  ssr: { resolve: { conditions: ['@vigil/source'] } },
  test: {
    include: ['{proto,certs,edge-agent,cloud,infra,tools/*}/{src,test}/**/*.test.ts'],
    globalSetup: ['tools/testkit/src/global-setup.ts'],
    // The summary last: its line ends the output.
    reporters: [
      'default',
      './tools/testkit/src/durations-reporter.ts',
      './tools/testkit/src/summary-reporter.ts',
    ],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 20_000,
    // expect.poll waits for a condition; its 1 s default is a timing margin a loaded 2-core machine does not
    // always give (a poll that passes returns as soon as the condition holds, so a longer bound costs nothing).
    expect: { poll: { timeout: 10_000 } },
    pool: 'forks',
    maxWorkers: 2,
    // Longest files first (recorded in tools/testkit/test-durations.json), so that the two workers end
    // together instead of one finishing a long file alone.
    sequence: { sequencer: DurationSequencer },
  },
});
