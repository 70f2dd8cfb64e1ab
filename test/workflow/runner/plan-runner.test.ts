import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { GithubJobBody, Plan, PlannedJob } from '../../../src/workflow/model.ts';
import { planExitCode, runPlan, type JobOutcome, type JobRun } from '../../../src/workflow/runner/plan-runner.ts';

const location = { file: 'ci.yml', line: 1, column: 1 };

function job(
  key: string,
  options: { needs?: string[]; group?: string; total?: number; failFast?: boolean; maxParallel?: number; labels?: string[]; allowFailure?: boolean } = {},
): PlannedJob {
  const body: GithubJobBody = {
    kind: 'github',
    jobId: options.group ?? key,
    matrix: {},
    strategy: {
      group: options.group ?? key,
      failFast: options.failFast ?? true,
      jobIndex: 0,
      jobTotal: options.total ?? 1,
      ...(options.maxParallel ? { maxParallel: options.maxParallel } : {}),
    },
    workflowEnv: {},
    jobEnv: {},
    defaults: {},
    outputs: {},
    steps: [],
  };
  return {
    key,
    name: key,
    needs: options.needs ?? [],
    labels: options.labels ?? ['1cpu', '512mb'],
    timeoutMinutes: 5,
    allowFailure: options.allowFailure ?? false,
    location,
    body,
  };
}

function plan(jobs: PlannedJob[]): Plan {
  return { forge: 'github', file: 'ci.yml', jobs, skipped: [] };
}

/** An executor that records start order and concurrency, finishing each job after `ms`. */
function recorder(results: Record<string, JobOutcome['result']> = {}, ms = 20) {
  const started: string[] = [];
  let running = 0;
  let peak = 0;
  const executeJob = async (run: JobRun): Promise<JobOutcome> => {
    started.push(run.job.key);
    running++;
    peak = Math.max(peak, running);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      run.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    running--;
    if (run.signal.aborted) return { result: 'cancelled', outputs: {}, steps: [] };
    return { result: results[run.job.key] ?? 'success', outputs: { from: run.job.key }, steps: [] };
  };
  return { executeJob, started, peak: () => peak };
}

it('starts a job only after its needs and hands it their outcomes', async () => {
  const seen: Record<string, string[]> = {};
  const results = await runPlan(plan([job('c', { needs: ['a', 'b'] }), job('a'), job('b')]), {
    executeJob: async (run) => {
      seen[run.job.key] = Object.keys(run.needs);
      return { result: 'success', outputs: {}, steps: [] };
    },
  });
  assert.deepEqual(seen.c, ['a', 'b']);
  assert.deepEqual(
    results.map((r) => r.key),
    ['c', 'a', 'b'],
  );
  assert.equal(planExitCode(results), 0);
});

it('never runs more than the capacity allows, starting jobs in plan order', async () => {
  const rec = recorder();
  const jobs = ['j1', 'j2', 'j3', 'j4', 'j5'].map((k) => job(k, { labels: ['2cpu', '512mb'] }));
  await runPlan(plan(jobs), { executeJob: rec.executeJob, capacity: { cpus: 4, memoryMib: 100_000 } });
  assert.equal(rec.peak(), 2);
  assert.deepEqual(rec.started, ['j1', 'j2', 'j3', 'j4', 'j5']);
});

it('fail-fast cancels the rest of a matrix; max-parallel caps it', async () => {
  const rec = recorder({ 'm (1)': 'failure' }, 30);
  const matrix = ['m (1)', 'm (2)', 'm (3)', 'm (4)'].map((k) => job(k, { group: 'm', total: 4, maxParallel: 2 }));
  const results = await runPlan(plan(matrix), { executeJob: rec.executeJob, capacity: { cpus: 100, memoryMib: 100_000 } });
  assert.equal(rec.peak(), 2);
  assert.deepEqual(
    results.map((r) => r.result),
    ['failure', 'cancelled', 'cancelled', 'cancelled'],
  );
  assert.equal(planExitCode(results), 1);
});

it('without fail-fast the other expansions finish; allowed failures keep the exit code 0', async () => {
  const rec = recorder({ 'm (1)': 'failure' });
  const matrix = ['m (1)', 'm (2)'].map((k) => job(k, { group: 'm', total: 2, failFast: false, allowFailure: true }));
  const results = await runPlan(plan(matrix), { executeJob: rec.executeJob });
  assert.deepEqual(
    results.map((r) => r.result),
    ['failure', 'success'],
  );
  assert.equal(planExitCode(results), 0);
});

it('an executor that throws fails its job instead of the run', async () => {
  const results = await runPlan(plan([job('boom'), job('after', { needs: ['boom'] })]), {
    executeJob: async (run) => {
      if (run.job.key === 'boom') throw new Error('VM did not start');
      return { result: run.needs.boom?.result === 'failure' ? 'skipped' : 'success', outputs: {}, steps: [] };
    },
  });
  assert.equal(results[0]?.result, 'failure');
  assert.equal(results[0]?.reason, 'VM did not start');
  assert.equal(results[1]?.result, 'skipped');
});
