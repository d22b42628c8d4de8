// The config report contract as a table (see config-report.ts): a device's steps and what its next status says
// after each. The edge agent's tests and fleet-sim's replay it against the real manager and the simulator, so
// both are pinned to the same behaviour (issue #13: the simulator used to report `{version: applied, APPLIED}`
// on its polls after a failed apply, where the agent repeats its last outcome).
import { ConfigState } from './gen/vigil/v1/config.js';

export type ConfigReportStep =
  /** A new version arrives; the device applies it and it is healthy, or it turns unhealthy (the previous config
   * runs again), or its body is invalid (refused, nothing applied). */
  | { deliver: bigint; outcome: 'applied' | 'unhealthy' | 'invalid' }
  /** A version not newer than the highest accepted arrives again in a new delivery: refused as a replay. */
  | { replay: bigint }
  /** A periodic status poll: nothing changes. */
  | { poll: true };

export interface ConfigReportCase {
  step: ConfigReportStep;
  /** The status after the step. */
  expect: { version: bigint; appliedVersion: bigint; state: ConfigState; reason?: RegExp };
}

const { CONFIG_STATE_UNSPECIFIED, CONFIG_STATE_APPLIED, CONFIG_STATE_ROLLED_BACK, CONFIG_STATE_FAILED } =
  ConfigState;

export const CONFIG_REPORT_CONTRACT: readonly ConfigReportCase[] = [
  { step: { poll: true }, expect: { version: 0n, appliedVersion: 0n, state: CONFIG_STATE_UNSPECIFIED } },
  {
    step: { deliver: 1n, outcome: 'applied' },
    expect: { version: 1n, appliedVersion: 1n, state: CONFIG_STATE_APPLIED },
  },
  { step: { poll: true }, expect: { version: 1n, appliedVersion: 1n, state: CONFIG_STATE_APPLIED } },
  {
    step: { deliver: 2n, outcome: 'unhealthy' },
    expect: { version: 2n, appliedVersion: 1n, state: CONFIG_STATE_ROLLED_BACK, reason: /./ },
  },
  // The poll after a failed apply repeats that outcome; it never says {version: applied, APPLIED}.
  {
    step: { poll: true },
    expect: { version: 2n, appliedVersion: 1n, state: CONFIG_STATE_ROLLED_BACK, reason: /./ },
  },
  {
    step: { deliver: 3n, outcome: 'invalid' },
    expect: { version: 3n, appliedVersion: 1n, state: CONFIG_STATE_FAILED, reason: /^invalid/ },
  },
  {
    step: { poll: true },
    expect: { version: 3n, appliedVersion: 1n, state: CONFIG_STATE_FAILED, reason: /^invalid/ },
  },
  {
    step: { replay: 2n },
    expect: { version: 2n, appliedVersion: 1n, state: CONFIG_STATE_FAILED, reason: /^replay: / },
  },
  {
    step: { deliver: 4n, outcome: 'applied' },
    expect: { version: 4n, appliedVersion: 4n, state: CONFIG_STATE_APPLIED },
  },
  { step: { poll: true }, expect: { version: 4n, appliedVersion: 4n, state: CONFIG_STATE_APPLIED } },
];
