import {
  context,
  ProxyTracerProvider,
  SpanStatusCode,
  trace,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import type { Logger } from 'pino';
import { DetectionEvent, subjectFor } from '@vigil/proto';
import type { Outbox } from '../buffer/index.js';
import type { CameraConfig } from '../config/schema.js';
import { compileFilter, type Detection, type LoadedModel } from '../detect/index.js';
import type { Frame } from '../ingest/supervisor.js';
import { injectTraceHeaders } from '../lib/tracing.js';
import { LatestSlot } from '../ingest/latest-slot.js';
import { privatizeFrame, type SnapshotPrivacy } from '../media/privacy.js';
import { encodeSnapshot, SnapshotTooLargeError } from '../media/snapshot.js';
import { Tracker, type TrackEvent } from '../track/index.js';
import { buildDetectionEvent, priorityOf, type SnapshotRef } from './events.js';
import { IntervalStats } from './interval-stats.js';
import type { AgentMetrics } from './metrics.js';
import { MotionGate } from './motion-gate.js';
import { TrackLog } from './track-log.js';

export interface CameraPipelineDeps {
  camera: Readonly<CameraConfig> & { detect: NonNullable<CameraConfig['detect']> };
  device: { tenantId: string; siteId: string; deviceId: string };
  model: LoadedModel;
  /** Face redaction (when `faceModel` is set) and privacy masks, applied to every snapshot before encoding. */
  privacy: SnapshotPrivacy;
  snapshots: { enabled: boolean; maxBytes: number; quality: number; drawBoxes: boolean };
  outbox: Outbox;
  newId: () => string;
  metrics: AgentMetrics;
  log: Logger;
  /** Makes the `vigil.event` span whose context the event carries (default: no-op, no trace in events). */
  tracer?: Tracer;
  /** Observes every event after it is durably in the outbox (tests, realtime hooks). */
  onEvent?: (event: DetectionEvent, media: Buffer | undefined) => void;
}

/**
 * One camera's analysis loop: take the latest frame, detect, filter, track, and turn track events into
 * durable outbox entries (with a size-bounded, optionally redacted snapshot). Runs at the speed of the model;
 * frames that arrive meanwhile replace each other in the slot and are counted as dropped.
 */
export class CameraPipeline {
  readonly slot = new LatestSlot<Frame>();
  private readonly tracker: Tracker<Frame>;
  private readonly filter: (d: readonly Detection[]) => Detection[];
  private readonly subject: string;
  private readonly tracer: Tracer;
  private readonly trackLog: TrackLog;
  private readonly gate: MotionGate | undefined;
  private loop: Promise<void> | undefined;
  private stopped = false;
  processed = 0;
  /** Frames the motion gate let through to the detector, and the ones it skipped. */
  detected = 0;
  skipped = 0;
  /** Inference latencies and events since the last heartbeat (drained by it). */
  readonly interval = new IntervalStats(Date.now());

  constructor(private readonly deps: CameraPipelineDeps) {
    const d = deps.camera.detect;
    this.tracker = new Tracker<Frame>({
      minHits: d.tracker.minHits,
      maxAgeMs: d.tracker.maxAgeMs,
      iouThreshold: d.tracker.iouThreshold,
      zones: d.zones,
      // Track ids must stay unique across agent restarts: they key tracks in the cloud.
      idGenerator: () => `trk-${deps.newId()}`,
      // Each remembered parked object keeps one frame: bound what that costs per camera.
      stationaryMemorySize: 16,
    });
    this.filter = compileFilter({
      labels: d.labels,
      thresholds: d.thresholds,
      defaultThreshold: d.defaultThreshold,
      masks: d.masks,
    });
    const { enabled, ...gate } = d.motion;
    this.gate = enabled ? new MotionGate(gate) : undefined;
    this.subject = subjectFor(deps.device.tenantId, deps.device.deviceId, 'evt', deps.camera.id);
    // Without a tracer: no-op spans (a provider with no delegate), so events carry no trace context.
    this.tracer = deps.tracer ?? new ProxyTracerProvider().getTracer('vigil-agent');
    this.trackLog = new TrackLog(deps.log, deps.camera.id, {
      now: () => Date.now(),
      onSuppressed: (n) => deps.metrics.trackLinesSuppressed.inc({ camera: deps.camera.id }, n),
    });
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops the loop, ends every open track (their 'end' events are stored) and waits for the last write. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.slot.close();
    await this.loop;
    for (const ev of this.tracker.flush(Date.now())) await this.emit(ev);
    this.trackLog.flush();
  }

  private async run(): Promise<void> {
    const cam = this.deps.camera.id;
    let lastDropped = 0;
    while (!this.stopped) {
      const frame = await this.slot.next();
      if (!frame) break;
      if (this.slot.dropped > lastDropped) {
        this.deps.metrics.framesDropped.inc({ camera: cam }, this.slot.dropped - lastDropped);
        lastDropped = this.slot.dropped;
      }
      try {
        await this.process(frame);
      } catch (err) {
        const code = (err as { code?: string }).code ?? 'ERROR';
        this.deps.metrics.detectErrors.inc({ camera: cam, code });
        if (code !== 'MODEL_BUSY') this.deps.log.error({ err, camera: cam }, 'frame analysis failed');
      }
    }
  }

  /** Analyses one frame; exposed for tests and benchmarks that feed frames directly. */
  async process(frame: Frame): Promise<TrackEvent<Frame>[]> {
    const { model, metrics, camera } = this.deps;
    if (this.gate) {
      const live = this.tracker.stats();
      const g = this.gate.decide(frame, frame.capturedAt.getTime(), live.confirmed + live.tentative);
      metrics.detectGate.inc({ camera: camera.id, decision: g.run ? 'run' : 'skip', reason: g.reason });
      if (!g.run) {
        // A still scene without tracks: nothing for the detector or the tracker to change.
        this.skipped++;
        this.countFrame();
        this.observeLatency(frame);
        return [];
      }
    }
    this.detected++;
    const result = await model.detect(frame, {
      scoreThreshold: Math.min(camera.detect.defaultThreshold, ...Object.values(camera.detect.thresholds)),
      nmsIou: camera.detect.nmsIou,
    });
    metrics.inferenceSeconds.observe({ model: model.spec.name }, result.inferenceMs / 1000);
    // Detect latency as the heartbeat reports it: preprocess + model run + decode (no queue wait).
    this.interval.recordInference(result.preprocessMs + result.inferenceMs + result.decodeMs);
    const events = this.tracker.update(this.filter(result.detections), frame.capturedAt.getTime(), frame);
    this.countFrame();
    for (const ev of events) await this.emit(ev);
    this.observeLatency(frame);
    return events;
  }

  private countFrame(): void {
    this.processed++;
    this.deps.metrics.framesProcessed.inc({ camera: this.deps.camera.id });
    this.trackLog.tick();
  }

  private observeLatency(frame: Frame): void {
    this.deps.metrics.frameLatencySeconds.observe(
      { camera: this.deps.camera.id },
      (Date.now() - frame.capturedAt.getTime()) / 1000,
    );
  }

  /**
   * One `vigil.event` span per event, from its creation until it is durable in the outbox: the root of the
   * event's trace (the uplink's publish and the cloud's ingest are its descendants). Active meanwhile, so the
   * pipeline's log lines about this event carry its ids.
   */
  private async emit(ev: TrackEvent<Frame>): Promise<void> {
    const id = this.deps.newId();
    const span = this.tracer.startSpan('vigil.event', {
      root: true,
      attributes: {
        'vigil.event.id': id,
        'vigil.camera.id': this.deps.camera.id,
        'vigil.event.label': ev.label,
        'vigil.event.phase': ev.kind,
      },
    });
    const ctx = trace.setSpan(context.active(), span);
    try {
      await context.with(ctx, () => this.emitIn(id, ev, span, injectTraceHeaders(ctx)));
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  }

  private async emitIn(
    id: string,
    ev: TrackEvent<Frame>,
    span: Span,
    traceHeaders: { traceparent: string; tracestate: string } | undefined,
  ): Promise<void> {
    const { deps } = this;
    const media = ev.kind === 'start' || ev.kind === 'end' ? await this.snapshot(ev) : undefined;
    const event = buildDetectionEvent(
      id,
      ev,
      {
        ...deps.device,
        cameraId: deps.camera.id,
        model: { name: deps.model.spec.name, sha256: deps.model.sha256 },
      },
      media?.ref,
      traceHeaders,
    );
    const payload = DetectionEvent.encode(event).finish();
    const result = deps.outbox.append({
      id,
      priority: priorityOf(ev.kind).outbox,
      kind: 'event',
      subject: this.subject,
      payload,
      media: media ? { contentType: 'image/jpeg', data: media.data } : undefined,
    });
    deps.metrics.outboxAppends.inc({
      result: result.accepted ? (result.duplicate ? 'duplicate' : 'accepted') : result.reason,
    });
    deps.metrics.events.inc({ camera: deps.camera.id, kind: ev.kind });
    this.interval.recordEvent();
    // What the camera sees, at info (bounded per camera), buffered or not.
    this.trackLog.record(ev, id);
    if (!result.accepted) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: `not buffered: ${result.reason}` });
      deps.log.warn({ camera: deps.camera.id, kind: ev.kind, reason: result.reason }, 'event not buffered');
      return;
    }
    deps.onEvent?.(event, media?.data);
  }

  private async snapshot(ev: TrackEvent<Frame>): Promise<{ ref: SnapshotRef; data: Buffer } | undefined> {
    const { deps } = this;
    if (!deps.snapshots.enabled) return undefined;
    let img;
    let redacted;
    try {
      ({ img, redacted } = await privatizeFrame(ev.best.frame, deps.privacy));
    } catch (err) {
      // Fail closed: without a working face model no snapshot leaves the camera pipeline.
      deps.metrics.snapshots.inc({ result: 'redaction_failed' });
      deps.log.error(
        { err, camera: deps.camera.id },
        'face redaction failed: event stored without a snapshot',
      );
      return undefined;
    }
    try {
      const snap = await encodeSnapshot(img, {
        maxBytes: deps.snapshots.maxBytes,
        quality: deps.snapshots.quality,
        boxes: deps.snapshots.drawBoxes ? [{ box: ev.best.box, label: ev.label }] : undefined,
      });
      deps.metrics.snapshots.inc({ result: 'stored' });
      return {
        ref: { mediaId: deps.newId(), sha256: snap.sha256, sizeBytes: snap.data.length, redacted },
        data: snap.data,
      };
    } catch (err) {
      deps.metrics.snapshots.inc({ result: err instanceof SnapshotTooLargeError ? 'too_large' : 'error' });
      deps.log.warn({ err, camera: deps.camera.id }, 'snapshot not stored');
      return undefined;
    }
  }
}
