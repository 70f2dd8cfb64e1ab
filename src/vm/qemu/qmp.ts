import { createConnection, type Socket } from 'node:net';

/**
 * A minimal QMP client: one JSON object per line, one command in flight at a
 * time. Events (`{"event": ...}`) are ignored; Hearth polls for what it needs.
 */
export class QmpClient {
  private buffer = '';
  private pending: { resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined;
  private closedError: Error | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('close', () => {
      this.closedError = new Error('QMP connection closed');
      this.pending?.reject(this.closedError);
      this.pending = undefined;
    });
    socket.on('error', () => {
      // 'close' follows and rejects whatever is pending
    });
  }

  static async connect(path: string): Promise<QmpClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection(path);
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
    const client = new QmpClient(socket);
    await client.waitGreeting();
    await client.execute('qmp_capabilities');
    return client;
  }

  private greeting: ((line: unknown) => void) | undefined;

  private waitGreeting(): Promise<void> {
    return new Promise((resolve) => {
      this.greeting = () => resolve();
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (!line) continue;
      const message = JSON.parse(line) as { QMP?: unknown; event?: string; return?: unknown; error?: { class: string; desc: string } };
      if (message.QMP !== undefined) {
        this.greeting?.(message);
        this.greeting = undefined;
      } else if (message.event !== undefined) {
        continue;
      } else if (this.pending) {
        const { resolve, reject } = this.pending;
        this.pending = undefined;
        if (message.error) reject(new Error(`QMP: ${message.error.class}: ${message.error.desc}`));
        else resolve(message.return);
      }
    }
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    if (this.pending) return Promise.reject(new Error(`QMP: ${command} issued while another command is in flight`));
    return new Promise<T>((resolve, reject) => {
      this.pending = { resolve: resolve as (v: unknown) => void, reject };
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
