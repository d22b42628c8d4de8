export { LogTail } from './log-tail.js';
export { natsConfig, NatsServer } from './nats.js';
export type { NatsConfigContext, NatsConfigOptions, NatsServerOptions, NatsTlsFiles } from './nats.js';
export { freePort } from './ports.js';
export { canConnect, createDatabase, findPostgresBinDir, PostgresCluster, withDatabase } from './postgres.js';
export type { PostgresClusterOptions } from './postgres.js';
export { isAlive, killGroup, ProcessRegistry, reapRunDir, stopChild, waitForExit } from './processes.js';
export { pingRedis, RedisServer } from './redis.js';
export type { RedisServerOptions } from './redis.js';
