import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GitlabJobBody, PlannedJob } from '../../../src/workflow/model.ts';
import { parseGitlabCi, type GitlabPlanOptions } from '../../../src/workflow/gitlab/parse.ts';
import { evaluateRuleIf, parseDurationMinutes } from '../../../src/workflow/gitlab/rules.ts';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'hearth-gl-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function plan(yaml: string, options: Partial<GitlabPlanOptions> & { files?: Record<string, string> } = {}) {
  for (const [path, content] of Object.entries(options.files ?? {})) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  const file = join(root, '.gitlab-ci.yml');
  await writeFile(file, yaml);
  return parseGitlabCi(file, { repoRoot: root, manual: false, variables: {}, ref: 'main', source: 'push', ...options });
}

const body = (job: PlannedJob | undefined): GitlabJobBody => {
  assert.ok(job && job.body.kind === 'gitlab');
  return job.body;
};

describe('GitLab configuration', () => {
  it('merges extends deeply (hashes merge, arrays replace) and inherits default:', async () => {
    const p = await plan(`
default:
  before_script: [echo default-before]
  tags: [hearth-1cpu]
.base:
  variables: {A: base, B: base}
  script: [echo base]
  tags: [base-tag]
.middle:
  extends: .base
  variables: {B: middle}
job:
  extends: .middle
  variables: {C: job}
  script: [echo job]
`);
    const job = body(p.jobs[0]);
    assert.deepEqual(job.variables, { A: 'base', B: 'middle', C: 'job' });
    assert.deepEqual(job.script, ['echo job']);
    assert.deepEqual(job.beforeScript, ['echo default-before']);
    assert.deepEqual(p.jobs[0]?.labels, ['base-tag']);
  });

  it('resolves anchors, merge keys and !reference, flattening nested script lists', async () => {
    const p = await plan(`
.setup: &setup
  image: debian
.shared:
  script: [echo one, echo two]
job:
  <<: *setup
  script:
    - !reference [.shared, script]
    - echo three
`);
    assert.deepEqual(body(p.jobs[0]).script, ['echo one', 'echo two', 'echo three']);
    assert.equal(body(p.jobs[0]).image, 'debian');
    await assert.rejects(
      plan('job:\n  script:\n    - !reference [.missing, script]\n'),
      /\.gitlab-ci\.yml:3:18: !reference \[\.missing, script\] points at nothing/,
    );
  });

  it('orders by stage unless needs say otherwise; needs: [] starts at once', async () => {
    const p = await plan(`
stages: [build, test, deploy]
b: {stage: build, script: [x]}
t1: {stage: test, script: [x]}
t2: {stage: test, needs: [], script: [x]}
d: {stage: deploy, needs: [t1], script: [x]}
`);
    assert.deepEqual(Object.fromEntries(p.jobs.map((j) => [j.key, j.needs])), { b: [], t1: ['b'], t2: [], d: ['t1'] });
    await assert.rejects(plan('stages: [build]\nj: {stage: nope, script: [x]}\n'), /\.gitlab-ci\.yml:2:5: job j is in stage "nope"/);
    await assert.rejects(plan('j: {needs: [ghost], script: [x]}\n'), /job j needs "ghost"/);
  });

  it('applies rules (first match wins, with when, allow_failure and variables) and only/except', async () => {
    const yaml = `
deploy:
  script: [x]
  rules:
    - if: $CI_COMMIT_BRANCH == "main" && $CI_PIPELINE_SOURCE != "schedule"
      variables: {TARGET: prod}
      allow_failure: true
    - when: never
mr-only:
  script: [x]
  only: [merge_requests]
not-main:
  script: [x]
  except: [/^ma/]
manual:
  script: [x]
  when: manual
`;
    const onMain = await plan(yaml);
    assert.deepEqual(
      onMain.jobs.map((j) => j.key),
      ['deploy'],
    );
    assert.equal(body(onMain.jobs[0]).variables.TARGET, 'prod');
    assert.equal(onMain.jobs[0]?.allowFailure, true);
    assert.deepEqual(onMain.skipped.map((s) => s.key).sort(), ['manual', 'mr-only', 'not-main']);
    assert.match(onMain.skipped.find((s) => s.key === 'manual')!.reason, /--manual/);
    const onFeature = await plan(yaml, { ref: 'feature', manual: true });
    assert.deepEqual(onFeature.jobs.map((j) => j.key).sort(), ['manual', 'not-main']);
    const mr = await plan(yaml, { source: 'merge_request_event', ref: 'feature' });
    // As in GitLab, jobs without rules or only: are not part of merge request pipelines.
    assert.deepEqual(mr.jobs.map((j) => j.key).sort(), ['mr-only']);
  });

  it('expands parallel: N and parallel: matrix: with GitLab names and variables', async () => {
    const p = await plan(
      'shard:\n  parallel: 3\n  script: [x]\nm:\n  parallel:\n    matrix:\n      - OS: [linux, mac]\n        V: "1"\n      - OS: bsd\n  script: [x]\n',
    );
    assert.deepEqual(
      p.jobs.map((j) => j.key),
      ['shard 1/3', 'shard 2/3', 'shard 3/3', 'm: [linux, 1]', 'm: [mac, 1]', 'm: [bsd]'],
    );
    assert.deepEqual(body(p.jobs[1]).node, { index: 2, total: 3 });
    assert.deepEqual(body(p.jobs[4]).variables, { OS: 'mac', V: '1' });
  });

  it('merges include: local files (nested), the main file winning', async () => {
    const p = await plan('include:\n  - local: ci/a.yml\nvariables: {WHO: main}\nown: {script: [x]}\n', {
      files: { 'ci/a.yml': 'include: ci/b.yml\nvariables: {WHO: a, FROM_A: "1"}\nfrom-a: {script: [a]}\n', 'ci/b.yml': 'from-b: {script: [b]}\n' },
    });
    assert.deepEqual(p.jobs.map((j) => j.key).sort(), ['from-a', 'from-b', 'own']);
    assert.deepEqual(body(p.jobs.find((j) => j.key === 'own')).variables, { WHO: 'main', FROM_A: '1' });
    assert.equal(p.jobs.find((j) => j.key === 'from-b')?.location.file, join(root, 'ci/b.yml'));
  });

  it('skips includes whose rules do not match, accepts services: [], and expands variables in tags', async () => {
    const p = await plan(
      'variables: {RUNNER: hearth-1cpu}\ninclude:\n  - local: never.yml\n    rules: [{if: $NOT_SET}]\n  - local: ci/kept.yml\n    rules: [{if: $CI_COMMIT_BRANCH == "main"}]\nj:\n  services: []\n  tags: [$RUNNER, "${SIZE}"]\n  parallel:\n    matrix:\n      - SIZE: [512mb, 1024mb]\n  script: [x]\n',
      { files: { 'ci/kept.yml': 'kept: {script: [k]}\n' } },
    );
    assert.deepEqual(
      p.jobs.map((j) => [j.key, j.labels]),
      [
        ['kept', []],
        ['j: [512mb]', ['hearth-1cpu', '512mb']],
        ['j: [1024mb]', ['hearth-1cpu', '1024mb']],
      ],
    );
  });

  it('refuses remote includes, triggers and services at their place', async () => {
    await assert.rejects(plan('include:\n  - remote: https://example.com/x.yml\nj: {script: [x]}\n'), /\.gitlab-ci\.yml:2:5: include: remote is not supported/);
    await assert.rejects(plan('j:\n  trigger: other/project\n'), /\.gitlab-ci\.yml:2:3: job j triggers another pipeline/);
    await assert.rejects(plan('j:\n  services: [postgres]\n  script: [x]\n'), /\.gitlab-ci\.yml:2:3: job j uses services:/);
    await assert.rejects(plan('j:\n  stage: test\n'), /\.gitlab-ci\.yml:1:1: job j has no script/);
  });
});

describe('GitLab expressions and durations', () => {
  it('evaluates rules:if with variables, regexes, null and precedence', () => {
    const vars = { A: 'main', EMPTY: '', RE: '/^fe/' };
    assert.equal(evaluateRuleIf('$A == "main"', vars), true);
    assert.equal(evaluateRuleIf("$A != 'main'", vars), false);
    assert.equal(evaluateRuleIf('$A =~ /^MA/i', vars), true);
    assert.equal(evaluateRuleIf('$A !~ /^x/', vars), true);
    assert.equal(evaluateRuleIf('$MISSING == null', vars), true);
    assert.equal(evaluateRuleIf('$EMPTY', vars), false);
    assert.equal(evaluateRuleIf('$A', vars), true);
    assert.equal(evaluateRuleIf('$A == "x" || $A == "main" && $EMPTY', vars), false);
    assert.equal(evaluateRuleIf('($A == "x" || $A == "main") && $A', vars), true);
    assert.equal(evaluateRuleIf('"feature" =~ $RE', vars), true);
    assert.throws(() => evaluateRuleIf('$A ==', vars), /expected a value/);
  });

  it('reads durations as GitLab does', () => {
    assert.equal(parseDurationMinutes('3600'), 60);
    assert.equal(parseDurationMinutes('1h 30m'), 90);
    assert.equal(parseDurationMinutes('2 hours'), 120);
    assert.equal(parseDurationMinutes('1 day'), 1440);
    assert.equal(parseDurationMinutes('soon'), undefined);
  });

  it("plans each job's timeout (its own, default:, or 60 minutes), which bounds its VM, and names a bad one", async () => {
    const p = await plan('default:\n  timeout: 10m\nslow:\n  timeout: 1h 30m\n  script: [sleep 1]\nquick:\n  script: [true]\n');
    assert.deepEqual(
      p.jobs.map((j) => [j.key, j.timeoutMinutes]),
      [
        ['slow', 90],
        ['quick', 10],
      ],
    );
    assert.equal((await plan('plain:\n  script: [true]\n')).jobs[0]!.timeoutMinutes, 60);
    await assert.rejects(plan('bad:\n  timeout: soon\n  script: [true]\n'), /\.gitlab-ci\.yml:2:\d+: job bad has timeout "soon", which is not a duration/);
  });
});
