import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isHearthError } from '../../../src/errors.ts';
import type { PlannedJob } from '../../../src/workflow/model.ts';
import { parseGitlabCi } from '../../../src/workflow/gitlab/parse.ts';

// Pipelines written for these tests (test/fixtures/gitlab-ci), each exercising what real
// .gitlab-ci.yml files use; `npm run conformance` runs the real-world corpus.
const DIR = join(import.meta.dirname, '..', '..', 'fixtures', 'gitlab-ci');

function plan(file: string, source = 'push', ref = 'main') {
  return parseGitlabCi(join(DIR, file), { repoRoot: DIR, manual: false, variables: {}, ref, source });
}

function summary(job: PlannedJob) {
  assert.equal(job.body.kind, 'gitlab');
  if (job.body.kind !== 'gitlab') throw new Error('unreachable');
  const { stage, variables, script, beforeScript, node } = job.body;
  return {
    key: job.key,
    needs: job.needs,
    labels: job.labels,
    timeoutMinutes: job.timeoutMinutes,
    allowFailure: job.allowFailure,
    at: `${job.location.line}:${job.location.column}`,
    stage,
    variables,
    beforeScript,
    script,
    node,
  };
}

async function refusal(file: string): Promise<string> {
  try {
    await plan(file);
  } catch (error) {
    assert.ok(isHearthError(error, 'HEARTH_ERR_WORKFLOW'), `${file} crashed: ${(error as Error).stack}`);
    return error.message.replaceAll(`${DIR}/`, '');
  }
  assert.fail(`${file} planned but should be refused`);
}

describe('GitLab CI fixtures', () => {
  it('the fixture set is the one these tests describe', () => {
    assert.deepEqual(
      readdirSync(DIR)
        .filter((f) => f.endsWith('.yml'))
        .sort(),
      [
        'pipeline.gitlab-ci.yml',
        'refused-missing-include.gitlab-ci.yml',
        'refused-remote-include.gitlab-ci.yml',
        'refused-services.gitlab-ci.yml',
        'refused-template-include.gitlab-ci.yml',
        'refused-trigger.gitlab-ci.yml',
        'skipped-by-workflow.gitlab-ci.yml',
      ],
    );
  });

  it('plans includes, extends, !reference, rules, only/except, manual and never, parallel and needs', async () => {
    const p = await plan('pipeline.gitlab-ci.yml');
    assert.equal(p.forge, 'gitlab');
    const globals = { GIT_DEPTH: '10', DEPLOY_ENV: 'staging' };
    const common = { labels: ['hearth-2cpu-4gb'], beforeScript: ['echo default setup'] };
    const unit = (index: number) => ({
      key: `unit ${index}/3`,
      needs: ['build'],
      ...common,
      timeoutMinutes: 60,
      allowFailure: false,
      at: '25:1',
      stage: 'test',
      variables: globals,
      script: ['make test SHARD=$CI_NODE_INDEX/$CI_NODE_TOTAL'],
      node: { index, total: 3 },
    });
    const matrix = (arch: string, distro: string, index: number) => ({
      key: `matrix: [${arch}, ${distro}]`,
      needs: ['build'],
      ...common,
      timeoutMinutes: 60,
      allowFailure: false,
      at: '33:1',
      stage: 'test',
      variables: { ...globals, ARCH: arch, DISTRO: distro },
      script: ['./check.sh $ARCH $DISTRO'],
      node: { index, total: 3 },
    });
    assert.deepEqual(p.jobs.map(summary), [
      {
        key: 'build',
        needs: [],
        ...common,
        timeoutMinutes: 60,
        allowFailure: false,
        at: '18:1',
        stage: 'build',
        variables: { ...globals, CC: 'gcc' },
        script: ['./configure', 'make', 'make dist'],
        node: undefined,
      },
      unit(1),
      unit(2),
      unit(3),
      matrix('amd64', 'debian', 1),
      matrix('arm64', 'debian', 2),
      matrix('riscv64', 'fedora', 3),
      {
        key: 'lint',
        needs: [],
        ...common,
        timeoutMinutes: 10,
        allowFailure: true,
        at: '57:1',
        stage: 'test',
        variables: { ...globals, STRICT: '1' },
        script: ['make lint'],
        node: undefined,
      },
    ]);
    const build = p.jobs[0]!.body;
    assert.ok(build.kind === 'gitlab' && build.image === 'debian:bookworm', 'extends brings the template image');
    assert.deepEqual(p.skipped, [
      { key: 'docs', reason: 'when: never' },
      { key: 'nightly', reason: 'only: does not match this ref/source' },
      { key: 'tags-excluded', reason: 'except: matches this ref/source' },
      { key: 'deploy', reason: 'when: manual (pass --manual to run it)' },
      { key: 'cleanup', reason: 'when: never' },
    ]);
  });

  it('follows the ref and the pipeline source through rules, only and except', async () => {
    // A merge request pipeline runs only jobs whose rules: say so: jobs without rules: or only: default to branches and tags.
    const mr = await plan('pipeline.gitlab-ci.yml', 'merge_request_event', 'feature');
    assert.deepEqual(
      mr.jobs.map((j) => [j.key, j.needs]),
      [['docs', []]],
    );
    assert.deepEqual(mr.skipped, [
      { key: 'build', reason: 'only: does not match this ref/source' },
      { key: 'unit', reason: 'only: does not match this ref/source' },
      { key: 'matrix', reason: 'only: does not match this ref/source' },
      { key: 'lint', reason: 'no rules: entry matches' },
      { key: 'nightly', reason: 'only: does not match this ref/source' },
      { key: 'tags-excluded', reason: 'only: does not match this ref/source' },
      { key: 'deploy', reason: 'only: does not match this ref/source' },
      { key: 'cleanup', reason: 'only: does not match this ref/source' },
    ]);
    // A scheduled pipeline on a release branch: lint's =~ rule matches, only: [schedules] and except: [main] let their jobs through,
    // and jobs without needs: wait for every job of the earlier stages.
    const schedule = await plan('pipeline.gitlab-ci.yml', 'schedule', 'release/2.0');
    assert.deepEqual(
      schedule.jobs.map((j) => [j.key, j.needs]),
      [
        ['build', []],
        ['unit 1/3', ['build']],
        ['unit 2/3', ['build']],
        ['unit 3/3', ['build']],
        ['matrix: [amd64, debian]', ['build']],
        ['matrix: [arm64, debian]', ['build']],
        ['matrix: [riscv64, fedora]', ['build']],
        ['lint', []],
        ['nightly', ['build']],
        ['tags-excluded', ['build']],
      ],
    );
    assert.deepEqual(
      schedule.skipped.map((s) => s.key),
      ['docs', 'deploy', 'cleanup'],
    );
  });

  it('skips the whole pipeline when workflow:rules match nothing', async () => {
    assert.deepEqual(await plan('skipped-by-workflow.gitlab-ci.yml'), {
      forge: 'gitlab',
      file: join(DIR, 'skipped-by-workflow.gitlab-ci.yml'),
      jobs: [],
      skipped: [{ key: '(pipeline)', reason: 'workflow:rules do not run a pipeline for this ref and source' }],
    });
    const web = await plan('skipped-by-workflow.gitlab-ci.yml', 'web');
    assert.deepEqual(
      web.jobs.map((j) => j.key),
      ['test'],
    );
  });

  it('refuses what hearth run cannot plan, at the place in the file', async () => {
    assert.equal(
      await refusal('refused-services.gitlab-ci.yml'),
      'refused-services.gitlab-ci.yml:6:3: job integration uses services:, which hearth run does not support yet: it runs jobs directly in a microVM, without containers',
    );
    assert.equal(
      await refusal('refused-remote-include.gitlab-ci.yml'),
      'refused-remote-include.gitlab-ci.yml:2:5: include: remote is not supported by hearth run (only include: local)',
    );
    assert.equal(
      await refusal('refused-template-include.gitlab-ci.yml'),
      'refused-template-include.gitlab-ci.yml:2:5: include: template is not supported by hearth run (only include: local)',
    );
    assert.equal(
      await refusal('refused-missing-include.gitlab-ci.yml'),
      'refused-missing-include.gitlab-ci.yml:3:5: include: local file ci/does-not-exist.yml does not exist',
    );
    assert.equal(
      await refusal('refused-trigger.gitlab-ci.yml'),
      'refused-trigger.gitlab-ci.yml:6:3: job downstream triggers another pipeline (trigger:), which hearth run does not support',
    );
  });
});
