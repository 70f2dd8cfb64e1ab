import Database from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely';
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { migrationProvider, type LedgerDialect } from './migrations.ts';
import { countJobsByState, insertDelivery, insertJobEvent, insertQueuedJob, markJobReleased, selectCommittedByHost, selectFinishedJobsSince, selectHosts, selectJob, selectJobsByIds, selectJobsOnHost, selectQueuedForPlacement, selectUnreleasedFinalOffHosts, setHostState, touchHost, upsertHost, selectJobEvents, selectJobsInStates, selectJobsPage, selectJobsStuckIn, selectUnreleasedFinalJobs, updateJobResources, updateJobState, type JobFilter, type JobResources } from './plans.ts';
import { stageOfTransition, type Stage } from './stages.ts';
import type { Transaction } from 'kysely';
import type { LedgerSchema } from './schema.ts';
import { FINAL_STATES, type JobState } from './states.ts';
import type { DriverCapabilities } from '../vm/driver.ts';

export interface NewJob {
  readonly forge: 'github' | 'gitlab';
  readonly forgeJobId: string;
  readonly repository: string;
  readonly labels: readonly string[];
  readonly name?: string | undefined;
}

/** The forge's verdict on an ended job, kept for Insights. */
export interface JobVerdict {
  readonly conclusion?: string | undefined;
  readonly failedStep?: string | undefined;
}

export type JobRow = LedgerSchema['jobs'];

/** What a webhook asks of the ledger, applied in the same transaction that records the delivery. */
export type WebhookEffect =
  | { readonly kind: 'enqueue'; readonly job: NewJob; readonly reason: string }
  | { readonly kind: 'transition'; readonly id: string; readonly to: JobState; readonly reason: string; readonly ranOn?: string | undefined; readonly verdict?: JobVerdict }
  /** Finished before its queued event arrived: recorded final, so a late `queued` starts nothing. */
  | { readonly kind: 'finish'; readonly job: NewJob; readonly to: JobState; readonly reason: string; readonly verdict?: JobVerdict }
  | { readonly kind: 'none' };

export interface WebhookRecord {
  readonly forge: string;
  readonly deliveryId: string;
  readonly event: string;
}

export interface WebhookResult {
  readonly duplicate: boolean;
  readonly changed: boolean;
  readonly jobId?: string;
}

export interface TransitionExtra {
  readonly vmId?: string;
  readonly runnerName?: string;
  readonly runnerId?: string;
  /** The runner the forge reports the job on. */
  readonly ranOn?: string;
  readonly error?: string;
  readonly attempt?: boolean;
  readonly verdict?: JobVerdict | undefined;
  /** Where the job is placed, and with which shape; null takes it off its host (a requeue). */
  readonly placement?: { readonly host: string; readonly cpus: number; readonly memoryMib: number } | null;
}

/** A VM host as it registers itself. */
export interface HostInfo {
  readonly id: string;
  readonly cpus: number;
  readonly memoryMib: number;
  readonly diskGib: number;
  readonly drivers: readonly string[];
  readonly images: readonly string[];
  readonly labels: readonly string[];
  /** What its driver can boot (VmDriver.capabilities), for admission. */
  readonly capabilities?: DriverCapabilities;
}

export type HostRow = LedgerSchema['hosts'];

/** Placement's answer for one queued job: a host and shape, or stay queued. */
export type PlacementChoice = { readonly host: string; readonly cpus: number; readonly memoryMib: number; readonly reason: string } | undefined;

export interface TimelineEntry {
  readonly from: JobState | null;
  readonly to: JobState;
  readonly reason: string;
  readonly at: string;
  readonly stage: string | null;
}

/**
 * The durable store: deliveries (for dedupe), jobs (one state machine) and
 * every transition with its time and reason (the stage timeline). SQLite in
 * WAL mode by default; a webhook is answered only after its row is committed.
 */
export class Ledger {
  private constructor(
    readonly db: Kysely<LedgerSchema>,
    readonly dialect: LedgerDialect,
  ) {}

  /** The store `store.url` names: a SQLite file, or a PostgreSQL database shared by replicas. */
  static open(target: { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string }, clock?: () => Date): Promise<Ledger> {
    return target.kind === 'postgres' ? Ledger.openPostgres(target.url, clock) : Ledger.openSqlite(target.path, clock);
  }

  static async openPostgres(url: string, clock: () => Date = () => new Date(), poolSize = 10): Promise<Ledger> {
    const pool = new pg.Pool({ connectionString: url, max: poolSize, connectionTimeoutMillis: 10_000 });
    // A client whose server went away (a restart) must not crash the process: the pool replaces it,
    // and a statement in flight fails on its own promise, so the reconcile pass retries.
    pool.on('error', () => {});
    pool.on('connect', (client) => client.on('error', () => {}));
    const ledger = new Ledger(new Kysely<LedgerSchema>({ dialect: new PostgresDialect({ pool }) }), 'postgres');
    ledger.clock = clock;
    ledger.listenerUrl = url;
    await ledger.migrate(url.replace(/\/\/[^@/]*@/, '//***@'));
    return ledger;
  }

  private async migrate(where: string): Promise<void> {
    const { error } = await new Migrator({ db: this.db, provider: migrationProvider(this.dialect) }).migrateToLatest();
    if (error) throw new Error(`ledger migration failed for ${where}: ${(error as Error).message}`, { cause: error });
  }

  static async openSqlite(path: string, clock: () => Date = () => new Date()): Promise<Ledger> {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const sqlite = new Database(path);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    // Kysely prepares every statement anew; the ledger runs a small fixed set of
    // parameterised statements, so reusing them halves the cost of a webhook.
    const statements = new Map<string, Database.Statement>();
    const database = {
      close: () => void sqlite.close(),
      prepare(sqlText: string): Database.Statement {
        let statement = statements.get(sqlText);
        if (!statement) {
          statement = sqlite.prepare(sqlText);
          if (statements.size < 1000) statements.set(sqlText, statement);
        }
        return statement;
      },
    };
    const ledger = new Ledger(new Kysely<LedgerSchema>({ dialect: new SqliteDialect({ database }) }), 'sqlite');
    ledger.clock = clock;
    await ledger.migrate(path);
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
  enqueue(job: NewJob, reason: string): Promise<{ id: string; created: boolean }> {
    return this.write((tx) => this.enqueueIn(tx, job, reason));
  }

  private async enqueueIn(tx: Transaction<LedgerSchema>, job: NewJob, reason: string): Promise<{ id: string; created: boolean }> {
    const id = jobId(job.forge, job.forgeJobId);
    const at = this.now();
    const created = await insertQueuedJob(tx, { id, forge: job.forge, forge_job_id: job.forgeJobId, repository: job.repository, labels: JSON.stringify(job.labels), job_name: job.name ?? null, created_at: at, updated_at: at });
    if (created) await insertJobEvent(tx, { job_id: id, from_state: null, to_state: 'queued', reason, at, stage: 'received' });
    return { id, created };
  }

  /**
   * Moves a job to `to` if the state machine allows it from where the job is;
   * returns false (changing nothing) when it does not, e.g. `running` after `completed`.
   */
  transition(id: string, to: JobState, reason: string, extra: TransitionExtra = {}): Promise<boolean> {
    return this.write((tx) => this.transitionIn(tx, id, to, reason, extra));
  }

  private async transitionIn(tx: Transaction<LedgerSchema>, id: string, to: JobState, reason: string, extra: TransitionExtra = {}): Promise<boolean> {
    const at = this.now();
    const from = await updateJobState(tx, id, to, at, {
      ...(extra.vmId !== undefined ? { vm_id: extra.vmId } : {}),
      ...(extra.runnerName !== undefined ? { runner_name: extra.runnerName } : {}),
      ...(extra.runnerId !== undefined ? { runner_id: extra.runnerId } : {}),
      ...(extra.ranOn !== undefined ? { ran_on: extra.ranOn } : {}),
      ...(extra.error !== undefined ? { last_error: extra.error } : {}),
      ...(extra.attempt ? { attempt: true } : {}),
      ...(extra.verdict?.conclusion !== undefined ? { conclusion: extra.verdict.conclusion } : {}),
      ...(extra.verdict?.failedStep !== undefined ? { failed_step: extra.verdict.failedStep } : {}),
      ...(extra.placement !== undefined ? { host: extra.placement?.host ?? null, cpus: extra.placement?.cpus ?? null, memory_mib: extra.placement?.memoryMib ?? null } : {}),
    });
    if (from === undefined) return false;
    await insertJobEvent(tx, { job_id: id, from_state: from, to_state: to, reason, at, stage: stageOfTransition(from, to) });
    return true;
  }

  /**
   * Records a webhook delivery and what it asks for in one transaction, so the
   * answer to the forge means both are on disk. A redelivery changes nothing.
   */
  recordWebhook(delivery: WebhookRecord, effect: WebhookEffect): Promise<WebhookResult> {
    return this.write((tx) => this.applyWebhook(tx, delivery, effect));
  }

  /**
   * Every change to the ledger goes through here: writes requested in the same
   * I/O phase share one transaction (group commit), in the order they were
   * asked for, and each caller hears back only after the commit that holds its
   * rows. With hundreds of jobs in flight, the commit is most of a write's cost.
   */
  private write<T>(work: (tx: Transaction<LedgerSchema>) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pendingWrites.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (this.flushingWrites) return;
      this.flushingWrites = true;
      // After the current I/O phase, everything asked for in it shares one commit.
      setImmediate(() => void this.flushWrites());
    });
  }

  private pendingWrites: { work: (tx: Transaction<LedgerSchema>) => Promise<unknown>; resolve: (value: unknown) => void; reject: (error: unknown) => void }[] = [];
  private flushingWrites = false;

  private async flushWrites(): Promise<void> {
    try {
      while (this.pendingWrites.length > 0) {
        const batch = this.pendingWrites.splice(0, 256);
        try {
          const results = await this.db.transaction().execute(async (tx) => {
            const out: unknown[] = [];
            for (const item of batch) out.push(await item.work(tx));
            return out;
          });
          batch.forEach((item, i) => item.resolve(results[i]));
        } catch {
          // One failing write must not fail its neighbours: each runs again in its own transaction.
          for (const item of batch) {
            try {
              item.resolve(await this.db.transaction().execute((tx) => item.work(tx)));
            } catch (error) {
              item.reject(error);
            }
          }
        }
      }
    } finally {
      this.flushingWrites = false;
    }
  }

  private async applyWebhook(tx: Transaction<LedgerSchema>, delivery: WebhookRecord, effect: WebhookEffect): Promise<WebhookResult> {
    const fresh = await insertDelivery(tx, { id: `${delivery.forge}:${delivery.deliveryId}`, forge: delivery.forge, event: delivery.event, received_at: this.now() });
    if (!fresh) return { duplicate: true, changed: false };
    if (effect.kind === 'enqueue') {
      const { id, created } = await this.enqueueIn(tx, effect.job, effect.reason);
      return { duplicate: false, changed: created, jobId: id };
    }
    if (effect.kind === 'finish') {
      const { id, created } = await this.enqueueIn(tx, effect.job, `${effect.reason} (before Hearth saw it queued)`);
      const moved = await this.transitionIn(tx, id, effect.to, effect.reason, { verdict: effect.verdict });
      if (created && moved) await markJobReleased(tx, id, this.now());
      return { duplicate: false, changed: created || moved, jobId: id };
    }
    if (effect.kind === 'transition') return { duplicate: false, changed: await this.transitionIn(tx, effect.id, effect.to, effect.reason, { ...(effect.ranOn ? { ranOn: effect.ranOn } : {}), verdict: effect.verdict }), jobId: effect.id };
    return { duplicate: false, changed: false };
  }

  /** A step on the timeline that is not a state change (VM ready, runner exited), marking `stage` if given. */
  async note(id: string, reason: string, resources?: JobResources, stage: Stage | null = null): Promise<void> {
    const at = this.now();
    await this.write(async (tx) => {
      const job = await selectJob(tx, id);
      if (!job) return;
      if (resources) await updateJobResources(tx, id, at, resources);
      await insertJobEvent(tx, { job_id: id, from_state: job.state, to_state: job.state, reason, at, stage });
    });
  }

  /** Marks a final job's VM and registration as gone; true the first time only. */
  async release(id: string, reason: string): Promise<boolean> {
    const at = this.now();
    return this.write(async (tx) => {
      const job = await selectJob(tx, id);
      if (!job || !(await markJobReleased(tx, id, at))) return false;
      await insertJobEvent(tx, { job_id: id, from_state: job.state, to_state: job.state, reason, at, stage: 'released' });
      return true;
    });
  }

  inStates(states: readonly JobState[]): Promise<JobRow[]> {
    return selectJobsInStates(this.db, states);
  }

  unreleasedFinal(): Promise<JobRow[]> {
    return selectUnreleasedFinalJobs(this.db, FINAL_STATES);
  }

  async countByState(): Promise<Record<string, number>> {
    const rows = await countJobsByState(this.db);
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.count)]));
  }

  job(id: string): Promise<JobRow | undefined> {
    return selectJob(this.db, id);
  }

  async timeline(id: string): Promise<TimelineEntry[]> {
    return (await selectJobEvents(this.db, id)).map((e) => ({ from: e.from_state, to: e.to_state, reason: e.reason, at: e.at, stage: e.stage }));
  }

  /** A page of jobs, newest first; pass the last job of a page as `after` for the next one. */
  jobs(limit: number, after?: { created_at: string; id: string }, filter?: JobFilter) {
    return selectJobsPage(this.db, Math.min(Math.max(1, limit), 10_000), after, filter);
  }

  /** Jobs that ended in the last `days` days (at most `limit`, newest first). */
  finishedSince(days: number, limit = 20_000) {
    return selectFinishedJobsSince(this.db, new Date(this.clock().getTime() - days * 86_400_000).toISOString(), limit);
  }

  stuckIn(state: JobState, olderThanMs: number) {
    return selectJobsStuckIn(this.db, state, new Date(this.clock().getTime() - olderThanMs).toISOString());
  }

  // ---- hosts and placement ----------------------------------------------

  async registerHost(host: HostInfo): Promise<void> {
    const at = this.now();
    await upsertHost(this.db, {
      id: host.id,
      cpus: host.cpus,
      memory_mib: host.memoryMib,
      disk_gib: host.diskGib,
      drivers: JSON.stringify(host.drivers),
      images: JSON.stringify(host.images),
      labels: JSON.stringify(host.labels),
      capabilities: host.capabilities ? JSON.stringify(host.capabilities) : null,
      pool_cpus: 0,
      pool_memory_mib: 0,
      state: 'up',
      started_at: at,
      heartbeat_at: at,
    });
  }

  /** A host's heartbeat: its lease on every job placed on it. Returns the state it was in before. */
  heartbeatHost(id: string, pool: { cpus: number; memoryMib: number }): Promise<string | undefined> {
    return touchHost(this.db, id, this.now(), pool);
  }

  /** Marks a host lost if its heartbeat is still older than `timeoutMs` (a late heartbeat wins). */
  markHostLost(id: string, timeoutMs: number): Promise<boolean> {
    return setHostState(this.db, id, 'lost', new Date(this.clock().getTime() - timeoutMs).toISOString());
  }

  markHostLeft(id: string): Promise<boolean> {
    return setHostState(this.db, id, 'left');
  }

  hosts(): Promise<HostRow[]> {
    return selectHosts(this.db);
  }

  /** Hosts `up` whose heartbeat is within `timeoutMs`. */
  async liveHosts(timeoutMs: number): Promise<HostRow[]> {
    const since = new Date(this.clock().getTime() - timeoutMs).toISOString();
    return (await this.hosts()).filter((h) => h.state === 'up' && h.heartbeat_at >= since);
  }

  async committedByHost(): Promise<Map<string, { cpus: number; memoryMib: number }>> {
    const rows = await selectCommittedByHost(this.db, ['claimed', 'provisioning', 'runner_registered', 'running']);
    return new Map(rows.map((r) => [r.host as string, { cpus: Number(r.cpus ?? 0), memoryMib: Number(r.memory_mib ?? 0) }]));
  }

  /**
   * Places up to `limit` queued jobs in one transaction: `choose` sees them
   * oldest first and names a host for each it can place. On PostgreSQL the rows
   * are locked with SKIP LOCKED for the transaction, so no job is placed twice.
   */
  async placeQueued(limit: number, choose: (jobs: JobRow[]) => Promise<Map<string, PlacementChoice>>): Promise<{ id: string; host: string }[]> {
    return this.db.transaction().execute(async (tx) => {
      const jobs = await selectQueuedForPlacement(tx, limit, this.dialect === 'postgres');
      if (jobs.length === 0) return [];
      const choices = await choose(jobs);
      const placed: { id: string; host: string }[] = [];
      for (const job of jobs) {
        const choice = choices.get(job.id);
        if (!choice) continue;
        if (await this.transitionIn(tx, job.id, 'claimed', choice.reason, { placement: { host: choice.host, cpus: choice.cpus, memoryMib: choice.memoryMib } })) placed.push({ id: job.id, host: choice.host });
      }
      return placed;
    });
  }

  jobsByIds(ids: readonly string[]): Promise<JobRow[]> {
    return selectJobsByIds(this.db, ids);
  }

  jobsOnHost(host: string, states: readonly JobState[]): Promise<JobRow[]> {
    return selectJobsOnHost(this.db, host, states);
  }

  /** Ended jobs not torn down whose host is gone (or that never had one). */
  unreleasedFinalOffHosts(upHosts: readonly string[]): Promise<JobRow[]> {
    return selectUnreleasedFinalOffHosts(this.db, FINAL_STATES, upHosts);
  }

  // ---- wake-ups between replicas ------------------------------------------

  private readonly local = new EventEmitter();
  private listener: pg.Client | undefined;
  private listenerUrl: string | undefined;

  /** Wakes whoever subscribed to `channel`, in this process and (PostgreSQL) every replica. */
  async notify(channel: 'hearth_jobs' | 'hearth_placed', payload = ''): Promise<void> {
    this.local.emit(channel, payload);
    if (this.dialect === 'postgres') await sql`select pg_notify(${channel}, ${payload})`.execute(this.db);
  }

  /**
   * Calls `onWake` on every notify to `channel`. On PostgreSQL a dedicated
   * connection LISTENs (and reconnects); a wake-up is only a hint, so a missed
   * one costs a reconcile interval, never correctness.
   */
  subscribe(channel: 'hearth_jobs' | 'hearth_placed', onWake: (payload: string) => void): void {
    this.local.on(channel, (payload: string) => {
      if (this.dialect !== 'postgres') onWake(payload);
    });
    if (this.dialect !== 'postgres' || !this.listenerUrl) return;
    this.channels.set(channel, onWake);
    void this.listen();
  }

  private readonly channels = new Map<string, (payload: string) => void>();
  private listening: Promise<void> | undefined;

  private listen(): Promise<void> {
    this.listening ??= (async () => {
      while (!this.closed && this.listenerUrl) {
        const client = new pg.Client({ connectionString: this.listenerUrl });
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
        } catch {
          // The server is down or restarting: try again shortly.
        } finally {
          this.listener = undefined;
          await client.end().catch(() => {});
        }
        if (!this.closed) await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    return this.listening;
  }

  private closed = false;

  async close(): Promise<void> {
    this.closed = true;
    await this.listener?.end().catch(() => {});
    await this.db.destroy();
  }
}

export function jobId(forge: string, forgeJobId: string): string {
  return `${forge}:${forgeJobId}`;
}
