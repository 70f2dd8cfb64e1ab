import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { PlannedJob } from '../../../src/workflow/model.ts';
import { runGitlabJob } from '../../../src/workflow/runner/gitlab-job.ts';
import type { FinishedJob } from '../../../src/workflow/runner/plan-runner.ts';
import type { VmDriver } from '../../../src/vm/driver.ts';

const shape = { cpus: 1, memoryMib: 512, image: 'debian' };
const job = (key: string, when: 'on_success' | 'on_failure' | 'always'): PlannedJob => ({
  key,
  name: key,
  needs: ['b'],
  labels: [],
  timeoutMinutes: 1,
  allowFailure: false,
  location: { file: '.gitlab-ci.yml', line: 1, column: 1 },
  body: { kind: 'gitlab', stage: 'test', variables: {}, beforeScript: [], script: ['true'], afterScript: [], when },
});
const need = (result: FinishedJob['result']): FinishedJob => ({ key: 'b', result, outputs: {}, steps: [], allowFailure: false, durationMs: 0, shape });
const noVms = { boot: () => Promise.reject(new Error('must not boot')) } as unknown as VmDriver;
const env = { driver: noVms, repoRoot: '/nowhere', write: () => {}, planOptions: { repoRoot: '/nowhere', manual: false, variables: {}, ref: 'main', source: 'push' }, secrets: {}, network: false };

it('skips a job whose need was skipped, so a failure at the head of a chain stops the whole chain', async () => {
  const run = (when: 'on_success' | 'on_failure' | 'always', result: FinishedJob['result']) =>
    runGitlabJob({ job: job('c', when), shape, needs: { b: need(result) }, signal: new AbortController().signal }, env);
  assert.deepEqual(await run('on_success', 'skipped'), { result: 'skipped', outputs: {}, steps: [], reason: 'a job it needs was skipped' });
  assert.equal((await run('on_success', 'failure')).reason, 'a job it needs failed');
  assert.equal((await run('on_failure', 'success')).result, 'skipped');
  await assert.rejects(run('always', 'skipped'), /must not boot/, 'when: always runs regardless');
});
