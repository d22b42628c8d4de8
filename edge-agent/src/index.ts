export { AGENT_VERSION, startAgent } from './agent.js';
export type { Agent, AgentDeps } from './agent.js';
export { loadAgentConfig, parseAgentConfig, AgentConfigError } from './config/load.js';
export type { AgentConfig, CameraConfig } from './config/schema.js';
export { CameraSupervisor } from './ingest/supervisor.js';
export type { CameraState, CameraStatusSnapshot, Frame } from './ingest/supervisor.js';
export { openOutbox, type Outbox } from './buffer/index.js';
export { inboxPrefixFor, Uplink } from './uplink/index.js';
export { createUuidV7 } from './lib/uuidv7.js';
