import Database from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect } from 'kysely';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { migrationProvider } from './migrations.ts';
import { insertDelivery, insertJobEvent, insertQueuedJob, selectJob, selectJobEvents, selectJobsPage, selectJobsStuckIn, updateJobState } from './plans.ts';
import type { LedgerSchema } from './schema.ts';
import type { JobState } from './states.ts';

export interface NewJob {
  readonly forge: 'github' | 'gitlab';
  readonly forgeJobId: string;
  readonly repository: string;
  readonly labels: readonly string[];
}

export interface TimelineEntry {
  readonly from: JobState | null;
  readonly to: JobState;
  readonly reason: string;
  readonly at: string;
}

/**
 * The durable store: deliveries (for dedupe), jobs (one state machine) and
 * every transition with its time and reason (the stage timeline). SQLite in
 * WAL mode by default; a webhook is answered only after its row is committed.
 */
export class Ledger {
  private constructor(readonly db: Kysely<LedgerSchema>) {}

  static async openSqlite(path: string, clock: () => Date = () => new Date()): Promise<Ledger> {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const sqlite = new Database(path);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    const ledger = new Ledger(new Kysely<LedgerSchema>({ dialect: new SqliteDialect({ database: sqlite }) }));
    ledger.clock = clock;
    const { error } = await new Migrator({ db: ledger.db, provider: migrationProvider }).migrateToLatest();
    if (error) throw new Error(`ledger migration failed for ${path}: ${(error as Error).message}`, { cause: error });
    return ledger;
  }

  private clock: () => Date = () => new Date();

  private now(): string {
    return this.clock().toISOString();
  }

  /** Records a delivery once; false for a redelivery, which must then change nothing. */
  recordDelivery(forge: string, deliveryId: string, event: string): Promise<boolean> {
    return insertDelivery(this.db, { id: `${forge}:${deliveryId}`, forge, event, received_at: this.now() });
  }

  /** Adds a queued job (idempotent); returns its ledger id and whether it is new. */
  async enqueue(job: NewJob, reason: string): Promise<{ id: string; created: boolean }> {
    const id = `${job.forge}:${job.forgeJobId}`;
    const at = this.now();
    const created = await this.db.transaction().execute(async (tx) => {
      const inserted = await insertQueuedJob(tx, { id, forge: job.forge, forge_job_id: job.forgeJobId, repository: job.repository, labels: JSON.stringify(job.labels), created_at: at, updated_at: at });
      if (inserted) await insertJobEvent(tx, { job_id: id, from_state: null, to_state: 'queued', reason, at });
      return inserted;
    });
    return { id, created };
  }

  /**
   * Moves a job to `to` if the state machine allows it from where the job is;
   * returns false (changing nothing) when it does not, e.g. `running` after `completed`.
   */
  async transition(id: string, to: JobState, reason: string, extra: { vmId?: string; runnerName?: string; error?: string; attempt?: boolean } = {}): Promise<boolean> {
    const at = this.now();
    return this.db.transaction().execute(async (tx) => {
      const from = await updateJobState(tx, id, to, at, {
        ...(extra.vmId !== undefined ? { vm_id: extra.vmId } : {}),
        ...(extra.runnerName !== undefined ? { runner_name: extra.runnerName } : {}),
        ...(extra.error !== undefined ? { last_error: extra.error } : {}),
        ...(extra.attempt ? { attempt: true } : {}),
      });
      if (from === undefined) return false;
      await insertJobEvent(tx, { job_id: id, from_state: from, to_state: to, reason, at });
      return true;
    });
  }

  job(id: string) {
    return selectJob(this.db, id);
  }

  async timeline(id: string): Promise<TimelineEntry[]> {
    return (await selectJobEvents(this.db, id)).map((e) => ({ from: e.from_state, to: e.to_state, reason: e.reason, at: e.at }));
  }

  /** A page of jobs, newest first; pass the last job of a page as `after` for the next one. */
  jobs(limit: number, after?: { created_at: string; id: string }) {
    return selectJobsPage(this.db, Math.min(Math.max(1, limit), 10_000), after);
  }

  stuckIn(state: JobState, olderThanMs: number) {
    return selectJobsStuckIn(this.db, state, new Date(this.clock().getTime() - olderThanMs).toISOString());
  }

  close(): Promise<void> {
    return this.db.destroy();
  }
}
