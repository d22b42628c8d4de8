export { DEFAULT_BEHAVIOUR, SimAgent, type SimBehaviour } from './agent.js';
export { enrollDevices, sharedDeviceKey, type EnrolledDevice, type EnrollOptions } from './enroll.js';
export { SimFleet, type ApplyRecord } from './fleet.js';
export {
  apiClient,
  createRollout,
  getRollout,
  getRolloutDevices,
  runScenario,
  until,
  untilRolloutState,
  type ApiClient,
  type RolloutDeviceView,
  type RolloutSpecInput,
  type RolloutView,
  type ScenarioResult,
} from './scenario.js';
export {
  startSimProcessStack,
  startSimStack,
  type SimProcessStack,
  type SimStack,
  type SimStackBase,
  type SimStackOptions,
} from './stack.js';
export { startSimInfra, type SimInfra, type SimInfraOptions, type SimNatsNode } from './infra.js';
export {
  FleetSimError,
  runFleetSim,
  scaledTimeoutMs,
  type FleetSimOptions,
  type FleetSimReport,
} from './run.js';
export * from './resources.js';
export {
  countSimConnections,
  configStatusCounts,
  heartbeatCounts,
  percentile,
  simConnectionsPerNode,
  steadyFigures,
  sumMetric,
  type SteadyFigures,
  type SteadyReading,
} from './load.js';
export { Progress, rolloutLine } from './progress.js';
export {
  runAgentRollout,
  type AgentRolloutOptions,
  type AgentRolloutResult,
  type RunCli,
} from './agent-scenario.js';
export type { SimUpdateStatus } from './agent.js';
