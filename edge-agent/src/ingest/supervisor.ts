import type { ChildProcess } from 'node:child_process';
import ffmpeg from 'fluent-ffmpeg';
import { backoffDelay, defaultBackoff, type BackoffPolicy } from '../lib/backoff.js';
import type { ScaledImage } from '../detect/types.js';
import { FrameAssembler } from './frame-assembler.js';
import {
  frameLayout,
  inputOptions,
  isNetworkSource,
  outputOptions,
  redactUrl,
  type CameraSource,
  type FrameLayout,
} from './ffmpeg-args.js';

/** `ended`: a file source with `loop: false` reached its end; final until the camera is restarted. */
export type CameraState = 'connecting' | 'streaming' | 'stalled' | 'backing_off' | 'stopped' | 'ended';

export interface Frame {
  cameraId: string;
  seq: number;
  capturedAt: Date;
  width: number;
  height: number;
  /** rgb24, width*height*3 bytes, owned by the receiver. */
  data: Buffer;
  /** The same picture at the camera model's content size, when the source asks ffmpeg for it. */
  scaled?: ScaledImage;
}

export interface CameraStatusSnapshot {
  cameraId: string;
  state: CameraState;
  framesDecoded: number;
  restarts: number;
  gaps: number;
  lastGapMs: number;
  lastFrameAt: Date | undefined;
  /** The first frame since start (anchors a file's timeline in tests). */
  firstFrameAt: Date | undefined;
  lastError: string | undefined;
}

export interface SupervisorOptions {
  source: CameraSource;
  onFrame: (frame: Frame) => void;
  onState?: (state: CameraState, status: CameraStatusSnapshot) => void;
  /** A stream that delivered frames and then went quiet this long is stalled: ffmpeg is killed. */
  stallTimeoutMs?: number;
  /** Time allowed from spawn to the first frame. */
  connectTimeoutMs?: number;
  /** Streaming this long without trouble resets the backoff. */
  stableAfterMs?: number;
  backoff?: BackoffPolicy;
  now?: () => Date;
  random?: () => number;
  ffmpegPath?: string;
  /** Receives every spawned ffmpeg (tests track them so nothing leaks). */
  onSpawn?: (child: ChildProcess) => void;
}

/**
 * Keeps one camera's ffmpeg alive: spawn, read frames, and on ANY exit (ffmpeg exits 0 when an RTSP
 * server dies) or stall, respawn after capped exponential backoff with jitter. Reports state changes
 * and the gap (time without frames) each time the stream comes back. The one exception: a file played once
 * (`loop: false`) whose ffmpeg exits cleanly has reached its end: state `ended`, no respawn. A file that
 * fails (missing, unreadable) is retried like a camera.
 */
export class CameraSupervisor {
  private state: CameraState = 'stopped';
  private command: ffmpeg.FfmpegCommand | undefined;
  private attempt = 0;
  private seq = 0;
  private framesDecoded = 0;
  private restarts = 0;
  private gaps = 0;
  private lastGapMs = 0;
  private lastFrameAt: Date | undefined;
  private firstFrameAt: Date | undefined;
  private gapStartedAt: Date | undefined;
  private streamingSince: Date | undefined;
  private lastError: string | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly stderrTail: string[] = [];
  private readonly now: () => Date;

  constructor(private readonly opts: SupervisorOptions) {
    this.now = opts.now ?? (() => new Date());
  }

  get status(): CameraStatusSnapshot {
    return {
      cameraId: this.opts.source.id,
      state: this.state,
      framesDecoded: this.framesDecoded,
      restarts: this.restarts,
      gaps: this.gaps,
      lastGapMs: this.lastGapMs,
      lastFrameAt: this.lastFrameAt,
      firstFrameAt: this.firstFrameAt,
      lastError: this.lastError,
    };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.spawn();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.retryTimer);
    clearTimeout(this.watchdog);
    const cmd = this.command;
    this.command = undefined;
    if (cmd) {
      const proc = (cmd as unknown as { ffmpegProc?: ChildProcess }).ffmpegProc;
      const exited =
        proc && proc.exitCode === null ? new Promise((r) => proc.once('exit', r)) : Promise.resolve();
      cmd.kill('SIGKILL');
      await exited;
    }
    this.setState('stopped');
  }

  private spawn(): void {
    const src = this.opts.source;
    const layout = frameLayout(src);
    const assembler = new FrameAssembler(layout.frameBytes);
    this.setState('connecting');
    this.armWatchdog(this.opts.connectTimeoutMs ?? Math.max(10_000, src.ioTimeoutMs + 2_000));
    const cmd = ffmpeg({ source: src.url, stdoutLines: 0 })
      .inputOptions(inputOptions(src))
      .outputOptions(outputOptions(src));
    if (this.opts.ffmpegPath) cmd.setFfmpegPath(this.opts.ffmpegPath);
    this.command = cmd;
    cmd.on('start', () => {
      const proc = (cmd as unknown as { ffmpegProc?: ChildProcess }).ffmpegProc;
      if (proc) this.opts.onSpawn?.(proc);
    });
    cmd.on('stderr', (line: string) => {
      this.stderrTail.push(line);
      if (this.stderrTail.length > 20) this.stderrTail.shift();
    });
    const onExit = (err?: Error): void => {
      if (this.command !== cmd) return; // an old process we already replaced or stopped
      this.command = undefined;
      if (!err && !src.loop && !isNetworkSource(src.url)) {
        // End of a file played once: final. (RTSP: ffmpeg exits 0 when a camera drops, so never this.)
        clearTimeout(this.watchdog);
        this.lastError = undefined;
        this.setState('ended');
        return;
      }
      this.lastError = err ? lastLine(err.message, this.stderrTail) : 'stream ended';
      this.scheduleRestart();
    };
    cmd.on('error', (err: Error) => onExit(err));
    cmd.on('end', () => onExit());
    const out = cmd.pipe();
    out.on('data', (chunk: Buffer) => {
      if (this.command !== cmd) return;
      assembler.push(chunk, (frame) => this.frame(frame, layout));
    });
  }

  private frame(raw: Buffer, layout: FrameLayout): void {
    const src = this.opts.source;
    const now = this.now();
    if (this.state !== 'streaming') {
      if (this.gapStartedAt) {
        this.gaps++;
        this.lastGapMs = now.getTime() - this.gapStartedAt.getTime();
        this.gapStartedAt = undefined;
      }
      this.streamingSince = now;
      this.setState('streaming');
    } else if (
      this.attempt > 0 &&
      this.streamingSince &&
      now.getTime() - this.streamingSince.getTime() >= (this.opts.stableAfterMs ?? 10_000)
    ) {
      this.attempt = 0;
    }
    this.framesDecoded++;
    this.lastFrameAt = now;
    this.firstFrameAt ??= now;
    this.armWatchdog(this.opts.stallTimeoutMs ?? Math.max(5_000, (3 * 1000) / src.fps));
    // The assembler's buffer is ours (its one copy out of the pipe); both parts are views of it.
    const own = raw;
    const s = layout.scaled;
    this.opts.onFrame({
      cameraId: src.id,
      seq: this.seq++,
      capturedAt: now,
      width: src.width,
      height: src.height,
      data: s ? own.subarray(0, layout.frameSize) : own,
      ...(s
        ? { scaled: { data: own.subarray(s.offset), width: s.width, height: s.height, stride: s.stride } }
        : {}),
    });
  }

  private armWatchdog(ms: number): void {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (!this.command) return;
      this.lastError =
        this.state === 'streaming' ? `no frame for ${ms} ms (stalled)` : `no first frame within ${ms} ms`;
      this.setState('stalled');
      const cmd = this.command;
      this.command = undefined;
      cmd.kill('SIGKILL');
      this.scheduleRestart();
    }, ms);
    this.watchdog.unref();
  }

  private scheduleRestart(): void {
    clearTimeout(this.watchdog);
    if (!this.running) return;
    if (!this.gapStartedAt) this.gapStartedAt = this.lastFrameAt ?? this.now();
    const delay = backoffDelay(this.attempt++, this.opts.backoff ?? defaultBackoff, this.opts.random);
    this.restarts++;
    this.setState('backing_off');
    this.retryTimer = setTimeout(() => {
      if (this.running) this.spawn();
    }, delay);
  }

  private setState(state: CameraState): void {
    if (state === this.state) return;
    this.state = state;
    this.opts.onState?.(state, this.status);
  }

  describe(): string {
    return `${this.opts.source.id} (${redactUrl(this.opts.source.url)})`;
  }
}

function lastLine(message: string, tail: string[]): string {
  const useful = tail.filter((l) => l.trim() && !l.startsWith('  ')).slice(-1)[0];
  return (useful ?? message).trim().slice(0, 300);
}
