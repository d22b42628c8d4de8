import { z } from 'zod';

const id = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/i, 'must be 1-63 letters, digits, "-" or "_"');

export const cameraSchema = z.strictObject({
  id,
  url: z.string().min(1),
  enabled: z.boolean().default(true),
  transport: z.enum(['tcp', 'udp']).default('tcp'),
  width: z.number().int().min(16).max(4096).default(640),
  height: z.number().int().min(16).max(4096).default(640),
  fps: z.number().min(0.1).max(60).default(5),
  ioTimeoutMs: z.number().int().min(500).max(120_000).default(5_000),
  /** Files only: pace at the native frame rate and loop, like a live camera. */
  realtime: z.boolean().default(true),
  loop: z.boolean().default(true),
});

/** The agent's local config: everything it needs to run offline. Unknown keys are rejected. */
export const agentConfigSchema = z
  .strictObject({
    device: z.strictObject({ tenantId: id, siteId: id, deviceId: id }),
    dataDir: z.string().min(1).default('/var/lib/vigil'),
    nats: z
      .strictObject({
        servers: z.array(z.string().min(1)).min(1),
        tls: z.strictObject({
          caFile: z.string().min(1),
          certFile: z.string().min(1),
          keyFile: z.string().min(1),
        }),
      })
      .optional(),
    http: z
      .strictObject({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(9464),
      })
      .prefault({}),
    heartbeatSeconds: z.number().min(1).max(3600).default(10),
    cameras: z.array(cameraSchema).max(64).default([]),
    log: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .prefault({}),
  })
  .superRefine((cfg, ctx) => {
    const seen = new Set<string>();
    cfg.cameras.forEach((c, i) => {
      if (seen.has(c.id))
        ctx.addIssue({
          code: 'custom',
          path: ['cameras', i, 'id'],
          message: `duplicate camera id "${c.id}"`,
        });
      seen.add(c.id);
    });
  });

export type AgentConfig = z.infer<typeof agentConfigSchema>;
export type CameraConfig = z.infer<typeof cameraSchema>;
