import type { Readable } from 'node:stream';

/** A bounded tail of a process's output: keeps the last `maxLines` lines and counts what it dropped. */
export class LogTail {
  private readonly lines: string[] = [];
  private partial = '';
  dropped = 0;

  constructor(
    private readonly maxLines = 500,
    private readonly onLine?: (line: string) => void,
  ) {}

  attach(stream: Readable | null | undefined): void {
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => this.push(chunk));
  }

  push(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.add(line);
  }

  text(): string {
    const head = this.dropped > 0 ? `[${this.dropped} earlier lines dropped]\n` : '';
    return head + [...this.lines, ...(this.partial ? [this.partial] : [])].join('\n');
  }

  private add(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.maxLines) {
      this.lines.shift();
      this.dropped++;
    }
    this.onLine?.(line);
  }
}
