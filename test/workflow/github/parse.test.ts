import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isHearthError } from '../../../src/errors.ts';
import { evaluateCondition, interpolate } from '../../../src/workflow/github/expressions.ts';
import { expandMatrix, parseGithubWorkflow } from '../../../src/workflow/github/parse.ts';
import { firstUnsupported } from '../../../src/workflow/runner/github-job.ts';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'hearth-gh-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function plan(yaml: string, options: { event?: string; inputs?: Record<string, string>; job?: string; files?: Record<string, string> } = {}) {
  for (const [path, content] of Object.entries(options.files ?? {})) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  const file = join(root, 'wf.yml');
  await writeFile(file, yaml);
  return parseGithubWorkflow(file, {
    repoRoot: root,
    event: options.event ?? 'push',
    inputs: options.inputs ?? {},
    ...(options.job ? { job: options.job } : {}),
  });
}

const loc = { file: 'x.yml', line: 1, column: 1 };
const contexts = {
  github: { event_name: 'push' },
  env: {},
  vars: {},
  matrix: { n: 2 },
  needs: {},
  steps: { a: { outputs: { v: 'x' } } },
  job: {},
  runner: {},
  inputs: {},
  secrets: {},
  strategy: {},
};

describe('matrix expansion', () => {
  it('takes the product, drops partial exclude matches, extends and appends includes', () => {
    const combos = expandMatrix(
      { os: ['linux', 'mac'], v: [1, 2] },
      [
        { os: 'mac', extra: 'x' },
        { os: 'bsd', v: 9 },
      ],
      [{ os: 'linux', v: 2 }],
    );
    assert.deepEqual(combos, [
      { os: 'linux', v: 1 },
      { os: 'mac', v: 1, extra: 'x' },
      { os: 'mac', v: 2, extra: 'x' },
      { os: 'bsd', v: 9 },
    ]);
    assert.deepEqual(expandMatrix({}, [{ a: 1 }, { a: 2 }], []), [{ a: 1 }, { a: 2 }]);
  });

  it('names expansions, applies fail-fast and max-parallel, and evaluates runs-on per expansion', async () => {
    const p = await plan(
      'on: push\njobs:\n  t:\n    runs-on: ${{ matrix.os }}\n    strategy:\n      fail-fast: false\n      max-parallel: 1\n      matrix:\n        os: [hearth-1cpu, hearth-2cpu]\n    steps:\n      - run: echo\n',
    );
    assert.deepEqual(
      p.jobs.map((j) => [j.key, j.labels]),
      [
        ['t (hearth-1cpu)', ['hearth-1cpu']],
        ['t (hearth-2cpu)', ['hearth-2cpu']],
      ],
    );
    const body = p.jobs[0]!.body;
    assert.ok(body.kind === 'github' && body.strategy.failFast === false && body.strategy.maxParallel === 1 && body.strategy.jobTotal === 2);
  });
});

describe('jobs, needs and filters', () => {
  it('links needs to every expansion, finds cycles and unknown needs with their place', async () => {
    const p = await plan(
      'on: push\njobs:\n  a:\n    runs-on: x\n    strategy: {matrix: {n: [1, 2]}}\n    steps: [{run: echo}]\n  b:\n    needs: a\n    runs-on: x\n    steps: [{run: echo}]\n',
    );
    assert.deepEqual(p.jobs.find((j) => j.key === 'b')?.needs, ['a (1)', 'a (2)']);
    await assert.rejects(
      plan('on: push\njobs:\n  a:\n    needs: b\n    runs-on: x\n    steps: [{run: echo}]\n  b:\n    needs: a\n    runs-on: x\n    steps: [{run: echo}]\n'),
      /wf\.yml:\d+:\d+: needs form a cycle: a -> b -> a/,
    );
    await assert.rejects(plan('on: push\njobs:\n  a:\n    needs: nope\n    runs-on: x\n    steps: [{run: echo}]\n'), /wf\.yml:4:12: jobs\.a needs "nope"/);
  });

  it('--job keeps the job and what it needs', async () => {
    const yaml =
      'on: push\njobs:\n  a: {runs-on: x, steps: [{run: echo}]}\n  b: {needs: a, runs-on: x, steps: [{run: echo}]}\n  c: {runs-on: x, steps: [{run: echo}]}\n';
    const p = await plan(yaml, { job: 'b' });
    assert.deepEqual(
      p.jobs.map((j) => j.key),
      ['a', 'b'],
    );
    assert.deepEqual(
      p.skipped.map((s) => s.key),
      ['c'],
    );
    await assert.rejects(plan(yaml, { job: 'zz' }), /--job zz: no such job[\s\S]*/);
  });

  it('checks workflow_dispatch inputs and fills defaults', async () => {
    const yaml =
      'on:\n  workflow_dispatch:\n    inputs:\n      level: {default: info}\n      target: {required: true}\njobs:\n  a: {runs-on: x, steps: [{run: echo}]}\n';
    await assert.rejects(
      plan(yaml, { event: 'workflow_dispatch' }),
      (e) => isHearthError(e, 'HEARTH_ERR_WORKFLOW') && /input "target" is required/.test(e.message) && /--input target=VALUE/.test(e.fix),
    );
    await assert.rejects(plan(yaml, { event: 'workflow_dispatch', inputs: { target: 'x', typo: '1' } }), /--input typo is not an input[\s\S]*/);
    const dispatched = await plan(yaml, { event: 'workflow_dispatch', inputs: { target: 'prod' } });
    assert.equal(dispatched.jobs.length, 1);
    assert.deepEqual(dispatched.inputs, { target: 'prod', level: 'info' });
  });

  it('refuses services, containers and reusable workflows at their place; unknown actions fail only their job', async () => {
    await assert.rejects(
      plan('on: push\njobs:\n  a:\n    runs-on: x\n    services:\n      db: {image: postgres}\n    steps: [{run: echo}]\n'),
      /wf\.yml:6:7: jobs\.a\.services is not supported yet/,
    );
    await assert.rejects(plan('on: push\njobs:\n  a:\n    runs-on: x\n    container: node:20\n    steps: [{run: echo}]\n'), /wf\.yml:5:16: jobs\.a\.container/);
    await assert.rejects(plan('on: push\njobs:\n  a:\n    uses: ./.github/workflows/other.yml\n'), /reusable workflow/);
    const p = await plan('on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/setup-node@v4\n  b: {runs-on: x, steps: [{run: echo}]}\n');
    const step = p.jobs[0]!.body.kind === 'github' ? p.jobs[0]!.body.steps[0]! : undefined;
    assert.ok(step?.action.kind === 'unsupported');
    assert.match(step.action.message, /wf\.yml:6:15: the action actions\/setup-node@v4 cannot run under hearth run/);
    assert.equal(p.jobs.length, 2);
  });

  it('loads a local composite action with inputs and outputs', async () => {
    const action =
      'name: x\ninputs:\n  who: {default: world}\noutputs:\n  said: {value: "${{ steps.s.outputs.t }}"}\nruns:\n  using: composite\n  steps:\n    - id: s\n      run: echo hi ${{ inputs.who }}\n      shell: bash\n';
    const p = await plan('on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: ./act\n        with: {who: you}\n', {
      files: { 'act/action.yml': action },
    });
    const step = p.jobs[0]!.body.kind === 'github' ? p.jobs[0]!.body.steps[0]! : undefined;
    assert.ok(step?.action.kind === 'composite');
    assert.deepEqual(step.action.with, { who: 'you' });
    assert.equal(step.action.inputs.who?.default, 'world');
    assert.equal(step.action.outputs.said, '${{ steps.s.outputs.t }}');
    assert.equal(step.action.steps[0]?.location.file, join(root, 'act/action.yml'));
  });

  it('a local action that is not composite fails only the jobs using it, each error at its own uses: line', async () => {
    const files = {
      'node-act/action.yml': 'name: n\nruns:\n  using: node20\n  main: index.js\n',
      'wrap/action.yml': 'runs:\n  using: composite\n  steps:\n    - uses: ./node-act\n',
    };
    const p = await plan(
      'on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: ./node-act\n      - uses: ./node-act\n      - uses: ./wrap\n  b: {runs-on: x, steps: [{run: echo}]}\n',
      { files },
    );
    assert.deepEqual(
      p.jobs.map((j) => j.key),
      ['a', 'b'],
    );
    const steps = p.jobs[0]!.body.kind === 'github' ? p.jobs[0]!.body.steps : [];
    const messages = steps.map((step) => (step.action.kind === 'unsupported' ? step.action.message.replaceAll(`${root}/`, '') : step.action.kind));
    assert.match(
      messages[0]!,
      /^wf\.yml:6:15: local action \.\/node-act is a "node20" action \(node-act\/action\.yml:3:10\); hearth run runs composite actions only; fix: rewrite it as a composite action/,
    );
    assert.match(messages[1]!, /^wf\.yml:7:15: local action \.\/node-act is a "node20" action/);
    assert.equal(messages[2], 'composite');
    const inner = steps[2]!.action.kind === 'composite' ? steps[2]!.action.steps[0]!.action : undefined;
    assert.ok(inner?.kind === 'unsupported');
    assert.match(
      inner.message.replaceAll(`${root}/`, ''),
      /^wrap\/action\.yml:4:13: local action \.\/node-act is a "node20" action/,
      'a use inside an action points into that action',
    );
    assert.equal(firstUnsupported(steps), steps[0]!.action.kind === 'unsupported' ? steps[0]!.action.message : '');
    const missing = await plan('on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: ./nowhere\n');
    const step = missing.jobs[0]!.body.kind === 'github' ? missing.jobs[0]!.body.steps[0]! : undefined;
    assert.ok(step?.action.kind === 'unsupported');
    assert.match(step.action.message, /wf\.yml:6:15: local action \.\/nowhere has no action\.yml \(looked in .*\); fix: check the path/);
  });

  it('finds composite actions that use each other in a cycle instead of hanging', async () => {
    const files = {
      'x/action.yml': 'runs:\n  using: composite\n  steps:\n    - uses: ./y\n',
      'y/action.yml': 'runs:\n  using: composite\n  steps:\n    - uses: ./x\n',
    };
    const p = await plan('on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: ./x\n', { files });
    const steps = p.jobs[0]!.body.kind === 'github' ? p.jobs[0]!.body.steps : [];
    assert.match(firstUnsupported(steps) ?? '', /y\/action\.yml:4:13: local action \.\/x uses itself/);
  });

  it('keeps timeout-minutes: numbers, expressions for later, and refuses anything else at its place', async () => {
    const p = await plan(
      'on: push\njobs:\n  a:\n    runs-on: x\n    strategy: {matrix: {t: [7]}}\n    timeout-minutes: ${{ matrix.t }}\n    steps:\n      - {run: a, timeout-minutes: 2.5}\n      - {run: b, timeout-minutes: "${{ matrix.t * 2 }}"}\n',
    );
    assert.equal(p.jobs[0]!.timeoutMinutes, 7);
    const steps = p.jobs[0]!.body.kind === 'github' ? p.jobs[0]!.body.steps : [];
    assert.deepEqual(
      steps.map((s) => s.timeout?.minutes),
      [2.5, 'matrix.t * 2'],
    );
    assert.deepEqual(steps[1]!.timeout?.location, { file: join(root, 'wf.yml'), line: 9, column: 35 });
    await assert.rejects(
      plan('on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - {run: a, timeout-minutes: soon}\n'),
      /wf\.yml:6:35: timeout-minutes must be a positive number, not "soon"/,
    );
    await assert.rejects(
      plan('on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - {run: a, timeout-minutes: 0}\n'),
      /wf\.yml:6:35: timeout-minutes must be a positive number, not "0"/,
    );
    await assert.rejects(
      plan('on: push\njobs:\n  a:\n    runs-on: x\n    timeout-minutes: ${{ inputs.minutes }}\n    steps: [{run: a}]\n'),
      /wf\.yml:5:22: jobs\.a\.timeout-minutes must be a positive number, not "\$\{\{ inputs\.minutes \}\}", which evaluates to ""/,
    );
  });

  it('reports YAML and shape errors with file:line:column', async () => {
    await assert.rejects(
      plan('on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: a\n        uses: b\n'),
      /wf\.yml:6:9: a step needs exactly one of run: and uses:/,
    );
    await assert.rejects(plan('on: push\njobs: [\n'), /wf\.yml:\d+:\d+: invalid YAML/);
    await assert.rejects(plan('on: push\njobs:\n  a:\n    runs-on: x\n    steps: nope\n'), /wf\.yml:5:12: jobs\.a\.steps must be a list/);
  });
});

describe('expressions', () => {
  it('evaluates if: with the status functions as GitHub does', () => {
    assert.equal(evaluateCondition('', contexts, 'success', loc), true);
    assert.equal(evaluateCondition('', contexts, 'failure', loc), false);
    assert.equal(evaluateCondition("github.event_name == 'push'", contexts, 'failure', loc), false, 'implicit success() &&');
    assert.equal(evaluateCondition('failure()', contexts, 'failure', loc), true);
    assert.equal(evaluateCondition('${{ always() }}', contexts, 'cancelled', loc), true);
    assert.equal(evaluateCondition('cancelled()', contexts, 'success', loc), false);
    assert.equal(evaluateCondition('matrix.n > 1', contexts, 'success', loc), true);
  });

  it('interpolates values as the runner prints them and names bad expressions', () => {
    assert.equal(interpolate('v=${{ steps.a.outputs.v }} n=${{ matrix.n }} b=${{ true }} nil=${{ null }}', contexts, loc), 'v=x n=2 b=true nil=');
    assert.equal(interpolate('${{ toJSON(matrix) }}', contexts, loc), '{\n  "n": 2\n}');
    assert.throws(() => interpolate('${{ matrix.( }}', contexts, loc), /x\.yml:1:1: invalid expression "matrix\.\("/);
  });
});
