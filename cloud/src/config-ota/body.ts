import {
  CHANNEL_RE,
  DeviceConfig,
  SEMVER_RE,
  type CameraConfig,
  type ModelSpec,
  type Polygon,
} from '@vigil/proto';
import { z } from 'zod';

/*
 * ConfigBody: the JSON form (camelCase, as the protobuf JSON mapping names the fields) of DeviceConfig's body
 * (cameras, models, buffer, retention, privacy, attributes). The same zod schema validates API input and is
 * what the OpenAPI document shows. Unknown keys are refused everywhere. Every field is optional, because a
 * document at one scope (tenant, site, device) sets only what it overrides (config-ota/merge.ts).
 */

const subjectToken = z.string().regex(/^[A-Za-z0-9_-]{1,63}$/, 'must be 1-63 letters, digits, "-" or "_"');
const uint32 = z.number().int().min(0).max(4_294_967_295);
const uint64 = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const unit = z.number().min(0).max(1);
const point = z.strictObject({ x: unit, y: unit });
const polygon = z.strictObject({ points: z.array(point).min(3).max(100) });
const label = z.string().min(1).max(100);

const zone = z.strictObject({
  id: subjectToken,
  name: z.string().max(200).optional(),
  polygon,
});

const camera = z
  .strictObject({
    id: subjectToken,
    url: z.string().min(1).max(2048),
    enabled: z.boolean().optional(),
    detectFps: z.number().min(0).max(120).optional(),
    width: uint32.optional(),
    height: uint32.optional(),
    modelName: z.string().max(100).optional(),
    zones: z.array(zone).max(64).optional(),
    classThresholds: z.record(label, unit).optional(),
    defaultThreshold: unit.optional(),
    masks: z.array(polygon).max(64).optional(),
    labels: z.array(label).max(1000).optional(),
    /** Painted black in every stored image of this camera at the edge (independent of `masks`). */
    privacyMasks: z.array(polygon).max(32).optional(),
  })
  .refine((c) => unique((c.zones ?? []).map((zn) => zn.id)), {
    message: 'zone ids must be unique per camera',
    path: ['zones'],
  });

const model = z.strictObject({
  name: z.string().min(1).max(100),
  type: z.string().min(1).max(50),
  uri: z.string().max(2048).optional(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase hex SHA-256'),
  version: z.string().max(100).optional(),
  classNames: z.array(z.string().max(100)).max(10_000).optional(),
  inputWidth: uint32.optional(),
  inputHeight: uint32.optional(),
});

export const configBodySchema = z
  .strictObject({
    cameras: z.array(camera).max(256).optional(),
    models: z.array(model).max(64).optional(),
    buffer: z
      .strictObject({
        maxBytes: uint64.optional(),
        maxEvents: uint64.optional(),
        ttlSeconds: uint32.optional(),
        inlineSnapshotMaxBytes: uint32.optional(),
      })
      .optional(),
    retention: z
      .strictObject({
        eventDays: uint32.optional(),
        mediaDays: uint32.optional(),
        localMediaHours: uint32.optional(),
        edgeMediaMaxHours: z
          .number()
          .int()
          .min(1)
          .max(24 * 90)
          .optional(),
        edgeMediaMaxBytes: z.number().int().min(100_000).max(Number.MAX_SAFE_INTEGER).optional(),
      })
      .optional(),
    privacy: z
      .strictObject({
        redactFaces: z.boolean().optional(),
        faceModelName: z.string().max(100).optional(),
        disableSnapshots: z.boolean().optional(),
        redactionMode: z.enum(['fill', 'blocks']).optional(),
        redactionBlocks: z.number().int().min(1).max(3).optional(),
        redactionNoise: z.number().int().min(16).max(128).optional(),
        faceThreshold: z.number().min(0.05).max(1).optional(),
      })
      .optional(),
    attributes: z.record(z.string().min(1).max(100), z.string().max(1000)).optional(),
    /** The desired agent release (issue 14 point 4): an agent-version rollout sets it (rollouts/agent.ts). */
    agent: z
      .strictObject({
        version: z.string().regex(SEMVER_RE, 'must be a semantic version such as 1.4.0'),
        channel: z.string().regex(CHANNEL_RE, 'must be lowercase letters, digits or "-" (e.g. stable)'),
        rolloutId: z.string().max(64).optional(),
      })
      .optional(),
  })
  .refine((b) => unique((b.cameras ?? []).map((c) => c.id)), {
    message: 'camera ids must be unique',
    path: ['cameras'],
  })
  .refine((b) => unique((b.models ?? []).map((m) => m.name)), {
    message: 'model names must be unique',
    path: ['models'],
  })
  .meta({
    id: 'ConfigBody',
    description:
      'The body of a device configuration (DeviceConfig in proto/vigil/v1/config.proto, camelCase). At a ' +
      'scope, only what that scope overrides: objects merge key by key, cameras and models are replaced whole.',
  });

export type ConfigBody = z.output<typeof configBodySchema>;

function unique(values: readonly string[]): boolean {
  return new Set(values).size === values.length;
}

/**
 * Checks that an effective body (after inheritance) is complete enough to send: cameras name models that it
 * declares. Returns the problems (empty when fine).
 */
export function effectiveBodyProblems(body: ConfigBody): string[] {
  const models = new Set((body.models ?? []).map((m) => m.name));
  const out: string[] = [];
  for (const c of body.cameras ?? [])
    if (c.modelName && !models.has(c.modelName))
      out.push(`camera ${c.id} uses model "${c.modelName}", which models does not declare`);
  const face = body.privacy?.faceModelName;
  if (face && !models.has(face)) out.push(`privacy.faceModelName "${face}" is not in models`);
  return out;
}

export interface ConfigHeader {
  version: bigint;
  tenantId: string;
  deviceId: string;
  issuedAt: Date;
  expiresAt: Date;
}

const toPolygon = (p: { points: Array<{ x: number; y: number }> }): Polygon => ({
  points: p.points.map((pt) => ({ x: pt.x, y: pt.y })),
});

/** The DeviceConfig message of a header and an (effective) body. */
export function toDeviceConfig(header: ConfigHeader, body: ConfigBody): DeviceConfig {
  const cameras: CameraConfig[] = (body.cameras ?? []).map((c) => ({
    id: c.id,
    url: c.url,
    enabled: c.enabled ?? true,
    detectFps: c.detectFps ?? 0,
    width: c.width ?? 0,
    height: c.height ?? 0,
    modelName: c.modelName ?? '',
    zones: (c.zones ?? []).map((zn) => ({ id: zn.id, name: zn.name ?? '', polygon: toPolygon(zn.polygon) })),
    classThresholds: { ...(c.classThresholds ?? {}) },
    defaultThreshold: c.defaultThreshold ?? 0,
    masks: (c.masks ?? []).map(toPolygon),
    labels: [...(c.labels ?? [])],
    privacyMasks: (c.privacyMasks ?? []).map(toPolygon),
  }));
  const models: ModelSpec[] = (body.models ?? []).map((m) => ({
    name: m.name,
    type: m.type,
    uri: m.uri ?? '',
    sha256: m.sha256,
    version: m.version ?? '',
    classNames: [...(m.classNames ?? [])],
    inputWidth: m.inputWidth ?? 0,
    inputHeight: m.inputHeight ?? 0,
  }));
  return DeviceConfig.fromPartial({
    version: header.version,
    tenantId: header.tenantId,
    deviceId: header.deviceId,
    issuedAt: header.issuedAt,
    expiresAt: header.expiresAt,
    cameras,
    models,
    buffer: body.buffer && {
      maxBytes: BigInt(body.buffer.maxBytes ?? 0),
      maxEvents: BigInt(body.buffer.maxEvents ?? 0),
      ttlSeconds: body.buffer.ttlSeconds ?? 0,
      inlineSnapshotMaxBytes: body.buffer.inlineSnapshotMaxBytes ?? 0,
    },
    retention: body.retention && {
      eventDays: body.retention.eventDays ?? 0,
      mediaDays: body.retention.mediaDays ?? 0,
      localMediaHours: body.retention.localMediaHours ?? 0,
      edgeMediaMaxHours: body.retention.edgeMediaMaxHours ?? 0,
      edgeMediaMaxBytes: BigInt(body.retention.edgeMediaMaxBytes ?? 0),
    },
    privacy: body.privacy && {
      redactFaces: body.privacy.redactFaces ?? false,
      faceModelName: body.privacy.faceModelName ?? '',
      disableSnapshots: body.privacy.disableSnapshots ?? false,
      redactionMode: body.privacy.redactionMode ?? '',
      redactionBlocks: body.privacy.redactionBlocks ?? 0,
      redactionNoise: body.privacy.redactionNoise ?? 0,
      faceThreshold: body.privacy.faceThreshold ?? 0,
    },
    attributes: { ...(body.attributes ?? {}) },
    agent: body.agent && {
      version: body.agent.version,
      channel: body.agent.channel,
      rolloutId: body.agent.rolloutId ?? '',
    },
  });
}
