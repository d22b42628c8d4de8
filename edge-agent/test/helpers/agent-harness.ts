import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { TrackPhase, type DetectionEvent } from '@vigil/proto';
import { registry } from '@vigil/testkit';
import { openOutbox } from '../../src/buffer/index.js';
import { parseAgentConfig, startAgent, type Agent, type AgentDeps } from '../../src/index.js';

export interface CollectedEvent {
  camera: string;
  event: DetectionEvent;
  snapshot: Buffer | undefined;
  /**
   * Seconds since the first frame of this camera, by the wall clock (the clip's timeline when streaming a file
   * from its start on an idle machine; a loaded one delivers frames late, by seconds).
   */
  t: number;
  /**
   * Seconds of stream decoded when the event was emitted: frames decoded / the camera's fps. The clip's own
   * timeline (ffmpeg's fps filter emits one frame per 1/fps of stream time however late it runs), ahead of the
   * analysed frame by one frame (it counts itself) plus those decoded while it was analysed.
   */
  streamT: number;
}

export const phaseName: Record<number, string> = {
  [TrackPhase.TRACK_PHASE_START]: 'start',
  [TrackPhase.TRACK_PHASE_ZONE_ENTER]: 'zone_enter',
  [TrackPhase.TRACK_PHASE_ZONE_EXIT]: 'zone_exit',
  [TrackPhase.TRACK_PHASE_END]: 'end',
};

/** Durable events in an agent's outbox file (reopened after the agent stopped). */
export function outboxDepth(dataDir: string): number {
  const outbox = openOutbox(join(dataDir, 'outbox.db'));
  try {
    return outbox.stats().depth;
  } finally {
    outbox.close();
  }
}

/** Starts a real agent (no NATS) with a temp data dir; collects every durable event with its clip time. */
export async function runAgent(
  config: Record<string, unknown>,
  deps: Pick<AgentDeps, 'tracer' | 'logger'> = {},
): Promise<{
  agent: Agent;
  events: CollectedEvent[];
  firstFrameAt: Map<string, number>;
  dataDir: string;
  dispose: () => Promise<void>;
}> {
  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-agent-'));
  const events: CollectedEvent[] = [];
  const firstFrameAt = new Map<string, number>();
  const parsed = parseAgentConfig({
    device: { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' },
    dataDir,
    http: { port: 0 },
    log: { level: 'warn' },
    ...config,
  });
  let stopped = false;
  const started = await startAgent(parsed, {
    ...deps,
    logger: deps.logger ?? pino({ level: 'warn' }),
    onSpawn: (c) => registry.track(c, 'ffmpeg'),
    onEvent: (camera, event, snapshot) => {
      const t0 =
        firstFrameAt.get(camera) ??
        started
          .cameraStatus()
          .find((c) => c.cameraId === camera)
          ?.firstFrameAt?.getTime() ??
        Date.now();
      const decoded = started.cameraStatus().find((c) => c.cameraId === camera)?.framesDecoded ?? 0;
      const fps = parsed.cameras.find((c) => c.id === camera)?.fps ?? NaN;
      events.push({
        camera,
        event,
        snapshot,
        t: ((event.occurredAt?.getTime() ?? 0) - t0) / 1000,
        streamT: decoded / fps,
      });
    },
  });
  const agent = {
    ...started,
    stop: async () => {
      stopped = true;
      await started.stop();
    },
  };
  // The first decoded frame anchors each camera's clip timeline.
  const poll = setInterval(() => {
    for (const c of agent.cameraStatus())
      if (!firstFrameAt.has(c.cameraId) && c.firstFrameAt)
        firstFrameAt.set(c.cameraId, c.firstFrameAt.getTime());
  }, 20);
  return {
    agent,
    events,
    firstFrameAt,
    dataDir,
    dispose: async () => {
      clearInterval(poll);
      if (!stopped) await agent.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function summarize(events: CollectedEvent[]): string {
  return events
    .map(
      (e) =>
        `${e.t.toFixed(1)}s ${phaseName[e.event.phase] ?? e.event.phase} ${e.event.label} ${e.event.trackId.slice(-6)} ${e.event.triggerZone}`,
    )
    .join('\n');
}
