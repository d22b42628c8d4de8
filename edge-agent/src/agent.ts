import type { ChildProcess } from 'node:child_process';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino, type Logger } from 'pino';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { AgentConfig } from './config/schema.js';
import { startHealthServer } from './health/http.js';
import { LatestSlot } from './ingest/latest-slot.js';
import {
  CameraSupervisor,
  type CameraState,
  type CameraStatusSnapshot,
  type Frame,
} from './ingest/supervisor.js';
import { HeartbeatPublisher } from './uplink/heartbeat.js';

export const AGENT_VERSION = '0.1.0';
const STATES: CameraState[] = ['connecting', 'streaming', 'stalled', 'backing_off', 'stopped'];

export interface AgentDeps {
  logger?: Logger;
  now?: () => Date;
  onSpawn?: (child: ChildProcess) => void;
}

export interface Agent {
  readonly httpPort: number;
  readonly nc: NatsConnection | undefined;
  cameraStatus(): Array<CameraStatusSnapshot & { framesDropped: number; fps: number }>;
  stop(): Promise<void>;
}

interface CameraRuntime {
  supervisor: CameraSupervisor;
  slot: LatestSlot<Frame>;
  fpsWindow: { at: number; frames: number; fps: number };
}

/** Composition root of the edge agent: cameras -> latest-frame slots; heartbeats; health and metrics. */
export async function startAgent(config: Readonly<AgentConfig>, deps: AgentDeps = {}): Promise<Agent> {
  const log = deps.logger ?? pino({ name: 'vigil-agent', level: config.log.level });
  const now = deps.now ?? (() => new Date());
  const startedAt = now();
  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics, prefix: 'vigil_agent_' });
  const framesDecoded = new Counter({
    name: 'vigil_agent_frames_decoded_total',
    help: 'Frames decoded by ffmpeg',
    labelNames: ['camera'],
    registers: [metrics],
  });
  const framesDropped = new Gauge({
    name: 'vigil_agent_frames_dropped_total',
    help: 'Frames replaced in the latest-frame slot before detection took them',
    labelNames: ['camera'],
    registers: [metrics],
  });
  const cameraState = new Gauge({
    name: 'vigil_agent_camera_state',
    help: "1 for the camera's current state",
    labelNames: ['camera', 'state'],
    registers: [metrics],
  });
  const restarts = new Counter({
    name: 'vigil_agent_camera_restarts_total',
    help: 'ffmpeg respawns per camera',
    labelNames: ['camera'],
    registers: [metrics],
  });

  const cameras = new Map<string, CameraRuntime>();
  for (const cam of config.cameras.filter((c) => c.enabled)) {
    const slot = new LatestSlot<Frame>();
    const runtime: CameraRuntime = {
      slot,
      fpsWindow: { at: Date.now(), frames: 0, fps: 0 },
      supervisor: new CameraSupervisor({
        source: cam,
        now,
        onSpawn: deps.onSpawn,
        onFrame: (frame) => {
          framesDecoded.inc({ camera: cam.id });
          runtime.fpsWindow.frames++;
          slot.offer(frame);
          framesDropped.set({ camera: cam.id }, slot.dropped);
        },
        onState: (state, status) => {
          for (const s of STATES) cameraState.set({ camera: cam.id, state: s }, s === state ? 1 : 0);
          if (state === 'backing_off') restarts.inc({ camera: cam.id });
          const level = state === 'stalled' || state === 'backing_off' ? 'warn' : 'info';
          log[level](
            { camera: cam.id, state, lastError: status.lastError, gapMs: status.lastGapMs || undefined },
            `camera ${state}`,
          );
        },
      }),
    };
    cameras.set(cam.id, runtime);
  }

  // Until detection lands, a consumer takes the latest frame at the detection rate (frames it skips are drops).
  const consumer = setInterval(() => {
    for (const c of cameras.values()) c.slot.take();
  }, 50);
  consumer.unref();

  const statuses = () =>
    [...cameras.values()].map((c) => {
      const w = c.fpsWindow;
      const elapsed = (Date.now() - w.at) / 1000;
      if (elapsed >= 5) {
        w.fps = w.frames / elapsed;
        w.frames = 0;
        w.at = Date.now();
      }
      return { ...c.supervisor.status, framesDropped: c.slot.dropped, fps: w.fps };
    });

  let nc: NatsConnection | undefined;
  let heartbeats: HeartbeatPublisher | undefined;
  if (config.nats) {
    // Offline first: the agent runs without the cloud; NATS reconnects forever in the background.
    nc = await connect({
      servers: [...config.nats.servers],
      name: `vigil-agent/${config.device.deviceId}`,
      tls: { ...config.nats.tls },
      maxReconnectAttempts: -1,
      waitOnFirstConnect: true,
    });
    heartbeats = new HeartbeatPublisher(
      nc,
      { ...config.device, agentVersion: AGENT_VERSION, startedAt, cameras: statuses },
      config.heartbeatSeconds * 1000,
      now,
    );
    heartbeats.start();
    log.info({ server: nc.getServer() }, 'connected to NATS');
  }

  const { server, port } = await startHealthServer(config.http.host, config.http.port, metrics, () => {
    const cams = statuses();
    return {
      ok: cams.every((c) => c.state !== 'stopped'),
      version: AGENT_VERSION,
      cameras: cams,
      nats: nc ? !nc.isClosed() : 'disabled',
    };
  });
  for (const c of cameras.values()) c.supervisor.start();
  log.info(
    { cameras: [...cameras.keys()], health: `http://${config.http.host}:${port}/healthz` },
    'agent started',
  );

  return {
    httpPort: port,
    nc,
    cameraStatus: () => statuses(),
    stop: async () => {
      clearInterval(consumer);
      heartbeats?.stop();
      await Promise.all([...cameras.values()].map((c) => c.supervisor.stop()));
      await nc?.drain().catch(() => undefined);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
