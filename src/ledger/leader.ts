import pg from 'pg';
import type { Logger } from '../log.ts';

/** Any fixed 64-bit key: the advisory lock every Hearth replica of one database competes for. */
const LEADER_LOCK_KEY = 0x4865617274680001n;

/**
 * Which replica runs the cluster-wide reconcile (placement, lost hosts, the
 * forge sweeps): the one holding a PostgreSQL session advisory lock. The lock
 * lives as long as its connection, so a replica that dies (kill -9, lost
 * network) hands it over the moment PostgreSQL notices the session is gone.
 * With SQLite there is one process, and it always leads.
 */
export class LeaderElection {
  private client: pg.Client | undefined;
  private leading: boolean;
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  private stopped = false;

  constructor(
    private readonly url: string | null,
    private readonly onChange: (leading: boolean) => void = () => {},
    /** false for processes that never lead (VM hosts): they do not even compete. */
    private readonly candidate = true,
    private readonly intervalMs = 2000,
    /** Where a lost connection or a failed check is said (without one: a process warning). */
    private readonly logger?: Logger,
  ) {
    this.leading = url === null && candidate;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    if (!this.candidate) return;
    if (this.url === null) {
      this.onChange(true);
      return;
    }
    void this.check();
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  /** Takes the lock if free, or proves the session that holds it is still alive. */
  private async check(): Promise<void> {
    if (this.checking || this.stopped || this.url === null) return;
    this.checking = true;
    try {
      if (!this.client) {
        const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 5000 });
        client.on('error', () => this.lose(client));
        client.on('end', () => this.lose(client));
        await client.connect();
        this.client = client;
      }
      if (this.leading) {
        await this.client.query('select 1');
        return;
      }
      const { rows } = await this.client.query<{ locked: boolean }>('select pg_try_advisory_lock($1) as locked', [LEADER_LOCK_KEY.toString()]);
      if (rows[0]?.locked) this.set(true);
    } catch (error) {
      this.warn('the leadership check failed; leadership is given up until the next check takes the lock', error);
      if (this.client) this.lose(this.client);
    } finally {
      this.checking = false;
    }
  }

  private lose(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    void client.end().catch((error: unknown) => this.warn('closing the leadership connection failed', error));
    this.set(false);
  }

  private set(leading: boolean): void {
    if (this.leading === leading) return;
    this.leading = leading;
    this.onChange(leading);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const client = this.client;
    this.client = undefined;
    this.set(false);
    await client?.end().catch((error: unknown) => this.warn('closing the leadership connection failed', error));
  }

  private warn(message: string, error: unknown): void {
    if (this.logger) this.logger.warn({ err: error }, message);
    else process.emitWarning(`${message}: ${(error as Error).message}`, 'HearthLeaderWarning');
  }
}
