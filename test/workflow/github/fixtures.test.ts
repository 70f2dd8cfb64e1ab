import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isHearthError } from '../../../src/errors.ts';
import type { PlannedJob } from '../../../src/workflow/model.ts';
import { parseCompositeAction, parseGithubWorkflow } from '../../../src/workflow/github/parse.ts';
import { firstUnsupported } from '../../../src/workflow/runner/github-job.ts';

// Workflows and composite actions written for these tests (test/fixtures/github-workflows), each
// exercising what real workflows use; `npm run conformance` runs the real-world corpus.
const DIR = join(import.meta.dirname, '..', '..', 'fixtures', 'github-workflows');

/** Paths in messages relative to the fixture folder, so expectations do not depend on where the clone is. */
function relative(text: string): string {
  return text.replaceAll(`${DIR}/`, '');
}

async function plan(file: string) {
  return parseGithubWorkflow(join(DIR, file), { repoRoot: DIR, event: 'push', inputs: {} });
}

/** What a planned job is, in one comparable line per job. */
function summary(job: PlannedJob) {
  assert.equal(job.body.kind, 'github');
  if (job.body.kind !== 'github') throw new Error('unreachable');
  const unsupported = firstUnsupported(job.body.steps);
  return {
    key: job.key,
    needs: job.needs,
    labels: job.labels,
    timeoutMinutes: job.timeoutMinutes,
    allowFailure: job.allowFailure,
    at: `${job.location.line}:${job.location.column}`,
    ...(job.body.if !== undefined ? { if: job.body.if } : {}),
    matrix: job.body.matrix,
    strategy: job.body.strategy,
    steps: job.body.steps.map((step) => step.action.kind),
    ...(unsupported !== undefined ? { unsupported: relative(unsupported) } : {}),
  };
}

async function refusal(file: string): Promise<string> {
  try {
    await plan(file);
  } catch (error) {
    assert.ok(isHearthError(error, 'HEARTH_ERR_WORKFLOW'), `${file} crashed: ${(error as Error).stack}`);
    return relative(error.message);
  }
  assert.fail(`${file} planned but should be refused`);
}

describe('GitHub workflow fixtures', () => {
  it('the fixture set is the one these tests describe', () => {
    const files = readdirSync(DIR)
      .filter((f) => /\.ya?ml$/.test(f))
      .sort();
    assert.deepEqual(files, [
      'build.yml',
      'local-actions.yml',
      'refused-container.yml',
      'refused-matrix-expression.yml',
      'refused-reusable.yml',
      'refused-services.yml',
      'refused-step.yml',
    ]);
  });

  it('plans a matrix (exclude, include that extends and include that adds), needs on every expansion, if: and an unsupported action', async () => {
    const p = await plan('build.yml');
    assert.equal(p.forge, 'github');
    assert.deepEqual(p.skipped, []);
    const test = (runner: string, toolchain: string, experimental: boolean, index: number, coverage?: boolean) => ({
      key: `test (${runner}, ${toolchain}, ${experimental}${coverage ? ', true' : ''})`,
      needs: ['Lint'],
      labels: [runner],
      timeoutMinutes: 20,
      allowFailure: experimental,
      at: '21:3',
      matrix: { runner, toolchain, experimental, ...(coverage ? { coverage } : {}) },
      strategy: { group: 'test', failFast: false, maxParallel: 2, jobIndex: index, jobTotal: 4 },
      steps: ['checkout', 'composite', 'run'],
    });
    const tests = [
      test('hearth-2cpu-2gb', 'stable', false, 0, true),
      test('hearth-2cpu-2gb', 'nightly', false, 1),
      test('hearth-4cpu-8gb', 'stable', false, 2),
      test('hearth-4cpu-8gb', 'beta', true, 3),
    ];
    assert.deepEqual(p.jobs.map(summary), [
      {
        key: 'Lint',
        needs: [],
        labels: ['hearth-1cpu-1gb'],
        timeoutMinutes: 360,
        allowFailure: false,
        at: '14:3',
        matrix: {},
        strategy: { group: 'lint', failFast: true, jobIndex: 0, jobTotal: 1 },
        steps: ['checkout', 'run'],
      },
      ...tests,
      {
        key: 'release',
        needs: tests.map((t) => t.key),
        labels: ['self-hosted', 'hearth-2cpu-4gb'],
        timeoutMinutes: 360,
        allowFailure: false,
        at: '53:3',
        if: "github.ref == 'refs/heads/main'",
        matrix: {},
        strategy: { group: 'release', failFast: true, jobIndex: 0, jobTotal: 1 },
        steps: ['run', 'unsupported'],
        unsupported:
          'build.yml:59:15: the action actions/upload-artifact@v4 cannot run under hearth run (it runs actions/checkout and local composite actions, and no translation for actions/upload-artifact is registered); fix: replace the step with run: commands, or remove it for local runs',
      },
    ]);
    const body = p.jobs[0]!.body;
    assert.ok(body.kind === 'github');
    assert.deepEqual(body.workflowEnv, { CARGO_TERM_COLOR: 'always' });
    assert.equal(body.steps[1]?.shell, 'bash', 'defaults.run.shell applies to run: steps');
    assert.equal(body.steps[0]?.shell, undefined, 'and not to uses: steps');
  });

  it('plans local actions: a composite one runs, the others fail only their job with the place of the problem', async () => {
    const p = await plan('local-actions.yml');
    assert.deepEqual(
      p.jobs.map((job) => {
        const { key, at, steps, unsupported } = summary(job);
        return { key, at, steps, unsupported };
      }),
      [
        { key: 'composite', at: '5:3', steps: ['composite'], unsupported: undefined },
        {
          key: 'cached',
          at: '11:3',
          steps: ['composite'],
          unsupported:
            'actions/with-cache/action.yml:5:13: the action actions/cache@v4 cannot run under hearth run (it runs actions/checkout and local composite actions, and no translation for actions/cache is registered); fix: replace the step with run: commands, or remove it for local runs',
        },
        {
          key: 'javascript',
          at: '15:3',
          steps: ['unsupported'],
          unsupported:
            'local-actions.yml:18:15: local action ./actions/node-action is a "node20" action (actions/node-action/action.yml:6:10); hearth run runs composite actions only; fix: rewrite it as a composite action, or run its commands in a run: step',
        },
        {
          key: 'missing',
          at: '19:3',
          steps: ['run', 'unsupported'],
          unsupported:
            'local-actions.yml:23:15: local action ./actions/not-here has no action.yml (looked in actions/not-here); fix: check the path: it is relative to the project root',
        },
      ],
    );
    const composite = p.jobs[0]!.body.kind === 'github' ? p.jobs[0]!.body.steps[0]?.action : undefined;
    assert.ok(composite?.kind === 'composite');
    assert.deepEqual(composite.with, { toolchain: 'stable' });
    assert.deepEqual(composite.outputs, { version: '${{ steps.version.outputs.version }}' });
  });

  it('refuses what hearth run cannot plan, at the place in the file', async () => {
    assert.equal(
      await refusal('refused-container.yml'),
      'refused-container.yml:5:16: jobs.unit.container is not supported yet: hearth run executes steps directly in a microVM, without containers',
    );
    assert.equal(
      await refusal('refused-services.yml'),
      'refused-services.yml:10:7: jobs.db.services is not supported yet: hearth run executes steps directly in a microVM, without containers',
    );
    assert.equal(await refusal('refused-reusable.yml'), 'refused-reusable.yml:4:11: jobs.changes calls a reusable workflow, which hearth run does not run yet');
    assert.equal(
      await refusal('refused-matrix-expression.yml'),
      'refused-matrix-expression.yml:15:18: matrix.include is an expression (${{ fromJSON(needs.plan.outputs.matrix) }}) that is only known while running',
    );
    assert.equal(await refusal('refused-step.yml'), 'refused-step.yml:7:9: a step needs exactly one of run: and uses:');
  });
});

describe('composite action fixtures', () => {
  const ACTIONS_DIR = join(DIR, 'actions');
  const load = (name: string) => parseCompositeAction(join(ACTIONS_DIR, name, 'action.yml'), { repoRoot: DIR });

  it('the action set is the one these tests describe', () => {
    assert.deepEqual(readdirSync(ACTIONS_DIR).sort(), ['node-action', 'toolchain', 'uses-missing', 'with-cache']);
  });

  it('loads composite actions with their inputs, outputs, steps and where each step is', async () => {
    const toolchain = await load('toolchain');
    assert.deepEqual(toolchain.inputs, { toolchain: { required: true }, components: { default: '' } });
    assert.deepEqual(toolchain.outputs, { version: '${{ steps.version.outputs.version }}' });
    assert.deepEqual(
      toolchain.steps.map((step) => [step.id, step.action.kind, step.shell, `${relative(step.location.file)}:${step.location.line}:${step.location.column}`]),
      [
        [undefined, 'run', 'bash', 'actions/toolchain/action.yml:17:7'],
        ['version', 'run', 'bash', 'actions/toolchain/action.yml:19:7'],
      ],
    );
    assert.equal(firstUnsupported(toolchain.steps), undefined);

    const cached = await load('with-cache');
    assert.deepEqual(
      cached.steps.map((step) => [step.action.kind, step.shell]),
      [
        ['unsupported', undefined],
        ['composite', undefined],
        ['run', 'sh'],
      ],
    );
    const nested = cached.steps[1]!.action;
    assert.ok(nested.kind === 'composite');
    assert.equal(nested.steps.length, 2, 'a composite action inside a composite action is loaded with its steps');

    const missing = await load('uses-missing');
    assert.deepEqual({ inputs: missing.inputs, outputs: missing.outputs }, { inputs: { level: { default: '1' } }, outputs: { done: 'yes' } });
    assert.equal(
      relative(firstUnsupported(missing.steps) ?? ''),
      'actions/uses-missing/action.yml:13:13: local action ./actions/absent has no action.yml (looked in actions/absent); fix: check the path: it is relative to the project root',
    );
  });

  it('refuses an action that is not composite, at its runs.using', async () => {
    await assert.rejects(load('node-action'), (error: unknown) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_WORKFLOW'));
      assert.equal(relative(error.message), 'actions/node-action/action.yml:6:10: the action uses "node20"; hearth run runs composite actions only');
      return true;
    });
  });

  it('the composite loader refuses what is not a composite action, at its place', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hearth-actions-'));
    try {
      await writeFile(join(dir, 'node.yml'), 'name: n\nruns:\n  using: node20\n  main: index.js\n');
      await writeFile(join(dir, 'nosteps.yml'), 'runs:\n  using: composite\n');
      await assert.rejects(
        parseCompositeAction(join(dir, 'node.yml'), { repoRoot: dir }),
        /node\.yml:3:10: the action uses "node20"; hearth run runs composite actions only/,
      );
      await assert.rejects(
        parseCompositeAction(join(dir, 'nosteps.yml'), { repoRoot: dir }),
        /nosteps\.yml:2:3: a composite action needs runs\.steps as a list/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
