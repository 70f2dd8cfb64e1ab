import assert from 'node:assert/strict';
import { it } from 'node:test';
import { formatDuration, summaryTable } from '../../src/workflow/report.ts';
import type { FinishedJob, StepOutcome } from '../../src/workflow/runner/plan-runner.ts';

const shape = { cpus: 1, memoryMib: 512, image: 'debian' };
const job = (key: string, result: FinishedJob['result'], extra: Partial<FinishedJob> = {}): FinishedJob => ({
  key,
  result,
  allowFailure: false,
  outputs: {},
  steps: [],
  durationMs: 0,
  shape,
  ...extra,
});
const step = (name: string, result: StepOutcome['result'], extra: Partial<StepOutcome> = {}): StepOutcome => ({ name, result, durationMs: 1000, ...extra });

it('formats durations for a table column', () => {
  assert.equal(formatDuration(undefined), '-');
  assert.equal(formatDuration(420), '0.4s');
  assert.equal(formatDuration(59_940), '59.9s');
  assert.equal(formatDuration(125_000), '2m 05s');
  assert.equal(formatDuration(3_725_000), '1h 02m');
});

it("shows each job's mark, result, duration, boot time and steps, naming failed steps and why, with totals", () => {
  const table = summaryTable([
    job('build (plain)', 'success', {
      durationMs: 12_345,
      bootMs: 2_100,
      steps: [step('checkout', 'success'), step('make', 'success'), step('flaky', 'failure', { failedButContinued: true }), step('cleanup', 'skipped')],
    }),
    job('lint', 'failure', {
      allowFailure: true,
      durationMs: 8_000,
      bootMs: 2_000,
      steps: [step('before_script', 'success'), step('script', 'failure'), step('after_script', 'success')],
    }),
    job('unsupported', 'failure', { durationMs: 3, reason: 'wf.yml:6:15: the action foo/bar@v1 cannot run under hearth run' }),
    job('deploy', 'skipped', { durationMs: 1, reason: 'if: success() is false (lint failed)' }),
    job('m (2)', 'cancelled', { reason: 'fail-fast: another job of its matrix failed' }),
    job('slow', 'failure', {
      durationMs: 125_000,
      bootMs: 1_500,
      steps: [step('script', 'failure')],
      reason: "execution took longer than the job's timeout of 2m; the VM was destroyed",
    }),
  ]);
  assert.equal(
    table,
    [
      '   JOB            RESULT             TIME    BOOT  STEPS',
      '✓  build (plain)  success            12.3s   2.1s  2 passed, 1 failed, continued (flaky), 1 skipped',
      '✗  lint           failure (allowed)  8.0s    2.0s  2 passed, 1 failed (script)',
      '✗  unsupported    failure            0.0s    -     wf.yml:6:15: the action foo/bar@v1 cannot run under hearth run',
      '-  deploy         skipped            -       -     if: success() is false (lint failed)',
      '✗  m (2)          cancelled          -       -     fail-fast: another job of its matrix failed',
      "✗  slow           failure            2m 05s  1.5s  1 failed (script); execution took longer than the job's timeout of 2m; the VM was destroyed",
      '',
      '6 job(s): 1 passed, 3 failed (1 allowed), 1 cancelled, 1 skipped',
    ].join('\n'),
  );
});

it('an empty run still says so', () => {
  assert.equal(summaryTable([]), '   JOB  RESULT  TIME  BOOT  STEPS\n\n0 job(s): none');
});
