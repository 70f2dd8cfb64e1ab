import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { computeInsights, percentile, suggestTimeoutMinutes, type FinishedJob } from '../../src/ledger/insights.ts';

const T0 = Date.parse('2026-11-01T00:00:00Z');
const at = (seconds: number): string => new Date(T0 + seconds * 1000).toISOString();

function job(over: Partial<FinishedJob> & { queue?: number; run?: number }): FinishedJob {
  const queue = over.queue ?? 10;
  const run = over.run ?? 60;
  return {
    repository: 'octo/app',
    job_name: 'build',
    state: 'completed',
    conclusion: 'success',
    failed_step: null,
    pool: null,
    pool_hit: null,
    created_at: at(0),
    started_at: at(queue),
    finished_at: at(queue + run),
    ...over,
  };
}

describe('insights', () => {
  test('nearest-rank percentiles', () => {
    assert.equal(percentile([], 50), null);
    assert.equal(percentile([7], 95), 7);
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.equal(percentile(hundred, 50), 50);
    assert.equal(percentile(hundred, 95), 95);
  });

  test('groups by repository and job name with queue and run percentiles, failure rate and the steps that fail most', () => {
    const jobs = [
      ...Array.from({ length: 8 }, (_, i) => job({ queue: i + 1, run: 100 + i * 10 })),
      job({ conclusion: 'failure', failed_step: 'Run tests', run: 30 }),
      job({ conclusion: 'failure', failed_step: 'Run tests', run: 40 }),
      job({ conclusion: 'failure', failed_step: 'Lint', run: 20 }),
      job({ job_name: 'deploy', repository: 'octo/app', conclusion: 'failed', failed_step: 'script_failure' }),
      // Hearth failed it before the forge gave a verdict: a failure with no step.
      job({ job_name: 'deploy', state: 'failed', conclusion: null, started_at: null }),
    ];
    const { groups } = computeInsights(jobs);
    assert.deepEqual(
      groups.map((g) => [g.repository, g.name, g.runs, g.failures]),
      [
        ['octo/app', 'build', 11, 3],
        ['octo/app', 'deploy', 2, 2],
      ],
    );
    const build = groups[0]!;
    assert.equal(build.failureRate, 3 / 11);
    assert.deepEqual(build.topFailingSteps, [
      { step: 'Run tests', count: 2 },
      { step: 'Lint', count: 1 },
    ]);
    assert.equal(build.queueSeconds.p50, 6, 'eleven queue times 1..8, 10, 10, 10: the sixth');
    assert.equal(build.runSeconds.p95, 170);
    // p95 of 170 s with half again as headroom is 255 s: 5 minutes (the floor).
    assert.equal(build.suggestedTimeoutMinutes, 5);
    const deploy = groups[1]!;
    assert.equal(deploy.suggestedTimeoutMinutes, null, 'two runs are too few for a suggestion');
    assert.deepEqual(deploy.topFailingSteps, [{ step: 'script_failure', count: 1 }]);
    assert.equal(deploy.queueSeconds.p50, 10, 'a job that never started has no queue time');
  });

  test('suggests a timeout from the run-time distribution, with headroom over the p95', () => {
    assert.equal(suggestTimeoutMinutes([60, 60, 60, 60]), null);
    const runs = [...Array.from({ length: 19 }, () => 20 * 60), 40 * 60];
    // p95 of twenty runs is the 19th (20 min); 1.5 times is 30 min.
    assert.equal(suggestTimeoutMinutes(runs), 30);
    assert.equal(suggestTimeoutMinutes([...runs, 90 * 60, 90 * 60]), 135);
  });

  test('cancelled runs count as runs but not toward the run-time distribution', () => {
    const { groups } = computeInsights([job({ run: 10 }), job({ conclusion: 'cancelled', run: 5000 })]);
    assert.equal(groups[0]!.runs, 2);
    assert.equal(groups[0]!.runSeconds.p95, 10);
    assert.equal(groups[0]!.failures, 0);
  });

  test('pool hit rate per pool', () => {
    const { pools } = computeInsights([
      job({ pool: 'fast', pool_hit: 1 }),
      job({ pool: 'fast', pool_hit: 1 }),
      job({ pool: 'fast', pool_hit: 0 }),
      job({ pool: 'big', pool_hit: 0 }),
      job({}),
    ]);
    assert.deepEqual(pools, [
      { pool: 'big', hits: 0, misses: 1, hitRate: 0 },
      { pool: 'fast', hits: 2, misses: 1, hitRate: 2 / 3 },
    ]);
  });
});
