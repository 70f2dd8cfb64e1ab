import type { Kysely } from 'kysely';
import { HostOperations, type HostInfo } from './hosts.ts';
import type { Host, Job } from './job.ts';
import {
  JobOperations,
  type Finalizer,
  type NewJob,
  type PlacementChoice,
  type TimelineEntry,
  type TransitionExtra,
  type WebhookEffect,
  type WebhookRecord,
  type WebhookResult,
} from './jobs.ts';
import type { LedgerDialect } from './migrations.ts';
import { Notifier, type WakeChannel } from './notifier.ts';
import type { JobFilter, JobResources } from './plans.ts';
import type { FinalizerKind, LedgerSchema } from './schema.ts';
import type { Stage } from './stages.ts';
import type { JobState } from './states.ts';
import { LedgerStore, warnToStderr, type StoreTarget, type StoreWarn } from './store.ts';
import { WriteQueue } from './write-queue.ts';

export type { Host, HostRow, Job, JobRow, JobShape } from './job.ts';
export type { HostInfo } from './hosts.ts';
export {
  jobId,
  type Finalizer,
  type JobVerdict,
  type NewJob,
  type PlacementChoice,
  type TimelineEntry,
  type TransitionExtra,
  type WebhookEffect,
  type WebhookRecord,
  type WebhookResult,
} from './jobs.ts';

/**
 * The durable store as callers see it: one facade over the roles, each in its
 * own file as pg-boss splits its manager, maintenance and plans:
 * - store.ts: the store and its dialect (open SQLite/PostgreSQL, migrate, close)
 * - write-queue.ts: group commit of every write
 * - notifier.ts: wake-ups between replicas (LISTEN/NOTIFY)
 * - jobs.ts and hosts.ts: the operations, returning typed jobs and hosts
 * - plans.ts: every SQL statement, one named function each
 */
export class Ledger {
  readonly db: Kysely<LedgerSchema>;
  readonly dialect: LedgerDialect;
  private readonly jobOps: JobOperations;
  private readonly hostOps: HostOperations;
  private readonly notifier: Notifier;

  private constructor(
    private readonly store: LedgerStore,
    warn: StoreWarn,
  ) {
    this.db = store.db;
    this.dialect = store.dialect;
    this.jobOps = new JobOperations(store, new WriteQueue(store.db));
    this.hostOps = new HostOperations(store);
    this.notifier = new Notifier(store.db, store.dialect, store.url, warn);
  }

  /** The store `store.url` names: a SQLite file, or a PostgreSQL database shared by replicas. */
  static async open(target: StoreTarget, clock?: () => Date, warn: StoreWarn = warnToStderr): Promise<Ledger> {
    return new Ledger(await LedgerStore.open(target, clock, warn), warn);
  }

  static async openPostgres(url: string, clock?: () => Date, poolSize = 10, warn: StoreWarn = warnToStderr): Promise<Ledger> {
    return new Ledger(await LedgerStore.openPostgres(url, clock, poolSize, warn), warn);
  }

  static async openSqlite(path: string, clock?: () => Date): Promise<Ledger> {
    return new Ledger(await LedgerStore.openSqlite(path, clock), warnToStderr);
  }

  // ---- jobs ---------------------------------------------------------------

  recordDelivery(forge: string, deliveryId: string, event: string): Promise<boolean> {
    return this.jobOps.recordDelivery(forge, deliveryId, event);
  }

  enqueue(job: NewJob, reason: string): Promise<{ id: string; created: boolean }> {
    return this.jobOps.enqueue(job, reason);
  }

  transition(id: string, to: JobState, reason: string, extra: TransitionExtra = {}): Promise<boolean> {
    return this.jobOps.transition(id, to, reason, extra);
  }

  recordWebhook(delivery: WebhookRecord, effect: WebhookEffect): Promise<WebhookResult> {
    return this.jobOps.recordWebhook(delivery, effect);
  }

  note(id: string, reason: string, resources?: JobResources, stage: Stage | null = null): Promise<void> {
    return this.jobOps.note(id, reason, resources, stage);
  }

  hold(
    id: string,
    finalizer: { kind: FinalizerKind; ref: string; host: string | null },
    reason: string,
    resources: JobResources,
    stage: Stage | null = null,
  ): Promise<void> {
    return this.jobOps.hold(id, finalizer, reason, resources, stage);
  }

  finalized(finalizer: Pick<Finalizer, 'jobId' | 'kind' | 'ref'>): Promise<boolean> {
    return this.jobOps.finalized(finalizer);
  }

  finalizers(jobIds?: readonly string[]): Promise<Finalizer[]> {
    return this.jobOps.finalizers(jobIds);
  }

  release(id: string, reason: string): Promise<boolean> {
    return this.jobOps.release(id, reason);
  }

  inStates(states: readonly JobState[]): Promise<Job[]> {
    return this.jobOps.inStates(states);
  }

  unreleasedFinal(): Promise<Job[]> {
    return this.jobOps.unreleasedFinal();
  }

  countByState(): Promise<Record<string, number>> {
    return this.jobOps.countByState();
  }

  job(id: string): Promise<Job | undefined> {
    return this.jobOps.job(id);
  }

  timeline(id: string): Promise<TimelineEntry[]> {
    return this.jobOps.timeline(id);
  }

  jobs(limit: number, after?: { created_at: string; id: string }, filter?: JobFilter): Promise<Job[]> {
    return this.jobOps.jobs(limit, after, filter);
  }

  finishedSince(days: number, limit?: number) {
    return this.jobOps.finishedSince(days, limit);
  }

  stuckIn(state: JobState, olderThanMs: number): Promise<Job[]> {
    return this.jobOps.stuckIn(state, olderThanMs);
  }

  placeQueued(limit: number, choose: (jobs: Job[]) => Promise<Map<string, PlacementChoice>>): Promise<{ id: string; host: string }[]> {
    return this.jobOps.placeQueued(limit, choose);
  }

  jobsByIds(ids: readonly string[]): Promise<Job[]> {
    return this.jobOps.jobsByIds(ids);
  }

  jobsOnHost(host: string, states: readonly JobState[]): Promise<Job[]> {
    return this.jobOps.jobsOnHost(host, states);
  }

  unreleasedFinalOffHosts(upHosts: readonly string[]): Promise<Job[]> {
    return this.jobOps.unreleasedFinalOffHosts(upHosts);
  }

  // ---- hosts --------------------------------------------------------------

  registerHost(host: HostInfo): Promise<void> {
    return this.hostOps.registerHost(host);
  }

  heartbeatHost(id: string, pool: { cpus: number; memoryMib: number }): Promise<string | undefined> {
    return this.hostOps.heartbeatHost(id, pool);
  }

  markHostLost(id: string, timeoutMs: number): Promise<boolean> {
    return this.hostOps.markHostLost(id, timeoutMs);
  }

  markHostLeft(id: string): Promise<boolean> {
    return this.hostOps.markHostLeft(id);
  }

  hosts(): Promise<Host[]> {
    return this.hostOps.hosts();
  }

  liveHosts(timeoutMs: number): Promise<Host[]> {
    return this.hostOps.liveHosts(timeoutMs);
  }

  committedByHost(): Promise<Map<string, { cpus: number; memoryMib: number }>> {
    return this.hostOps.committedByHost();
  }

  // ---- wake-ups -----------------------------------------------------------

  notify(channel: WakeChannel, payload = ''): Promise<void> {
    return this.notifier.notify(channel, payload);
  }

  subscribe(channel: WakeChannel, onWake: (payload: string) => void): void {
    this.notifier.subscribe(channel, onWake);
  }

  async close(): Promise<void> {
    await this.notifier.close();
    await this.store.close();
  }
}
