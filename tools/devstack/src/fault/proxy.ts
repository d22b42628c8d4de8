import { createServer, connect, type Server, type Socket } from 'node:net';

/** A loopback TCP proxy whose link can be cut: the "uplink" between agents and NATS in the fault test. */
export class CuttableProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private cutUntil = 0;
  cuts = 0;

  constructor(
    private readonly targetPort: number,
    readonly port: number,
  ) {}

  async start(): Promise<void> {
    this.server = createServer((client) => {
      if (Date.now() < this.cutUntil) {
        client.destroy();
        return;
      }
      const upstream = connect(this.targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
  }

  /** Drops every connection and refuses new ones for `ms`. */
  cut(ms: number): void {
    this.cuts++;
    this.cutUntil = Date.now() + ms;
    for (const s of this.sockets) s.destroy();
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
