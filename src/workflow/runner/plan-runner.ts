import { hostCapacity } from '../../scheduler/capacity.ts';
import { shapeFromLabels, type VmShape } from '../../scheduler/labels.ts';
import type { Plan, PlannedJob } from '../model.ts';

export type JobResult = 'success' | 'failure' | 'cancelled' | 'skipped';

export interface StepOutcome {
  readonly name: string;
  readonly result: 'success' | 'failure' | 'skipped';
  /** A failed step that continue-on-error turned into success. */
  readonly failedButContinued?: boolean;
  readonly durationMs: number;
}

export interface JobOutcome {
  readonly result: JobResult;
  readonly outputs: Readonly<Record<string, string>>;
  readonly steps: readonly StepOutcome[];
  readonly bootMs?: number;
  /** Why, for skipped, cancelled or failed-before-steps jobs. */
  readonly reason?: string;
}

export interface FinishedJob extends JobOutcome {
  readonly key: string;
  readonly allowFailure: boolean;
  readonly durationMs: number;
  readonly shape: VmShape;
}

export interface JobRun {
  readonly job: PlannedJob;
  readonly shape: VmShape;
  /** Outcomes of this job's needs, by key. */
  readonly needs: Readonly<Record<string, FinishedJob>>;
  /**
   * Outcomes of every job it needs directly or through others, by key: on
   * GitHub a failure or skip anywhere up the chain decides success()/failure().
   */
  readonly ancestors: Readonly<Record<string, FinishedJob>>;
  /** Aborted when the job must stop early (fail-fast, Ctrl-C). */
  readonly signal: AbortSignal;
}

export interface PlanRunOptions {
  /** Runs one job in its own VM; decides itself whether it runs at all (if:, when:). */
  readonly executeJob: (run: JobRun) => Promise<JobOutcome>;
  /** Host capacity for concurrent VMs; default: 2 vCPUs per host core, 75 % of RAM. */
  readonly capacity?: { readonly cpus: number; readonly memoryMib: number };
  /** At most this many jobs at once. */
  readonly maxJobs?: number;
  readonly signal?: AbortSignal;
  /** Told whenever a job starts or finishes: the keys running now, how many finished. */
  readonly onProgress?: (running: readonly string[], finished: number, total: number) => void;
}

interface Group {
  running: number;
  failed: boolean;
}

/**
 * Runs a plan's jobs as their needs allow, as many at once as the host's
 * capacity holds, starting them in plan order (a job that does not fit makes
 * later ones wait rather than jump the queue). fail-fast and max-parallel apply
 * per matrix group.
 */
export async function runPlan(plan: Plan, options: PlanRunOptions): Promise<FinishedJob[]> {
  const capacity = options.capacity ?? hostCapacity();
  const maxJobs = options.maxJobs ?? Number.POSITIVE_INFINITY;
  const shapes = new Map(plan.jobs.map((job) => [job.key, shapeFromLabels(job.labels).shape]));
  const finished = new Map<string, FinishedJob>();
  const pending = [...plan.jobs];
  const running = new Map<string, { promise: Promise<void>; controller: AbortController; shape: VmShape }>();
  const groups = new Map<string, Group>();
  const groupOf = (job: PlannedJob): Group | undefined => {
    if (job.body.kind !== 'github' || job.body.strategy.jobTotal <= 1) return undefined;
    let group = groups.get(job.body.strategy.group);
    if (!group) groups.set(job.body.strategy.group, (group = { running: 0, failed: false }));
    return group;
  };
  const used = (): { cpus: number; memoryMib: number } => {
    let c = 0;
    let m = 0;
    for (const r of running.values()) {
      c += r.shape.cpus;
      m += r.shape.memoryMib;
    }
    return { cpus: c, memoryMib: m };
  };
  const byKey = new Map(plan.jobs.map((job) => [job.key, job]));
  const ancestorKeys = (job: PlannedJob, into = new Set<string>()): Set<string> => {
    for (const key of job.needs) {
      if (into.has(key)) continue;
      into.add(key);
      const needed = byKey.get(key);
      if (needed) ancestorKeys(needed, into);
    }
    return into;
  };
  const finish = (job: PlannedJob, outcome: JobOutcome, started: number): void => {
    finished.set(job.key, { ...outcome, key: job.key, allowFailure: job.allowFailure, durationMs: Date.now() - started, shape: shapes.get(job.key)! });
  };
  options.signal?.addEventListener('abort', () => {
    for (const r of running.values()) r.controller.abort();
  });

  let wake: () => void = () => {};
  for (;;) {
    for (let i = 0; i < pending.length;) {
      const job = pending[i]!;
      if (!job.needs.every((key) => finished.has(key))) {
        i++;
        continue;
      }
      const group = groupOf(job);
      if (options.signal?.aborted || (group?.failed && job.body.kind === 'github' && job.body.strategy.failFast)) {
        pending.splice(i, 1);
        finish(
          job,
          {
            result: 'cancelled',
            outputs: {},
            steps: [],
            reason: options.signal?.aborted ? 'the run was interrupted' : 'fail-fast: another job of its matrix failed',
          },
          Date.now(),
        );
        continue;
      }
      const shape = shapes.get(job.key)!;
      const now = used();
      const fits = running.size === 0 || (now.cpus + shape.cpus <= capacity.cpus && now.memoryMib + shape.memoryMib <= capacity.memoryMib);
      const groupFull =
        group !== undefined && job.body.kind === 'github' && job.body.strategy.maxParallel !== undefined && group.running >= job.body.strategy.maxParallel;
      if (!fits || running.size >= maxJobs) break;
      if (groupFull) {
        i++;
        continue;
      }
      pending.splice(i, 1);
      const controller = new AbortController();
      const needs = Object.fromEntries(job.needs.map((key) => [key, finished.get(key)!]));
      const ancestors = Object.fromEntries([...ancestorKeys(job)].map((key) => [key, finished.get(key)!]));
      const started = Date.now();
      if (group) group.running++;
      const promise = options
        .executeJob({ job, shape, needs, ancestors, signal: controller.signal })
        .catch((error: unknown): JobOutcome => ({ result: 'failure', outputs: {}, steps: [], reason: (error as Error).message }))
        .then((outcome) => {
          finish(job, outcome, started);
          running.delete(job.key);
          options.onProgress?.([...running.keys()], finished.size, plan.jobs.length);
          if (group) {
            group.running--;
            if (outcome.result === 'failure' && !job.allowFailure) {
              group.failed = true;
              if (job.body.kind === 'github' && job.body.strategy.failFast) {
                for (const [key, r] of running) {
                  const other = plan.jobs.find((j) => j.key === key);
                  if (other && groupOf(other) === group) r.controller.abort();
                }
              }
            }
          }
          wake();
        });
      running.set(job.key, { promise, controller, shape });
      options.onProgress?.([...running.keys()], finished.size, plan.jobs.length);
    }
    if (running.size === 0) break;
    await new Promise<void>((resolve) => (wake = resolve));
  }
  // Jobs never reached (their needs were never satisfiable) are reported, not dropped.
  for (const job of pending) finish(job, { result: 'skipped', outputs: {}, steps: [], reason: 'its needs did not finish' }, Date.now());
  return plan.jobs.map((job) => finished.get(job.key)!);
}

/** Non-zero when a job that is not allowed to fail failed or was cancelled. */
export function planExitCode(results: readonly FinishedJob[]): number {
  return results.some((r) => (r.result === 'failure' || r.result === 'cancelled') && !r.allowFailure) ? 1 : 0;
}
