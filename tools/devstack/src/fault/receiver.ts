// The fault test's webhook receiver: answers every POST 200 and appends the event id it carried to a file (one
// line per request, so repeats stay visible; bounded memory at any size). It runs in the tool and is never
// killed: the faults are on the cloud's side.
import { createWriteStream, type WriteStream } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export class WebhookReceiver {
  private server: Server | undefined;
  private file: WriteStream | undefined;
  requests = 0;
  /** Bodies without a readable event id (must stay 0). */
  unreadable = 0;

  constructor(private readonly path: string) {}

  async start(): Promise<string> {
    this.file = createWriteStream(this.path, { flags: 'a' });
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= 64 * 1024) chunks.push(c);
      });
      req.on('end', () => {
        this.requests++;
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
            event?: { event_id?: unknown };
          };
          const id = body.event?.event_id;
          if (typeof id !== 'string') throw new Error('no event id');
          this.file?.write(`${id}\n`);
        } catch {
          this.unreadable++;
        }
        res.statusCode = 200;
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await new Promise<void>((resolve) => (this.file ? this.file.end(() => resolve()) : resolve()));
  }
}
