import { z } from 'zod';

const port = z.number().int().min(0).max(65535);

/** The cloud's whole configuration: one schema, defaults that work locally, unknown keys rejected. */
export const cloudConfigSchema = z.strictObject({
  http: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: port.default(8080),
    })
    .prefault({}),
  database: z.strictObject({
    url: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL'),
    poolMax: z.number().int().min(1).max(200).default(10),
  }),
  nats: z.strictObject({
    servers: z.array(z.string().min(1)).min(1),
    tls: z.strictObject({
      caFile: z.string().min(1),
      certFile: z.string().min(1),
      keyFile: z.string().min(1),
    }),
    name: z.string().default('vigil-cloud'),
  }),
  /** Devices count as offline after this long without a heartbeat. */
  fleet: z
    .strictObject({ offlineAfterSeconds: z.number().int().min(5).max(86_400).default(30) })
    .prefault({}),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
});

export type CloudConfig = z.infer<typeof cloudConfigSchema>;
