import type { LedgerSchema } from './schema.ts';

/** The columns of an ended job that Insights reads. */
export type FinishedJob = Pick<
  LedgerSchema['jobs'],
  'repository' | 'job_name' | 'state' | 'conclusion' | 'failed_step' | 'pool' | 'pool_hit' | 'created_at' | 'started_at' | 'finished_at'
>;

export interface Percentiles {
  readonly p50: number | null;
  readonly p95: number | null;
}

export interface JobGroupInsight {
  readonly repository: string;
  readonly name: string;
  readonly runs: number;
  readonly failures: number;
  readonly failureRate: number;
  /** From the webhook to the forge reporting the job running. */
  readonly queueSeconds: Percentiles;
  /** From running to finished. */
  readonly runSeconds: Percentiles;
  /** A `timeout-minutes` that the slowest normal runs fit under, or null with too few runs. */
  readonly suggestedTimeoutMinutes: number | null;
  readonly topFailingSteps: readonly { readonly step: string; readonly count: number }[];
}

export interface PoolInsight {
  readonly pool: string;
  readonly hits: number;
  readonly misses: number;
  readonly hitRate: number;
}

export interface Insights {
  readonly groups: readonly JobGroupInsight[];
  readonly pools: readonly PoolInsight[];
}

/** Fewer runs than this say too little about a run-time distribution to suggest a timeout. */
export const MIN_RUNS_FOR_TIMEOUT = 5;

/** Nearest-rank percentile of sorted values; null when there are none. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1] ?? null;
}

function percentiles(values: number[]): Percentiles {
  values.sort((a, b) => a - b);
  return { p50: percentile(values, 50), p95: percentile(values, 95) };
}

function seconds(from: string | null, to: string | null): number | null {
  if (!from || !to) return null;
  const value = (Date.parse(to) - Date.parse(from)) / 1000;
  return Number.isFinite(value) && value >= 0 ? value : null;
}

function failed(job: FinishedJob): boolean {
  return job.conclusion === 'failure' || job.conclusion === 'failed' || job.conclusion === 'timed_out' || (job.state === 'failed' && job.conclusion === null);
}

/**
 * A timeout with headroom over the run-time distribution: half again the
 * p95, rounded up to whole minutes, at least 5. Jobs that hit a timeout today
 * would show up in the p95 and pull it up, which is the point: the suggestion
 * follows what the job really needs.
 */
export function suggestTimeoutMinutes(runSeconds: readonly number[]): number | null {
  if (runSeconds.length < MIN_RUNS_FOR_TIMEOUT) return null;
  const p95 =
    percentile(
      [...runSeconds].sort((a, b) => a - b),
      95,
    ) ?? 0;
  return Math.max(5, Math.ceil((p95 * 1.5) / 60));
}

/** Per repository and job name, and per pool, from the jobs that ended in the window. */
export function computeInsights(jobs: readonly FinishedJob[]): Insights {
  const groups = new Map<string, { repository: string; name: string; jobs: FinishedJob[] }>();
  const pools = new Map<string, { hits: number; misses: number }>();
  for (const job of jobs) {
    const name = job.job_name ?? '(unnamed)';
    const key = `${job.repository}\u0000${name}`;
    let group = groups.get(key);
    if (!group) groups.set(key, (group = { repository: job.repository, name, jobs: [] }));
    group.jobs.push(job);
    if (job.pool !== null && job.pool_hit !== null) {
      const pool = pools.get(job.pool) ?? { hits: 0, misses: 0 };
      if (job.pool_hit) pool.hits++;
      else pool.misses++;
      pools.set(job.pool, pool);
    }
  }
  const out: JobGroupInsight[] = [];
  for (const group of groups.values()) {
    const queue: number[] = [];
    const run: number[] = [];
    const steps = new Map<string, number>();
    let failures = 0;
    for (const job of group.jobs) {
      const queued = seconds(job.created_at, job.started_at);
      if (queued !== null) queue.push(queued);
      const ran = seconds(job.started_at, job.finished_at);
      if (ran !== null && job.conclusion !== 'cancelled' && job.conclusion !== 'canceled') run.push(ran);
      if (failed(job)) {
        failures++;
        if (job.failed_step) steps.set(job.failed_step, (steps.get(job.failed_step) ?? 0) + 1);
      }
    }
    out.push({
      repository: group.repository,
      name: group.name,
      runs: group.jobs.length,
      failures,
      failureRate: failures / group.jobs.length,
      queueSeconds: percentiles(queue),
      suggestedTimeoutMinutes: suggestTimeoutMinutes(run),
      runSeconds: percentiles(run),
      topFailingSteps: [...steps]
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
        .slice(0, 5)
        .map(([step, count]) => ({ step, count })),
    });
  }
  out.sort((a, b) => b.runs - a.runs || a.repository.localeCompare(b.repository) || a.name.localeCompare(b.name));
  return {
    groups: out,
    pools: [...pools].sort((a, b) => a[0].localeCompare(b[0])).map(([pool, { hits, misses }]) => ({ pool, hits, misses, hitRate: hits / (hits + misses) })),
  };
}
