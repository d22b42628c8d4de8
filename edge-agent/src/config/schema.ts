import { z } from 'zod';

const id = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/i, 'must be 1-63 letters, digits, "-" or "_"');

const unit = z.number().min(0).max(1);
/** A polygon in normalised coordinates, written compactly as [[x, y], ...]. */
const polygon = z
  .array(z.tuple([unit, unit]))
  .min(3, 'a polygon needs at least 3 points')
  .max(64)
  .transform((pts) => pts.map(([x, y]) => ({ x, y })));

export const modelSchema = z.strictObject({
  name: id,
  type: z.enum(['yolox', 'fastestdet', 'ultraface', 'yunet', 'yolov8']),
  path: z.string().min(1),
  /** When set, the file must match it or the model is refused. */
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits')
    .optional(),
  classNames: z.array(z.string().min(1)).max(1000).optional(),
  inputWidth: z.number().int().min(32).max(4096).optional(),
  inputHeight: z.number().int().min(32).max(4096).optional(),
  threads: z.number().int().min(1).max(16).default(1),
  /** Worker threads running this model (each a session); 0: on the main thread. Absent: the cores, at most 2. */
  workers: z.number().int().min(0).max(8).optional(),
});

export const detectSchema = z.strictObject({
  model: id,
  /** Only these labels become tracks and events (all when absent). */
  labels: z.array(z.string().min(1)).optional(),
  defaultThreshold: unit.default(0.5),
  thresholds: z.record(z.string(), unit).default({}),
  nmsIou: unit.default(0.45),
  /** Detections whose ground point falls in a mask are ignored (trees, roads, TV screens). */
  masks: z.array(polygon).max(32).default([]),
  zones: z
    .array(z.strictObject({ id, polygon, labels: z.array(z.string().min(1)).optional() }))
    .max(32)
    .default([]),
  /** Motion gate (pipeline/motion-gate.ts): the detector runs on motion, live tracks, or every maxSkipMs. */
  motion: z
    .strictObject({
      enabled: z.boolean().default(true),
      width: z.number().int().min(8).max(640).default(64),
      pixelThreshold: z.number().min(1).max(255).default(20),
      minChangedFraction: unit.default(0.002),
      backgroundHalfLifeMs: z.number().int().min(50).max(600_000).default(3_000),
      maxSkipMs: z.number().int().min(0).max(600_000).default(2_000),
    })
    .prefault({}),
  tracker: z
    .strictObject({
      minHits: z.number().int().min(1).max(30).default(3),
      maxAgeMs: z.number().int().min(100).max(60_000).default(2_000),
      iouThreshold: unit.default(0.3),
    })
    .prefault({}),
});

export const cameraSchema = z.strictObject({
  id,
  url: z.string().min(1),
  enabled: z.boolean().default(true),
  transport: z.enum(['tcp', 'udp']).default('tcp'),
  /** Analysis size: frames reach detection (and snapshots) at this size; keep the camera's aspect ratio. */
  width: z.number().int().min(16).max(4096).default(640),
  height: z.number().int().min(16).max(4096).default(360),
  fps: z.number().min(0.1).max(60).default(5),
  ioTimeoutMs: z.number().int().min(500).max(120_000).default(5_000),
  /** Files only: pace at the native frame rate and loop, like a live camera. */
  realtime: z.boolean().default(true),
  loop: z.boolean().default(true),
  detect: detectSchema.optional(),
  /**
   * Privacy masks: polygons painted black in every stored snapshot of this camera before it is encoded.
   * Independent of `detect.masks` (those only ignore detections).
   */
  privacyMasks: z.array(polygon).max(32).default([]),
});

/** The agent's local config: everything it needs to run offline. Unknown keys are rejected. */
export const agentConfigSchema = z
  .strictObject({
    /** Pre-provisioned ids. Absent: they come from the enrolled identity (`vigil-agent enroll`). */
    device: z.strictObject({ tenantId: id, siteId: id, deviceId: id }).optional(),
    dataDir: z.string().min(1).default('/var/lib/vigil'),
    /** The enrolled identity (certificate, NATS credentials) and its renewal. */
    identity: z
      .strictObject({
        /** Default <dataDir>/identity. */
        dir: z.string().min(1).optional(),
        renew: z
          .strictObject({
            enabled: z.boolean().default(true),
            /** Renew when this fraction of the certificate's lifetime has passed. */
            atFraction: z.number().min(0.5).max(0.9).default(0.66),
          })
          .prefault({}),
        /** host:port of the cloud's DeviceService; overrides the one stored at enrollment. */
        grpcEndpoint: z
          .string()
          .regex(/^(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d{1,5}$/i, 'must be host:port')
          .optional(),
      })
      .prefault({}),
    /** Pre-provisioned NATS (dev stack, tests). Absent: NATS as the enrolled identity says, if there is one. */
    nats: z
      .strictObject({
        servers: z.array(z.string().min(1)).min(1),
        tls: z.strictObject({
          caFile: z.string().min(1),
          certFile: z.string().min(1),
          keyFile: z.string().min(1),
        }),
        /** NATS credentials file (user JWT + seed); re-read on every (re)connect. */
        credsFile: z.string().min(1).optional(),
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
    models: z.array(modelSchema).max(16).default([]),
    privacy: z
      .strictObject({
        /** Redact faces found by `faceModel` in every snapshot before it is encoded and stored. */
        redactFaces: z.boolean().default(false),
        faceModel: id.optional(),
        faceThreshold: unit.default(0.5),
        /** How: `fill` (solid black) or `blocks` (at most 3x3 flat blocks, each its mean plus random noise). */
        redaction: z
          .strictObject({
            mode: z.enum(['fill', 'blocks']).default('fill'),
            /** Blocks across the larger side of a face; more than 3 was not proven unrecognisable. */
            blocks: z.number().int().min(1).max(3).default(3),
            /** Largest random offset per block and channel. */
            noise: z.number().int().min(16).max(128).default(32),
            /**
             * Grow each face box by this fraction of its size: the whole head goes, not just the face (with 0.5
             * a black box on a visible head and hair still scored 0.61 as a face with UltraFace).
             */
            expand: z.number().min(0.5).max(2).default(1),
          })
          .prefault({}),
      })
      .prefault({}),
    /** What the agent keeps of the snapshots it holds (undelivered, in the outbox); the events stay. */
    retention: z
      .strictObject({
        /** A held snapshot older than this is dropped (its event is still delivered, without the image). */
        mediaMaxHours: z
          .number()
          .min(1)
          .max(24 * 90)
          .default(72),
        /** Size budget of held snapshots; the oldest are dropped first. */
        mediaMaxBytes: z
          .number()
          .int()
          .min(100_000)
          .default(512 * 1024 * 1024),
      })
      .prefault({}),
    snapshots: z
      .strictObject({
        enabled: z.boolean().default(true),
        maxBytes: z.number().int().min(4_096).max(4_000_000).default(150_000),
        quality: z.number().int().min(30).max(95).default(80),
        drawBoxes: z.boolean().default(false),
      })
      .prefault({}),
    buffer: z
      .strictObject({
        /** SQLite file; default <dataDir>/outbox.db. */
        file: z.string().min(1).optional(),
        maxBytes: z
          .number()
          .int()
          .min(1_000_000)
          .default(512 * 1024 * 1024),
        maxEvents: z.number().int().min(100).default(1_000_000),
        ttlHours: z
          .number()
          .min(1)
          .max(24 * 90)
          .default(72),
        eviction: z
          .enum(['reject-new', 'drop-oldest-lowest-priority'])
          .default('drop-oldest-lowest-priority'),
        /** FULL survives power loss; NORMAL (WAL) may lose the last commits on power loss, never corrupts. */
        synchronous: z.enum(['FULL', 'NORMAL']).default('FULL'),
      })
      .prefault({}),
    /** Outbox -> JetStream (used when `nats` is set); entries leave the outbox only on a commit receipt. */
    uplink: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** Max events published and not yet confirmed committed by the cloud. */
        windowSize: z.number().int().min(1).max(4096).default(256),
        /** Max bytes (payload + media) of those events; one event always fits into an empty window. */
        windowBytes: z
          .number()
          .int()
          .min(65_536)
          .max(256 * 1024 * 1024)
          .default(8 * 1024 * 1024),
        /** Max events read from the outbox per fill step. */
        batchSize: z.number().int().min(1).max(1000).default(64),
        publishTimeoutMs: z.number().int().min(100).max(120_000).default(5_000),
        /** Ask the cloud about an event this long after its PubAck when no receipt came. */
        receiptTimeoutMs: z.number().int().min(100).max(3_600_000).default(10_000),
        backoff: z
          .strictObject({
            initialMs: z.number().int().min(10).max(60_000).default(500),
            maxMs: z.number().int().min(100).max(600_000).default(30_000),
          })
          .prefault({}),
      })
      .prefault({}),
    /** Signed remote config from the cloud (issue #7): delivered on the device's cfg subject, polled via status. */
    remoteConfig: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** Period of the ConfigStatus poll (also sent at connect, on reconnect and after each apply). */
        pollSeconds: z.number().min(0.2).max(86_400).default(60),
        /** Time a new config has to become healthy (cameras streaming, models loaded) before it is rolled back. */
        healthTimeoutSeconds: z.number().min(1).max(3600).default(30),
        /** JWKS of the cloud's config signing keys, for pre-provisioned agents (enrolled ones get it at enrollment). */
        trustedKeysFile: z.string().min(1).optional(),
      })
      .prefault({}),
    /**
     * The updater contract (updater/contract.ts): when the applied remote config names an agent version other
     * than this one, the agent asks vigil-updater for it in `<dir>/request.json` and reports `<dir>/status.json`
     * in its heartbeats.
     */
    updater: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** Default <dataDir>/update (production /var/lib/vigil/update). */
        dir: z.string().min(1).optional(),
      })
      .prefault({}),
    /** OpenTelemetry traces (lib/tracing.ts). */
    tracing: z
      .strictObject({
        /** Spans are made (so trace ids propagate and reach the logs) even when nothing exports them. */
        enabled: z.boolean().default(true),
        /** OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces; absent: no export. */
        otlpUrl: z
          .string()
          .regex(/^https?:\/\/[^\s]+$/i, 'must be an http(s) URL')
          .refine((u) => URL.canParse(u), 'must be an http(s) URL')
          .optional(),
        /** Fraction of new traces kept; a span with a parent follows the parent's decision. */
        sampleRatio: z.number().min(0).max(1).default(1),
      })
      .prefault({}),
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
    if (cfg.uplink.backoff.initialMs > cfg.uplink.backoff.maxMs)
      ctx.addIssue({
        code: 'custom',
        path: ['uplink', 'backoff', 'initialMs'],
        message: 'must not exceed uplink.backoff.maxMs',
      });
  });

export type AgentConfig = z.infer<typeof agentConfigSchema>;
export type CameraConfig = z.infer<typeof cameraSchema>;
export type ModelConfig = z.infer<typeof modelSchema>;
export type DetectConfig = z.infer<typeof detectSchema>;
export type PrivacyConfig = AgentConfig['privacy'];
