/** A failure the CLI reports as one message (no stack) with an exit code: 1 operation failed, 2 usage. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CliError';
  }
}

/** Output sinks, injected so that tests run commands in-process and read what they print. */
export interface Io {
  /** One line (or block) of normal output, to stdout. */
  out(text: string): void;
  /** Diagnostics and hints, to stderr. */
  err(text: string): void;
}
