import type { RolloutView } from './scenario.js';

/**
 * A progress line on stderr every few seconds while a long run goes on (enrolled x/N, connected x/N, the rollout's
 * waves): what it prints is set per phase. A status that throws prints nothing that time.
 */
export class Progress {
  private timer: NodeJS.Timeout | undefined;
  private status: () => string | Promise<string> = () => '';
  private busy = false;

  constructor(
    private readonly log: (line: string) => void,
    private readonly everyMs = 5000,
  ) {}

  set(status: () => string | Promise<string>): void {
    this.status = status;
  }

  start(): void {
    this.timer ??= setInterval(() => void this.tick(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const line = await this.status();
      if (line) this.log(line);
    } catch {
      // the next tick tries again
    } finally {
      this.busy = false;
    }
  }
}

/** `good rollout running, wave 2/4: canary 10/10 applied, 10% 90/100 applied 0 failed 0 pending, ...`. */
export function rolloutLine(kind: string, view: RolloutView): string {
  const waves = view.waves
    .map(
      (w) =>
        `${w.label} ${w.applied}/${w.devices} applied` +
        (w.failed ? ` ${w.failed} failed` : '') +
        (w.pending ? ` ${w.pending} pending` : ''),
    )
    .join(', ');
  const abort = view.abort_reason ? ` (${view.abort_reason})` : '';
  return `${kind} rollout ${view.state}${abort}, wave ${view.current_wave + 1}/${view.waves.length}: ${waves}`;
}
