import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Every metric the agent exports, built once per agent (no global registry). */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly framesDecoded: Counter<'camera'>;
  readonly framesDropped: Counter<'camera'>;
  readonly framesProcessed: Counter<'camera'>;
  readonly cameraState: Gauge<'camera' | 'state'>;
  readonly cameraRestarts: Counter<'camera'>;
  readonly inferenceSeconds: Histogram<'model'>;
  readonly frameLatencySeconds: Histogram<'camera'>;
  readonly detectErrors: Counter<'camera' | 'code'>;
  readonly detectGate: Counter<'camera' | 'decision' | 'reason'>;
  readonly events: Counter<'camera' | 'kind'>;
  readonly outboxAppends: Counter<'result'>;
  readonly snapshots: Counter<'result'>;
  readonly trackLinesSuppressed: Counter<'camera'>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'vigil_agent_' });
    this.framesDecoded = new Counter({
      name: 'vigil_agent_frames_decoded_total',
      help: 'Frames decoded by ffmpeg at the detection rate',
      labelNames: ['camera'],
      registers,
    });
    this.framesDropped = new Counter({
      name: 'vigil_agent_frames_dropped_total',
      help: 'Frames replaced in the latest-frame slot before detection took them',
      labelNames: ['camera'],
      registers,
    });
    this.framesProcessed = new Counter({
      name: 'vigil_agent_frames_processed_total',
      help: 'Frames analysed: detected and tracked, or skipped by the motion gate (vigil_agent_detect_gate_total)',
      labelNames: ['camera'],
      registers,
    });
    this.cameraState = new Gauge({
      name: 'vigil_agent_camera_state',
      help: "1 for the camera's current state",
      labelNames: ['camera', 'state'],
      registers,
    });
    this.cameraRestarts = new Counter({
      name: 'vigil_agent_camera_restarts_total',
      help: 'ffmpeg respawns per camera',
      labelNames: ['camera'],
      registers,
    });
    this.inferenceSeconds = new Histogram({
      name: 'vigil_agent_inference_seconds',
      help: 'onnxruntime inference time per frame',
      labelNames: ['model'],
      buckets: [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512],
      registers,
    });
    this.frameLatencySeconds = new Histogram({
      name: 'vigil_agent_frame_latency_seconds',
      help: 'From frame decoded to detection and tracking done (includes waiting for the model)',
      labelNames: ['camera'],
      buckets: [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2],
      registers,
    });
    this.detectErrors = new Counter({
      name: 'vigil_agent_detect_errors_total',
      help: 'Frames not analysed, by error code (MODEL_BUSY: the shared model queue was full)',
      labelNames: ['camera', 'code'],
      registers,
    });
    this.detectGate = new Counter({
      name: 'vigil_agent_detect_gate_total',
      help: 'Motion gate decisions per frame: decision run|skip, reason first|motion|tracks|periodic|still',
      labelNames: ['camera', 'decision', 'reason'],
      registers,
    });
    this.events = new Counter({
      name: 'vigil_agent_events_total',
      help: 'Events produced, by kind (start, zone_enter, zone_exit, end)',
      labelNames: ['camera', 'kind'],
      registers,
    });
    this.outboxAppends = new Counter({
      name: 'vigil_agent_outbox_appends_total',
      help: 'Outbox appends by result (accepted, duplicate, full, too_large, ...)',
      labelNames: ['result'],
      registers,
    });
    this.snapshots = new Counter({
      name: 'vigil_agent_snapshots_total',
      help: 'Snapshots by result (stored, too_large, redaction_failed, error)',
      labelNames: ['result'],
      registers,
    });
    this.trackLinesSuppressed = new Counter({
      name: 'vigil_agent_track_log_suppressed_total',
      help: 'Track start/end log lines left out by the per-camera line limit (counted in a summary line)',
      labelNames: ['camera'],
      registers,
    });
  }
}
