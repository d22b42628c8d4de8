import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogTail } from './log-tail.js';
import { freePort } from './ports.js';
import { ProcessRegistry } from './processes.js';
import { ServerProcess } from './server-process.js';

export interface NatsTlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export interface NatsConfigContext {
  port: number;
  httpPort: number;
  storeDir: string;
  dir: string;
}

export interface NatsServerOptions {
  /** Full config text, or a function of the chosen ports and dirs. Defaults to `natsConfig()`. */
  config?: string | ((ctx: NatsConfigContext) => string);
  /** Fixed client port (dev stack); default: a free one. */
  port?: number;
  /** Working dir holding the config and the JetStream store; default: a fresh temp dir removed on stop. */
  dir?: string;
  binary?: string;
  registry?: ProcessRegistry;
  readyTimeoutMs?: number;
  onLog?: (line: string) => void;
}

export interface NatsConfigOptions {
  tls?: NatsTlsFiles;
  /** Require a client certificate from `tls.caFile` (mutual TLS). Default true when tls is set. */
  verify?: boolean;
  /** Seconds the server allows a client's TLS handshake (default 2; thousands of handshakes on 2 cores need more). */
  tlsTimeoutSeconds?: number;
  jetstream?: boolean;
  /** Extra config appended verbatim (accounts, authorization, resolver...). */
  extra?: string;
}

/** Builds a nats-server config: loopback only, monitoring port, optional JetStream and mutual TLS. */
export function natsConfig(opts: NatsConfigOptions = {}): (ctx: NatsConfigContext) => string {
  return (ctx) => {
    const lines = [
      `listen: "127.0.0.1:${ctx.port}"`,
      `http: "127.0.0.1:${ctx.httpPort}"`,
      `server_name: "vigil_${ctx.port}"`,
      'max_payload: 4MB',
    ];
    if (opts.jetstream ?? true) {
      // nats-server reserves every stream's max_bytes out of max_file_store (a cap, not an allocation):
      // the cloud's EVENTS (1 GiB), DEAD_LETTER (1 GiB), MEDIA (512 MiB) and TELEMETRY (256 MiB) must fit.
      lines.push(
        `jetstream { store_dir: ${JSON.stringify(ctx.storeDir)}, max_memory_store: 64MB, max_file_store: 4GB }`,
      );
    }
    if (opts.tls) {
      lines.push(
        'tls {',
        `  cert_file: ${JSON.stringify(opts.tls.certFile)}`,
        `  key_file: ${JSON.stringify(opts.tls.keyFile)}`,
        `  ca_file: ${JSON.stringify(opts.tls.caFile)}`,
        `  verify: ${opts.verify ?? true}`,
        `  timeout: ${opts.tlsTimeoutSeconds ?? 2}`,
        '}',
      );
    }
    if (opts.extra) lines.push(opts.extra);
    return lines.join('\n') + '\n';
  };
}

/** A real nats-server on loopback, ready when `start()` resolves. `restart()` keeps port and store. */
export class NatsServer extends ServerProcess<NatsConfigContext> {
  readonly logs: LogTail;
  private configText = '';
  private readonly registry: ProcessRegistry;

  constructor(private readonly opts: NatsServerOptions = {}) {
    super();
    this.registry = opts.registry ?? new ProcessRegistry();
    this.logs = new LogTail(1000, opts.onLog);
  }

  get port(): number {
    return this.context().port;
  }

  get httpPort(): number {
    return this.context().httpPort;
  }

  get dir(): string {
    return this.context().dir;
  }

  /** `nats://127.0.0.1:<port>`; clients using TLS connect to `tls://localhost:<port>` (the cert names it). */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<this> {
    if (!this.ctx) {
      const dir = this.opts.dir ?? mkdtempSync(join(tmpdir(), 'vigil-nats-'));
      this.ownsDir = this.opts.dir === undefined;
      mkdirSync(join(dir, 'jetstream'), { recursive: true });
      this.ctx = {
        port: this.opts.port ?? (await freePort()),
        httpPort: await freePort(),
        storeDir: join(dir, 'jetstream'),
        dir,
      };
      const config = this.opts.config ?? natsConfig();
      this.configText = typeof config === 'string' ? config : config(this.ctx);
      writeFileSync(join(dir, 'nats.conf'), this.configText);
    }
    await this.launch();
    return this;
  }

  private context(): NatsConfigContext {
    if (!this.ctx) throw new Error('nats-server is not started: call start() first');
    return this.ctx;
  }

  protected async launch(): Promise<void> {
    const ctx = this.context();
    const binary = this.opts.binary ?? process.env.NATS_SERVER_BIN ?? 'nats-server';
    const child = this.registry.spawn(binary, ['-c', join(ctx.dir, 'nats.conf')], { cwd: ctx.dir });
    this.child = child;
    this.logs.attach(child.stdout);
    this.logs.attach(child.stderr);
    const timeoutMs = this.opts.readyTimeoutMs ?? 10_000;
    const ready = await new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => resolve(`not ready after ${timeoutMs} ms`), timeoutMs);
      const onData = (chunk: Buffer | string): void => {
        if (String(chunk).includes('Server is ready')) done(null);
      };
      const done = (error: string | null): void => {
        clearTimeout(timer);
        child.stderr?.off('data', onData);
        resolve(error);
      };
      child.stderr?.on('data', onData);
      child.once('error', (err) =>
        done(
          (err as NodeJS.ErrnoException).code === 'ENOENT'
            ? `${binary} not found: install it (apt-get install nats-server) or set NATS_SERVER_BIN`
            : err.message,
        ),
      );
      child.once('exit', (code) => done(`exited with code ${code} before it was ready`));
    });
    if (ready !== null) {
      await this.stop();
      throw new Error(
        `nats-server on port ${ctx.port} ${ready}\n--- config ---\n${this.configText}--- log ---\n${this.logs.text()}`,
      );
    }
  }
}
