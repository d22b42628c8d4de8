import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface CameraSimMount {
  name: string;
  source:
    | { kind: 'pattern'; width?: number; height?: number; fps?: number; style?: string }
    | { kind: 'file'; path: string; loop?: boolean };
}

export interface CameraSimOptions {
  /** 0 or undefined: the server binds any free port itself (no pick-then-bind race); it is kept across restarts. */
  port?: number;
  mounts: CameraSimMount[];
  /** Default /usr/bin/python3: a pyenv/venv python on PATH has no `gi`. */
  python?: string;
  /** The test harness tracks children so nothing leaks. */
  onSpawn?: (child: ChildProcess) => void;
  startTimeoutMs?: number;
  /** Length of a looped file stream (the clip is remuxed N times). Default 3600. */
  loopSeconds?: number;
  /** One pipeline for all clients (clients join mid-stream). Default false: each client starts at frame 0. */
  shared?: boolean;
  log?: (line: string) => void;
}

export const DEFAULT_PYTHON = '/usr/bin/python3';
const SERVER_SCRIPT = fileURLToPath(new URL('../rtsp_server.py', import.meta.url));
const APT_HINT =
  'install with: sudo apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp ' +
  'gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad, ' +
  "and use the system /usr/bin/python3 (pyenv/venv pythons do not see Debian's gi)";
const STOP_GRACE_MS = 3000;
const MAX_LOG_LINES = 200;
const EXIT_ADDR_IN_USE = 98; // rtsp_server.py's exit code when bind fails

class AddrInUse extends Error {}

/** Fast check that the python can load GStreamer's RTSP server bindings. */
export function checkCameraSimPrerequisites(
  python: string = DEFAULT_PYTHON,
): { ok: true } | { ok: false; message: string } {
  const code = "import gi; gi.require_version('Gst','1.0'); gi.require_version('GstRtspServer','1.0')";
  const r = spawnSync(python, ['-c', code], { encoding: 'utf8', timeout: 10_000 });
  if (r.error) return { ok: false, message: `camera-sim: cannot run ${python}: ${r.error.message}` };
  if (r.status !== 0) {
    const err = (r.stderr ?? '').trim().split('\n').slice(-2).join(' | ');
    return { ok: false, message: `camera-sim: ${python} cannot load GstRtspServer (${err}); ${APT_HINT}` };
  }
  return { ok: true };
}

function mountArg(m: CameraSimMount): string {
  const s = m.source;
  if (s.kind === 'file') return `${m.name}=${s.loop ? 'file-loop' : 'file'}:${s.path}`;
  let spec = 'pattern';
  if (s.width !== undefined || s.height !== undefined || s.fps !== undefined) {
    spec += `:${s.width ?? 640}x${s.height ?? 360}@${s.fps ?? 15}`;
  }
  if (s.style) spec += `:${s.style}`;
  return `${m.name}=${spec}`;
}

export class CameraSim {
  #opts: CameraSimOptions;
  #port: number;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #frozen = false;
  #lines: string[] = [];

  constructor(opts: CameraSimOptions) {
    const names = new Set<string>();
    for (const m of opts.mounts) {
      if (!/^[A-Za-z0-9_.-]+$/.test(m.name))
        throw new Error(`camera-sim: bad mount name ${JSON.stringify(m.name)}`);
      if (names.has(m.name)) throw new Error(`camera-sim: duplicate mount ${m.name}`);
      names.add(m.name);
    }
    if (names.size === 0) throw new Error('camera-sim: at least one mount is required');
    this.#opts = opts;
    this.#port = opts.port ?? 0;
  }

  /** 0 until the first start() when the port was chosen by the server. */
  get port(): number {
    return this.#port;
  }

  get running(): boolean {
    const c = this.#child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  url(name: string): string {
    if (!this.#opts.mounts.some((m) => m.name === name)) throw new Error(`camera-sim: unknown mount ${name}`);
    if (this.#port === 0) throw new Error('camera-sim: url() before start(): the port is not known yet');
    return `rtsp://127.0.0.1:${this.#port}/${name}`;
  }

  logs(): string {
    return this.#lines.join('\n');
  }

  async start(): Promise<void> {
    if (this.running) return;
    try {
      await this.#startOnce();
    } catch (err) {
      // A fixed port (restart, or one the caller chose) may be briefly taken by someone else: retry once.
      if (!(err instanceof AddrInUse)) throw err;
      await new Promise((r) => setTimeout(r, 500));
      await this.#startOnce();
    }
  }

  #startOnce(): Promise<void> {
    const o = this.#opts;
    const args = [
      SERVER_SCRIPT,
      '--port',
      String(this.#port),
      '--loop-seconds',
      String(o.loopSeconds ?? 3600),
    ];
    if (o.shared) args.push('--shared');
    for (const m of o.mounts) args.push('--mount', mountArg(m));
    const python = o.python ?? DEFAULT_PYTHON;
    const child = spawn(python, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    this.#frozen = false;
    // A spawn failure ('error', e.g. ENOENT) may never emit 'close'; stop() must not wait for it.
    this.#exited = new Promise((resolve) => {
      child.once('close', () => resolve());
      child.once('error', () => {
        this.#child = undefined;
        resolve();
      });
    });
    o.onSpawn?.(child);

    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (why: string, cls: new (msg: string) => Error = Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (this.running) child.kill('SIGKILL');
        const tail = this.#lines.slice(-15).join('\n');
        const hint = /No module named 'gi'|Namespace Gst\w* not available/.test(tail) ? `\n${APT_HINT}` : '';
        reject(new cls(`camera-sim: ${why}\n--- server output ---\n${tail}${hint}`));
      };
      const timeoutMs = o.startTimeoutMs ?? 30_000;
      const timer = setTimeout(() => fail(`no READY within ${timeoutMs} ms`), timeoutMs);
      this.#readLines(child, 'stdout', (line) => {
        const m = /^READY rtsp:\/\/127\.0\.0\.1:(\d+)\//.exec(line);
        if (!m || settled) return;
        settled = true;
        clearTimeout(timer);
        this.#port = Number(m[1]);
        resolve();
      });
      this.#readLines(child, 'stderr');
      child.once('error', (e) => fail(`cannot spawn ${python}: ${e.message}`));
      child.once('exit', (code, sig) => {
        if (code === EXIT_ADDR_IN_USE) fail(`port ${this.#port} in use`, AddrInUse);
        else fail(`server exited before READY (code ${code}, signal ${sig})`);
      });
    });
  }

  #readLines(child: ChildProcess, stream: 'stdout' | 'stderr', onLine?: (l: string) => void): void {
    let buf = '';
    child[stream]?.setEncoding('utf8');
    child[stream]?.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.#lines.push(line);
        if (this.#lines.length > MAX_LOG_LINES) this.#lines.shift();
        this.#opts.log?.(line);
        onLine?.(line);
      }
    });
  }

  /** SIGTERM, then SIGKILL after a grace period; resolves once the process is gone. Idempotent. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    if (this.running) {
      // A stopped process keeps SIGTERM pending forever: wake it first.
      if (this.#frozen) child.kill('SIGCONT');
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await this.#exited;
      clearTimeout(killer);
    } else {
      await this.#exited;
    }
    this.#frozen = false;
  }

  /** SIGSTOP: a hung camera. TCP connections stay open (the kernel still ACKs), but no data flows. */
  freeze(): void {
    if (!this.running) throw new Error('camera-sim: freeze() while not running');
    this.#child?.kill('SIGSTOP');
    this.#frozen = true;
  }

  unfreeze(): void {
    if (this.running) this.#child?.kill('SIGCONT');
    this.#frozen = false;
  }

  /** Stop and start on the same port, so clients reconnect to the same URL. */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}
