import { maskSecrets } from '../../redact.ts';

/**
 * Live job output: every line prefixed with its job, secrets replaced by ***.
 * Output arrives in chunks that may split lines (and UTF-8 characters); each
 * stream keeps its partial line until the newline comes.
 */
export class JobLog {
  private readonly partial = new Map<string, Buffer>();
  /** Sees each complete stdout line first; a line it returns true for is consumed, not written. */
  private intercept: ((line: string) => boolean) | undefined;

  constructor(
    private readonly prefix: string,
    private readonly write: (line: string) => void,
    private readonly secrets: readonly string[] = [],
  ) {}

  mask(text: string): string {
    return maskSecrets(text, this.secrets, { minLength: 3 });
  }

  line(text: string): void {
    for (const line of text.split('\n')) this.write(`[${this.prefix}] ${this.mask(line)}`);
  }

  /** Lets a runner pick its own marker lines out of a script's stdout (undefined: stop). */
  interceptStdout(handler: ((line: string) => boolean) | undefined): void {
    this.intercept = handler;
  }

  private emit(stream: string, text: string): void {
    if (stream === 'stdout' && this.intercept?.(text)) return;
    this.write(`[${this.prefix}] ${this.mask(text)}`);
  }

  chunk(stream: 'stdout' | 'stderr', data: Buffer): void {
    let buffer = Buffer.concat([this.partial.get(stream) ?? Buffer.alloc(0), data]);
    let newline: number;
    while ((newline = buffer.indexOf(10)) >= 0) {
      this.emit(stream, buffer.subarray(0, newline).toString('utf8'));
      buffer = buffer.subarray(newline + 1);
    }
    this.partial.set(stream, buffer);
  }

  flush(): void {
    for (const [stream, buffer] of this.partial) {
      if (buffer.length) this.emit(stream, buffer.toString('utf8'));
      this.partial.delete(stream);
    }
  }
}
