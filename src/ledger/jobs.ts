import type { Transaction } from 'kysely';
import type { ForgeKind } from '../forge/forge.ts';
import { encodeShape, toJob, type Job, type JobShape } from './job.ts';
import {
  countFinalizers,
  countJobsByState,
  deleteFinalizer,
  insertDelivery,
  insertFinalizer,
  insertJobEvent,
  insertQueuedJob,
  markJobReleased,
  selectFinalizers,
  selectFinishedJobsSince,
  selectJob,
  selectJobEvents,
  selectJobsByIds,
  selectJobsInStates,
  selectJobsOnHost,
  selectJobsPage,
  selectJobsStuckIn,
  selectQueuedForPlacement,
  selectUnreleasedFinalJobs,
  selectUnreleasedFinalOffHosts,
  updateJobResources,
  updateJobState,
  type FinalizerRow,
  type JobFilter,
  type JobResources,
} from './plans.ts';
import type { FinalizerKind, LedgerSchema } from './schema.ts';
import { stageOfTransition, type Stage } from './stages.ts';
import { FINAL_STATES, type JobState } from './states.ts';
import type { LedgerStore } from './store.ts';
import type { WriteQueue } from './write-queue.ts';

export interface NewJob {
  readonly forge: ForgeKind;
  readonly forgeJobId: string;
  readonly repository: string;
  readonly labels: readonly string[];
  readonly name?: string | undefined;
  /** Computed once at ingest (controller/ingest.ts `admitJob`) and stored with the job. */
  readonly shape: JobShape;
}

/** The forge's verdict on an ended job, kept for Insights. */
export interface JobVerdict {
  readonly conclusion?: string | undefined;
  readonly failedStep?: string | undefined;
}

/** What a webhook asks of the ledger, applied in the same transaction that records the delivery. */
export type WebhookEffect =
  | { readonly kind: 'enqueue'; readonly job: NewJob; readonly reason: string }
  | {
      readonly kind: 'transition';
      readonly id: string;
      readonly to: JobState;
      readonly reason: string;
      readonly ranOn?: string | undefined;
      readonly verdict?: JobVerdict;
    }
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

/** Placement's answer for one queued job: a host and shape, or stay queued. */
export type PlacementChoice = { readonly host: string; readonly cpus: number; readonly memoryMib: number; readonly reason: string } | undefined;

export interface TimelineEntry {
  readonly from: JobState | null;
  readonly to: JobState;
  readonly reason: string;
  readonly at: string;
  readonly stage: string | null;
}

/** A cleanup duty: a VM to destroy on `host`, or a registration to remove. */
export interface Finalizer {
  readonly jobId: string;
  readonly kind: FinalizerKind;
  readonly ref: string;
  readonly host: string | null;
  readonly createdAt: string;
}

function toFinalizer(row: FinalizerRow): Finalizer {
  return { jobId: row.job_id, kind: row.kind, ref: row.ref, host: row.host, createdAt: row.created_at };
}

export function jobId(forge: string, forgeJobId: string): string {
  return `${forge}:${forgeJobId}`;
}

/**
 * The job operations: one state machine per job, every transition with its
 * time and reason (the stage timeline), and the cleanup duties each job holds.
 * Writes go through the write queue; reads return typed jobs.
 */
export class JobOperations {
  constructor(
    private readonly store: LedgerStore,
    private readonly writes: WriteQueue,
  ) {}

  private get db() {
    return this.store.db;
  }

  /** Records a delivery once; false for a redelivery, which must then change nothing. */
  recordDelivery(forge: string, deliveryId: string, event: string): Promise<boolean> {
    return insertDelivery(this.db, { id: `${forge}:${deliveryId}`, forge, event, received_at: this.store.now() });
  }

  /** Adds a queued job (idempotent); returns its ledger id and whether it is new. */
  enqueue(job: NewJob, reason: string): Promise<{ id: string; created: boolean }> {
    return this.writes.write((tx) => this.enqueueIn(tx, job, reason));
  }

  private async enqueueIn(tx: Transaction<LedgerSchema>, job: NewJob, reason: string): Promise<{ id: string; created: boolean }> {
    const id = jobId(job.forge, job.forgeJobId);
    const at = this.store.now();
    const created = await insertQueuedJob(tx, {
      id,
      forge: job.forge,
      forge_job_id: job.forgeJobId,
      repository: job.repository,
      labels: JSON.stringify(job.labels),
      shape: encodeShape(job.shape),
      job_name: job.name ?? null,
      created_at: at,
      updated_at: at,
    });
    if (created) await insertJobEvent(tx, { job_id: id, from_state: null, to_state: 'queued', reason, at, stage: 'received' });
    return { id, created };
  }

  /**
   * Moves a job to `to` if the state machine allows it from where the job is;
   * returns false (changing nothing) when it does not, e.g. `running` after `completed`.
   */
  transition(id: string, to: JobState, reason: string, extra: TransitionExtra = {}): Promise<boolean> {
    return this.writes.write((tx) => this.transitionIn(tx, id, to, reason, extra));
  }

  private async transitionIn(tx: Transaction<LedgerSchema>, id: string, to: JobState, reason: string, extra: TransitionExtra = {}): Promise<boolean> {
    const at = this.store.now();
    const from = await updateJobState(tx, id, to, at, {
      ...(extra.vmId !== undefined ? { vm_id: extra.vmId } : {}),
      ...(extra.runnerName !== undefined ? { runner_name: extra.runnerName } : {}),
      ...(extra.runnerId !== undefined ? { runner_id: extra.runnerId } : {}),
      ...(extra.ranOn !== undefined ? { ran_on: extra.ranOn } : {}),
      ...(extra.error !== undefined ? { last_error: extra.error } : {}),
      ...(extra.attempt ? { attempt: true } : {}),
      ...(extra.verdict?.conclusion !== undefined ? { conclusion: extra.verdict.conclusion } : {}),
      ...(extra.verdict?.failedStep !== undefined ? { failed_step: extra.verdict.failedStep } : {}),
      ...(extra.placement !== undefined
        ? { host: extra.placement?.host ?? null, cpus: extra.placement?.cpus ?? null, memory_mib: extra.placement?.memoryMib ?? null }
        : {}),
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
    return this.writes.write((tx) => this.applyWebhook(tx, delivery, effect));
  }

  private async applyWebhook(tx: Transaction<LedgerSchema>, delivery: WebhookRecord, effect: WebhookEffect): Promise<WebhookResult> {
    const fresh = await insertDelivery(tx, {
      id: `${delivery.forge}:${delivery.deliveryId}`,
      forge: delivery.forge,
      event: delivery.event,
      received_at: this.store.now(),
    });
    if (!fresh) return { duplicate: true, changed: false };
    if (effect.kind === 'enqueue') {
      const { id, created } = await this.enqueueIn(tx, effect.job, effect.reason);
      return { duplicate: false, changed: created, jobId: id };
    }
    if (effect.kind === 'finish') {
      const { id, created } = await this.enqueueIn(tx, effect.job, `${effect.reason} (before Hearth saw it queued)`);
      const moved = await this.transitionIn(tx, id, effect.to, effect.reason, { verdict: effect.verdict });
      if (created && moved) await markJobReleased(tx, id, this.store.now());
      return { duplicate: false, changed: created || moved, jobId: id };
    }
    if (effect.kind === 'transition')
      return {
        duplicate: false,
        changed: await this.transitionIn(tx, effect.id, effect.to, effect.reason, {
          ...(effect.ranOn ? { ranOn: effect.ranOn } : {}),
          verdict: effect.verdict,
        }),
        jobId: effect.id,
      };
    return { duplicate: false, changed: false };
  }

  /** A step on the timeline that is not a state change (VM ready, runner exited), marking `stage` if given. */
  async note(id: string, reason: string, resources?: JobResources, stage: Stage | null = null): Promise<void> {
    const at = this.store.now();
    await this.writes.write(async (tx) => {
      const job = await selectJob(tx, id);
      if (!job) return;
      if (resources) await updateJobResources(tx, id, at, resources);
      await insertJobEvent(tx, { job_id: id, from_state: job.state, to_state: job.state, reason, at, stage });
    });
  }

  /**
   * The job now holds something outside the ledger (a VM, a registration): its
   * columns, a timeline note and the cleanup duty are written in one transaction,
   * so whoever finds the job later (a restart, another replica) finds the duty.
   */
  async hold(
    id: string,
    finalizer: { kind: FinalizerKind; ref: string; host: string | null },
    reason: string,
    resources: JobResources,
    stage: Stage | null = null,
  ): Promise<void> {
    const at = this.store.now();
    await this.writes.write(async (tx) => {
      const job = await selectJob(tx, id);
      if (!job) return;
      await insertFinalizer(tx, { job_id: id, kind: finalizer.kind, ref: finalizer.ref, host: finalizer.host, created_at: at });
      await updateJobResources(tx, id, at, resources);
      await insertJobEvent(tx, { job_id: id, from_state: job.state, to_state: job.state, reason, at, stage });
    });
  }

  /** A duty carried out (idempotent): false when it was already gone. */
  finalized(finalizer: Pick<Finalizer, 'jobId' | 'kind' | 'ref'>): Promise<boolean> {
    return this.writes.write((tx) => deleteFinalizer(tx, { job_id: finalizer.jobId, kind: finalizer.kind, ref: finalizer.ref }));
  }

  /** Duties not carried out yet: all, or those of some jobs. */
  async finalizers(jobIds?: readonly string[]): Promise<Finalizer[]> {
    return (await selectFinalizers(this.db, jobIds)).map(toFinalizer);
  }

  /** Marks a final job's VM and registration as gone; true the first time only, and never while a duty remains. */
  async release(id: string, reason: string): Promise<boolean> {
    const at = this.store.now();
    return this.writes.write(async (tx) => {
      const job = await selectJob(tx, id);
      if (!job || (await countFinalizers(tx, id)) > 0 || !(await markJobReleased(tx, id, at))) return false;
      await insertJobEvent(tx, { job_id: id, from_state: job.state, to_state: job.state, reason, at, stage: 'released' });
      return true;
    });
  }

  async inStates(states: readonly JobState[]): Promise<Job[]> {
    return (await selectJobsInStates(this.db, states)).map(toJob);
  }

  async unreleasedFinal(): Promise<Job[]> {
    return (await selectUnreleasedFinalJobs(this.db, FINAL_STATES)).map(toJob);
  }

  async countByState(): Promise<Record<string, number>> {
    const rows = await countJobsByState(this.db);
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.count)]));
  }

  async job(id: string): Promise<Job | undefined> {
    const row = await selectJob(this.db, id);
    return row ? toJob(row) : undefined;
  }

  async timeline(id: string): Promise<TimelineEntry[]> {
    return (await selectJobEvents(this.db, id)).map((e) => ({ from: e.from_state, to: e.to_state, reason: e.reason, at: e.at, stage: e.stage }));
  }

  /** A page of jobs, newest first; pass the last job of a page as `after` for the next one. */
  async jobs(limit: number, after?: { created_at: string; id: string }, filter?: JobFilter): Promise<Job[]> {
    return (await selectJobsPage(this.db, Math.min(Math.max(1, limit), 10_000), after, filter)).map(toJob);
  }

  /** Jobs that ended in the last `days` days (at most `limit`, newest first). */
  finishedSince(days: number, limit = 20_000) {
    return selectFinishedJobsSince(this.db, this.store.ago(days * 86_400_000), limit);
  }

  async stuckIn(state: JobState, olderThanMs: number): Promise<Job[]> {
    return (await selectJobsStuckIn(this.db, state, this.store.ago(olderThanMs))).map(toJob);
  }

  /**
   * Places up to `limit` queued jobs in one transaction: `choose` sees them
   * oldest first and names a host for each it can place. On PostgreSQL the rows
   * are locked with SKIP LOCKED for the transaction, so no job is placed twice.
   */
  async placeQueued(limit: number, choose: (jobs: Job[]) => Promise<Map<string, PlacementChoice>>): Promise<{ id: string; host: string }[]> {
    return this.db.transaction().execute(async (tx) => {
      const jobs = (await selectQueuedForPlacement(tx, limit, this.store.dialect === 'postgres')).map(toJob);
      if (jobs.length === 0) return [];
      const choices = await choose(jobs);
      const placed: { id: string; host: string }[] = [];
      for (const job of jobs) {
        const choice = choices.get(job.id);
        if (!choice) continue;
        if (await this.transitionIn(tx, job.id, 'claimed', choice.reason, { placement: { host: choice.host, cpus: choice.cpus, memoryMib: choice.memoryMib } }))
          placed.push({ id: job.id, host: choice.host });
      }
      return placed;
    });
  }

  async jobsByIds(ids: readonly string[]): Promise<Job[]> {
    return (await selectJobsByIds(this.db, ids)).map(toJob);
  }

  async jobsOnHost(host: string, states: readonly JobState[]): Promise<Job[]> {
    return (await selectJobsOnHost(this.db, host, states)).map(toJob);
  }

  /** Ended jobs not torn down whose host is gone (or that never had one). */
  async unreleasedFinalOffHosts(upHosts: readonly string[]): Promise<Job[]> {
    return (await selectUnreleasedFinalOffHosts(this.db, FINAL_STATES, upHosts)).map(toJob);
  }
}
