// @vigil/cli: the `vigil` admin CLI. The exports let tests (and other tools) run commands in-process and use
// the dead-letter operations on their own JetStream clients.
export { buildProgram, runCli, DEFAULT_API_URL, DEFAULT_NATS_URL, type CliDeps } from './program.js';
export { CliError, type Io } from './errors.js';
export {
  DEAD_LETTER_STREAM,
  DLQ_HEADERS,
  EVENTS_STREAM,
  REPLAY_HEADER,
  decodeEvent,
  getDeadLetter,
  iterateDeadLetters,
  replayAll,
  replayDeadLetter,
  replaySequences,
  toDeadLetter,
  type DeadLetter,
  type ReplayOutcome,
  type ReplayStatus,
} from './dlq.js';
export {
  ApiClient,
  ApiError,
  DEVICE_STATUSES,
  type ApiDevice,
  type ApiEvent,
  type DevicePage,
  type DeviceQuery,
  type DeviceRevocation,
  type DeviceStatus,
  type EventPage,
  type EventQuery,
} from './adapters/api.js';
export { NATS_REVOCATION } from './commands/devices.js';
export { connectNats, cloudServiceTls, type NatsHandle } from './adapters/nats.js';
export { loadDevSigningKey, mintToken, type DevKey, type MintOptions } from './adapters/dev-token.js';
