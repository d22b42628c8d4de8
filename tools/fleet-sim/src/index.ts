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
export { startSimStack, type SimStack, type SimStackOptions } from './stack.js';
export {
  runAgentRollout,
  type AgentRolloutOptions,
  type AgentRolloutResult,
  type RunCli,
} from './agent-scenario.js';
export type { SimUpdateStatus } from './agent.js';
