import { sql, type Kysely } from 'kysely';
import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { LedgerDialect } from './migrations.ts';
import type { LedgerSchema } from './schema.ts';
import type { StoreWarn } from './store.ts';

export type WakeChannel = 'hearth_jobs' | 'hearth_placed';

/**
 * Wake-ups between replicas: in-process on SQLite, LISTEN/NOTIFY on PostgreSQL
 * over a dedicated connection that reconnects. A wake-up is only a hint, so a
 * missed one costs a reconcile interval, never correctness.
 */
export class Notifier {
  private readonly local = new EventEmitter();
  private readonly channels = new Map<string, (payload: string) => void>();
  private listener: pg.Client | undefined;
  private listening: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly db: Kysely<LedgerSchema>,
    private readonly dialect: LedgerDialect,
    private readonly url: string | undefined,
    private readonly warn: StoreWarn,
  ) {}

  /** Wakes whoever subscribed to `channel`, in this process and (PostgreSQL) every replica. */
  async notify(channel: WakeChannel, payload = ''): Promise<void> {
    if (this.dialect === 'postgres') await sql`select pg_notify(${channel}, ${payload})`.execute(this.db);
    else this.local.emit(channel, payload);
  }

  /** Calls `onWake` on every notify to `channel`. */
  subscribe(channel: WakeChannel, onWake: (payload: string) => void): void {
    // On PostgreSQL every wake-up, this process's own too, comes back through LISTEN.
    if (this.dialect !== 'postgres') {
      this.local.on(channel, onWake);
      return;
    }
    if (!this.url) return;
    this.channels.set(channel, onWake);
    void this.listen();
  }

  private listen(): Promise<void> {
    this.listening ??= (async () => {
      while (!this.closed && this.url) {
        const client = new pg.Client({ connectionString: this.url });
        const ended = new Promise<void>((resolve) => {
          client.on('error', () => resolve());
          client.on('end', () => resolve());
        });
        try {
          await client.connect();
          this.listener = client;
          client.on('notification', (message) => this.channels.get(message.channel)?.(message.payload ?? ''));
          for (const channel of this.channels.keys()) await client.query(`LISTEN ${channel}`);
          // Anything notified while we were away is found by the reconcile pass this triggers.
          for (const wake of this.channels.values()) wake('');
          await ended;
        } catch (error) {
          // The server is down or restarting: try again shortly.
          if (!this.closed) this.warn('the LISTEN connection failed; reconnecting in 1 s', error);
        } finally {
          this.listener = undefined;
          await client.end().catch((error: unknown) => this.warn('closing the LISTEN connection failed', error));
        }
        if (!this.closed) await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    return this.listening;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.listener?.end().catch((error: unknown) => this.warn('closing the LISTEN connection failed', error));
  }
}
