/**
 * DeviceConfig (the cloud's document) -> the parts of the agent's runtime config it governs. The local JSON
 * config stays the bootstrap (dataDir, http, nats, identity, log, uplink); a remote config replaces cameras
 * (with their privacy masks), models and privacy (with the redaction mode), and the buffer limits, the edge
 * media retention and the snapshot switch when it sets them. The result is validated
 * with the agent's own schema, so a remote config can never make the agent run something its local config
 * could not.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DeviceConfig, Polygon } from '@vigil/proto';
import { agentConfigSchema, type AgentConfig } from '../config/schema.js';

/** Where a model of that hash lives locally (models OTA writes it there). */
export function modelFilePath(dataDir: string, sha256: string): string {
  return join(dataDir, 'models', sha256);
}

export class ConfigInvalidError extends Error {
  override readonly name = 'ConfigInvalidError';
}

const pts = (p: Polygon | undefined): Array<[number, number]> => (p?.points ?? []).map((q) => [q.x, q.y]);

function sourceUrl(url: string): string {
  return url.startsWith('file://') ? fileURLToPath(url) : url;
}

/** The raw (schema input) shape of the governed parts. */
function rawParts(body: DeviceConfig, base: Readonly<AgentConfig>): Record<string, unknown> {
  const cameras = body.cameras.map((c) => ({
    id: c.id,
    url: sourceUrl(c.url),
    enabled: c.enabled,
    ...(c.detectFps > 0 ? { fps: c.detectFps } : {}),
    ...(c.width > 0 ? { width: c.width } : {}),
    ...(c.height > 0 ? { height: c.height } : {}),
    privacyMasks: c.privacyMasks.map(pts),
    ...(c.modelName
      ? {
          detect: {
            model: c.modelName,
            ...(c.labels.length > 0 ? { labels: c.labels } : {}),
            ...(c.defaultThreshold > 0 ? { defaultThreshold: c.defaultThreshold } : {}),
            thresholds: c.classThresholds,
            masks: c.masks.map(pts),
            zones: c.zones.map((z) => ({ id: z.id, polygon: pts(z.polygon) })),
          },
        }
      : {}),
  }));
  const models = body.models.map((m) => ({
    name: m.name,
    type: m.type,
    path: modelFilePath(base.dataDir, m.sha256),
    sha256: m.sha256,
    ...(m.classNames.length > 0 ? { classNames: m.classNames } : {}),
    ...(m.inputWidth > 0 ? { inputWidth: m.inputWidth } : {}),
    ...(m.inputHeight > 0 ? { inputHeight: m.inputHeight } : {}),
  }));
  return {
    cameras,
    models,
    ...(body.privacy
      ? {
          privacy: {
            redactFaces: body.privacy.redactFaces,
            ...(body.privacy.faceModelName ? { faceModel: body.privacy.faceModelName } : {}),
            ...(body.privacy.faceThreshold > 0 ? { faceThreshold: body.privacy.faceThreshold } : {}),
            redaction: {
              // Unknown modes reach the schema and are refused there (never silently weakened).
              mode: body.privacy.redactionMode || 'fill',
              ...(body.privacy.redactionBlocks > 0 ? { blocks: body.privacy.redactionBlocks } : {}),
              ...(body.privacy.redactionNoise > 0 ? { noise: body.privacy.redactionNoise } : {}),
            },
          },
        }
      : {}),
  };
}

/**
 * The runtime config the agent runs with `body` applied over the bootstrap `base`; throws ConfigInvalidError
 * naming the first invalid field (as `cameras.1.detect.defaultThreshold: ...`).
 */
export function applyDeviceConfig(base: Readonly<AgentConfig>, body: DeviceConfig): AgentConfig {
  const parsed = agentConfigSchema.safeParse(rawParts(body, base));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigInvalidError(
      `invalid config: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : parsed.error.message}`,
    );
  }
  const p = parsed.data;
  const next: AgentConfig = {
    ...base,
    cameras: p.cameras,
    models: p.models,
    privacy: body.privacy ? p.privacy : base.privacy,
    snapshots: body.privacy?.disableSnapshots ? { ...base.snapshots, enabled: false } : base.snapshots,
    buffer: { ...base.buffer },
    retention: { ...base.retention },
  };
  const r = body.retention;
  if (r) {
    if (r.edgeMediaMaxHours > 0) next.retention.mediaMaxHours = r.edgeMediaMaxHours;
    if (r.edgeMediaMaxBytes > 0n) next.retention.mediaMaxBytes = Number(r.edgeMediaMaxBytes);
  }
  const b = body.buffer;
  if (b) {
    if (b.maxBytes > 0n) next.buffer.maxBytes = Number(b.maxBytes);
    if (b.maxEvents > 0n) next.buffer.maxEvents = Number(b.maxEvents);
    if (b.ttlSeconds > 0) next.buffer.ttlHours = b.ttlSeconds / 3600;
  }
  // Cross-field checks of the whole (duplicate camera ids, buffer bounds) by the same schema.
  const whole = agentConfigSchema.safeParse({
    cameras: next.cameras.map((c) => ({ id: c.id, url: c.url })),
    buffer: {
      maxBytes: next.buffer.maxBytes,
      maxEvents: next.buffer.maxEvents,
      ttlHours: next.buffer.ttlHours,
    },
    retention: next.retention,
  });
  if (!whole.success) {
    const issue = whole.error.issues[0];
    throw new ConfigInvalidError(`invalid config: ${issue?.path.join('.')}: ${issue?.message}`);
  }
  for (const c of next.cameras)
    if (c.detect && !next.models.some((m) => m.name === c.detect?.model))
      throw new ConfigInvalidError(
        `invalid config: cameras.${c.id}.detect.model: no model "${c.detect.model}"`,
      );
  if (
    next.privacy.redactFaces &&
    next.privacy.faceModel &&
    !next.models.some((m) => m.name === next.privacy.faceModel)
  )
    throw new ConfigInvalidError(`invalid config: privacy.faceModel: no model "${next.privacy.faceModel}"`);
  return next;
}
