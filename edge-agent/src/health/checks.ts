/**
 * The named checks of the agent's /healthz (`checks`), pure: what vigil-updater's health gate requires of a
 * new release before it commits it (uplink connected, cameras streaming, models inferring, outbox writable).
 * A feature that is off (no NATS, no cameras, no detection) passes with a detail saying so: the gate then
 * judges what the device is configured to do.
 */
export interface HealthCheck {
  ok: boolean;
  detail: string;
}

export type HealthChecks = Record<'uplink' | 'cameras' | 'models' | 'outbox', HealthCheck>;

export interface HealthCheckInput {
  /** The uplink's state, or 'disabled' (no NATS, or uplink.enabled false). */
  uplink: string;
  cameras: readonly {
    cameraId: string;
    state: string;
    lastError?: string | undefined;
    /** Detection on this camera: frames inferred so far, and why detection cannot run. */
    detects: boolean;
    framesProcessed: number;
    detectError?: string | undefined;
  }[];
  modelFailures: readonly { name: string; error: string }[];
  outbox: HealthCheck;
}

export function healthChecks(i: HealthCheckInput): HealthChecks {
  const uplink: HealthCheck =
    i.uplink === 'disabled'
      ? { ok: true, detail: 'disabled (no NATS configured)' }
      : { ok: i.uplink === 'online', detail: `uplink ${i.uplink}` };

  const notStreaming = i.cameras.filter((c) => c.state !== 'streaming' && c.state !== 'ended');
  const cameras: HealthCheck =
    i.cameras.length === 0
      ? { ok: true, detail: 'no cameras configured' }
      : notStreaming.length === 0
        ? { ok: true, detail: `${i.cameras.length} streaming` }
        : {
            ok: false,
            detail: notStreaming
              .map((c) => `${c.cameraId} ${c.state}${c.lastError ? ` (${c.lastError})` : ''}`)
              .join('; '),
          };

  const detecting = i.cameras.filter((c) => c.detects);
  const broken = detecting.filter((c) => c.detectError !== undefined);
  const idle = detecting.filter((c) => c.detectError === undefined && c.framesProcessed === 0);
  const models: HealthCheck =
    i.modelFailures.length > 0
      ? {
          ok: false,
          detail: i.modelFailures.map((f) => `model ${f.name} failed: ${f.error}`).join('; '),
        }
      : broken.length > 0
        ? { ok: false, detail: broken.map((c) => `${c.cameraId}: ${c.detectError}`).join('; ') }
        : idle.length > 0
          ? { ok: false, detail: `no inference yet on ${idle.map((c) => c.cameraId).join(', ')}` }
          : {
              ok: true,
              detail: detecting.length === 0 ? 'no detection configured' : `${detecting.length} inferring`,
            };

  return { uplink, cameras, models, outbox: i.outbox };
}
