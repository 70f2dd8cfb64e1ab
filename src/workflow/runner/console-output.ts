/**
 * Where `hearth run` writes. Plain lines always (CI logs stay greppable); on a
 * terminal, a status line under them as well, redrawn as jobs start and finish,
 * so the state of a long run is visible without scrolling back.
 */
export class ConsoleOutput {
  private status = '';

  constructor(private readonly stream: NodeJS.WriteStream = process.stdout) {}

  private get live(): boolean {
    return this.stream.isTTY === true && process.env.CI !== 'true';
  }

  readonly line = (text: string): void => {
    if (this.live && this.status) this.stream.write('\r\x1b[K');
    this.stream.write(text + '\n');
    if (this.live && this.status) this.stream.write(this.status);
  };

  setStatus(running: readonly string[], finished: number, total: number): void {
    if (!this.live) return;
    const columns = this.stream.columns ?? 80;
    const text = `[${finished}/${total} done] running: ${running.join(', ') || '-'}`;
    this.status = text.length > columns - 1 ? `${text.slice(0, columns - 2)}…` : text;
    this.stream.write(`\r\x1b[K${this.status}`);
  }

  clearStatus(): void {
    if (this.live && this.status) this.stream.write('\r\x1b[K');
    this.status = '';
  }
}
