import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HearthError } from '../../../src/errors.ts';
import type { PlannedJob } from '../../../src/workflow/model.ts';
import { gitlabSectionsScript, runGitlabJob, SectionClock } from '../../../src/workflow/runner/gitlab-job.ts';
import { JobLog } from '../../../src/workflow/runner/job-log.ts';
import type { FinishedJob } from '../../../src/workflow/runner/plan-runner.ts';
import type { VmDriver } from '../../../src/vm/driver.ts';
import { FakeGuest, type FakeScriptCall } from './fake-guest.ts';

const shape = { cpus: 1, memoryMib: 512, image: 'debian' };
const job = (
  key: string,
  when: 'on_success' | 'on_failure' | 'always',
  extra: { beforeScript?: string[]; script?: string[]; afterScript?: string[]; timeoutMinutes?: number } = {},
): PlannedJob => ({
  key,
  name: key,
  needs: ['b'],
  labels: [],
  timeoutMinutes: extra.timeoutMinutes ?? 1,
  allowFailure: false,
  location: { file: '.gitlab-ci.yml', line: 1, column: 1 },
  body: {
    kind: 'gitlab',
    stage: 'test',
    variables: {},
    beforeScript: extra.beforeScript ?? [],
    script: extra.script ?? ['true'],
    afterScript: extra.afterScript ?? [],
    when,
  },
});
const need = (result: FinishedJob['result']): FinishedJob => ({ key: 'b', result, outputs: {}, steps: [], allowFailure: false, durationMs: 0, shape });
const noVms = { boot: () => Promise.reject(new Error('must not boot')) } as unknown as VmDriver;
const planOptions = { repoRoot: '/nowhere', manual: false, variables: {}, ref: 'main', source: 'push' };
const env = { driver: noVms, repoRoot: '/nowhere', write: () => {}, planOptions, secrets: {}, network: false };

function runOne(planned: PlannedJob, driver: VmDriver, lines: string[] = []) {
  const needs = { b: need('success') };
  return runGitlabJob({ job: planned, shape, needs, ancestors: needs, signal: new AbortController().signal }, { ...env, driver, write: (l) => lines.push(l) });
}

/** Plays a section script as bash would up to `failIn`: prints its section markers, then exits with `exitCode` there. */
function playSections(failIn?: string, exitCode = 3) {
  return (call: FakeScriptCall) => {
    const markers = [...call.script.matchAll(/^printf '%s\\n' '(hearth-section-\w+ (\w+))'$/gm)];
    const out: string[] = [];
    for (const [, line, name] of markers) {
      out.push(line!);
      if (name === failIn) return { stdout: out.join('\n') + '\n', exitCode };
    }
    return { stdout: out.join('\n') + '\n', exitCode: 0 };
  };
}

it('skips a job whose need was skipped, so a failure at the head of a chain stops the whole chain', async () => {
  const run = (when: 'on_success' | 'on_failure' | 'always', result: FinishedJob['result']) => {
    const needs = { b: need(result) };
    return runGitlabJob({ job: job('c', when), shape, needs, ancestors: needs, signal: new AbortController().signal }, env);
  };
  assert.deepEqual(await run('on_success', 'skipped'), { result: 'skipped', outputs: {}, steps: [], reason: 'a job it needs was skipped' });
  assert.equal((await run('on_success', 'failure')).reason, 'a job it needs failed');
  assert.equal((await run('on_failure', 'success')).result, 'skipped');
  await assert.rejects(run('always', 'skipped'), /must not boot/, 'when: always runs regardless');
});

describe('script sections', () => {
  it('runs before_script and script in one shell, announcing each section with the marker', () => {
    const script = gitlabSectionsScript(
      [
        { name: 'before_script', commands: ['export A=1'] },
        { name: 'script', commands: ['echo "$A" \'x\''] },
      ],
      'M',
    );
    assert.equal(
      script,
      `set -eo pipefail\nprintf '%s\\n' 'M before_script'\nprintf '%s\\n' '$ export A=1'\nexport A=1\nprintf '%s\\n' 'M script'\nprintf '%s\\n' '$ echo "$A" '\\''x'\\'''\necho "$A" 'x'\n`,
    );
  });

  it('times sections from their markers and lists those never reached', () => {
    const lines: string[] = [];
    let now = 1000;
    const clock = new SectionClock(['before_script', 'script'], new JobLog('j', (l) => lines.push(l)), () => now);
    now = 1100;
    clock.start('before_script');
    now = 3600;
    const steps = clock.finish(2);
    assert.deepEqual(steps, [
      { name: 'before_script', result: 'failure', durationMs: 2500 },
      { name: 'script', result: 'skipped', durationMs: 0 },
    ]);
    assert.deepEqual(lines, ['[j] ✗ before_script (2.5 s, exit 2)', '[j] - script (not run)']);
  });

  it("prints each section's result and duration, hides the markers, and records them as steps", async () => {
    const lines: string[] = [];
    const guest = new FakeGuest(playSections());
    const outcome = await runOne(
      job('build', 'on_success', { beforeScript: ['echo before'], script: ['echo main'], afterScript: ['echo after'] }),
      guest,
      lines,
    );
    assert.equal(outcome.result, 'success');
    assert.deepEqual(
      outcome.steps.map((s) => [s.name, s.result]),
      [
        ['before_script', 'success'],
        ['script', 'success'],
        ['after_script', 'success'],
      ],
    );
    const shown = lines.filter((l) => /^\[build\] [✓✗-] /.test(l)).map((l) => l.replace(/\(\d+\.\d s/, '(N s'));
    assert.deepEqual(shown, ['[build] ✓ before_script (N s)', '[build] ✓ script (N s)', '[build] ✓ after_script (N s)']);
    assert.ok(!lines.some((l) => l.includes('hearth-section-')), 'marker lines leak into the log');
  });

  it('a failing before_script fails the job; script is shown as not run; a failing after_script leaves the result alone', async () => {
    const lines: string[] = [];
    let calls = 0;
    const play = playSections('before_script', 5);
    const guest = new FakeGuest((call) => (++calls === 1 ? play(call) : { exitCode: 1 }));
    const outcome = await runOne(job('lint', 'on_success', { beforeScript: ['false'], script: ['echo never'], afterScript: ['exit 1'] }), guest, lines);
    assert.equal(outcome.result, 'failure');
    assert.deepEqual(
      outcome.steps.map((s) => [s.name, s.result]),
      [
        ['before_script', 'failure'],
        ['script', 'skipped'],
        ['after_script', 'failure'],
      ],
    );
    const shown = lines.filter((l) => /^\[lint\] [✓✗-] /.test(l)).map((l) => l.replace(/\(\d+\.\d s/, '(N s'));
    assert.deepEqual(shown, [
      '[lint] ✗ before_script (N s, exit 5)',
      '[lint] - script (not run)',
      "[lint] ✗ after_script (N s, exit 1; the job's result stands)",
    ]);
    assert.ok(lines.includes('[lint] ERROR: Job failed: exit code 5'));
  });

  it('without before_script the only section is script', async () => {
    const lines: string[] = [];
    const outcome = await runOne(job('one', 'on_success', { script: ['false'] }), new FakeGuest(playSections('script', 1)), lines);
    assert.deepEqual(
      outcome.steps.map((s) => [s.name, s.result]),
      [['script', 'failure']],
    );
  });
});

describe('timeout', () => {
  it("bounds every command by the job's timeout, and a job that runs past it fails saying so", async () => {
    const lines: string[] = [];
    const guest = new FakeGuest(() => ({ throws: new HearthError('HEARTH_ERR_EXEC_TIMEOUT', { vmId: 'fake-1', timeoutSeconds: 120 }) }));
    const outcome = await runOne(job('slow', 'on_success', { script: ['sleep 1000'], afterScript: ['echo never'], timeoutMinutes: 2 }), guest, lines);
    for (const request of guest.requests)
      assert.ok(
        request.timeoutSeconds !== undefined && request.timeoutSeconds > 100 && request.timeoutSeconds <= 120,
        `exec without the job's bound: ${request.timeoutSeconds}`,
      );
    assert.equal(outcome.result, 'failure');
    assert.equal(outcome.reason, "execution took longer than the job's timeout of 2m; the VM was destroyed");
    assert.deepEqual(
      outcome.steps.map((s) => [s.name, s.result]),
      [['script', 'failure']],
    );
    assert.ok(
      lines.some((l) => /^\[slow\] ✗ script \(\d+\.\d s, timed out\)$/.test(l)),
      lines.join('\n'),
    );
    assert.equal(guest.scripts.length, 1, 'after_script cannot run in a destroyed VM');
    assert.deepEqual(guest.destroyed, ['fake-1']);
  });

  it("gives after_script its own five minutes, even when the job's timeout is shorter", async () => {
    const guest = new FakeGuest(playSections());
    await runOne(job('short', 'on_success', { script: ['true'], afterScript: ['echo cleanup'], timeoutMinutes: 1 }), guest);
    const after = guest.scripts[1]!;
    assert.match(after.command, /^exec timeout -s KILL 300 bash /);
    assert.ok((after.request.timeoutSeconds ?? 0) >= 300, `host-side bound ${after.request.timeoutSeconds} cuts after_script short`);
    assert.ok((guest.scripts[0]!.request.timeoutSeconds ?? 0) <= 60);
  });
});
