import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HearthError } from '../../../src/errors.ts';
import { githubContextFor } from '../../../src/workflow/github/context.ts';
import { parseGithubWorkflow } from '../../../src/workflow/github/parse.ts';
import { runGithubJob, STEP_SUMMARY_LIMIT_BYTES, upstreamStatus } from '../../../src/workflow/runner/github-job.ts';
import { runPlan, type FinishedJob } from '../../../src/workflow/runner/plan-runner.ts';
import { FakeGuest, type FakeScriptCall, type FakeScriptResult } from './fake-guest.ts';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'hearth-ghjob-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Plans `yaml` and runs it against a FakeGuest: no VM boots, every script goes to `onScript`. */
async function runWorkflow(
  yaml: string,
  options: {
    onScript?: (call: FakeScriptCall) => FakeScriptResult | Promise<FakeScriptResult>;
    files?: Record<string, string>;
    secrets?: Record<string, string>;
  } = {},
) {
  for (const [path, content] of Object.entries(options.files ?? {})) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  const file = join(root, 'wf.yml');
  await writeFile(file, yaml);
  const plan = await parseGithubWorkflow(file, { repoRoot: root, event: 'push', inputs: {} });
  const { github, payload } = await githubContextFor({ event: 'push', repoRoot: root, inputs: {}, git: async () => undefined });
  const guest = new FakeGuest(options.onScript);
  const lines: string[] = [];
  const jobIdOf = (key: string): string => {
    const job = plan.jobs.find((j) => j.key === key);
    return job?.body.kind === 'github' ? job.body.jobId : key;
  };
  const results = await runPlan(plan, {
    capacity: { cpus: 1000, memoryMib: 1_000_000 },
    executeJob: (run) =>
      runGithubJob(run, {
        driver: guest,
        repoRoot: root,
        write: (l) => lines.push(l),
        github,
        eventPayload: JSON.stringify(payload),
        secrets: options.secrets ?? {},
        vars: {},
        inputs: {},
        network: false,
        jobIdOf,
      }),
  });
  const result = (key: string): FinishedJob => results.find((r) => r.key === key)!;
  return { results, result, lines, guest };
}

const finished = (key: string, result: FinishedJob['result'], allowFailure = false): FinishedJob => ({
  key,
  result,
  allowFailure,
  outputs: {},
  steps: [],
  durationMs: 0,
  shape: { cpus: 1, memoryMib: 512, image: 'debian' },
});

describe('needs: a skipped or failed job up the chain', () => {
  it('skips jobs after a skipped one unless their if: has a status function, as GitHub does (also transitively)', async () => {
    const { result, guest } = await runWorkflow(`on: push
jobs:
  gate: {runs-on: x, if: "false", steps: [{run: echo gate}]}
  plain: {needs: gate, runs-on: x, steps: [{run: echo plain}]}
  expression: {needs: gate, if: "github.event_name == 'push'", runs-on: x, steps: [{run: echo expression}]}
  always: {needs: gate, if: always(), runs-on: x, steps: [{run: echo always}]}
  after-always: {needs: always, runs-on: x, steps: [{run: echo after-always}]}
  not-failed: {needs: plain, if: "!failure()", runs-on: x, steps: [{run: echo not-failed}]}
  on-failure: {needs: plain, if: failure(), runs-on: x, steps: [{run: echo on-failure}]}
  by-result: {needs: gate, if: "always() && needs.gate.result == 'skipped'", runs-on: x, steps: [{run: echo by-result}]}
`);
    const results = Object.fromEntries(
      ['gate', 'plain', 'expression', 'always', 'after-always', 'not-failed', 'on-failure', 'by-result'].map((k) => [k, result(k).result]),
    );
    assert.deepEqual(results, {
      gate: 'skipped',
      plain: 'skipped',
      expression: 'skipped',
      always: 'success',
      'after-always': 'skipped',
      'not-failed': 'success',
      'on-failure': 'skipped',
      'by-result': 'success',
    });
    assert.equal(guest.boots.length, 3, 'only always, not-failed and by-result boot a VM');
    assert.equal(result('plain').reason, 'if: success() is false (gate was skipped)');
    assert.equal(result('after-always').reason, 'if: success() is false (gate was skipped)', 'a skip anywhere up the chain counts (actions/runner#2205)');
  });

  it('a failure anywhere up the chain makes failure() true and success() false', () => {
    assert.deepEqual(upstreamStatus({ a: finished('a', 'failure'), b: finished('b', 'skipped') }), { status: 'failure', cause: 'a failed' });
    assert.deepEqual(upstreamStatus({ a: finished('a', 'failure', true) }), { status: 'success' }, 'an allowed failure does not count');
    assert.deepEqual(upstreamStatus({ a: finished('a', 'cancelled'), b: finished('b', 'success') }), { status: 'cancelled', cause: 'a was cancelled' });
    assert.deepEqual(upstreamStatus({}), { status: 'success' });
  });
});

describe('steps', () => {
  it("applies defaults.run (job over workflow) to run: steps, a step's own shell and working-directory to it, and neither inside composite actions", async () => {
    const action = 'runs:\n  using: composite\n  steps:\n    - run: echo inside\n      shell: bash\n';
    const { guest, result } = await runWorkflow(
      `on: push
defaults:
  run: {shell: sh, working-directory: from-workflow}
jobs:
  wf:
    runs-on: x
    steps:
      - run: echo one
  job:
    runs-on: x
    defaults:
      run: {working-directory: "from-job/\${{ github.event_name }}"}
    steps:
      - run: echo two
      - run: print("three")
        shell: python
        working-directory: /abs
      - uses: ./act
`,
      { files: { 'act/action.yml': action } },
    );
    assert.equal(result('job').result, 'success');
    const seen = guest.scripts.map((s) => [s.script.trim(), s.command.replace(/ \/tmp\/hearth\/scripts\/script-\d+\.(sh|py)$/, ''), s.request.cwd]);
    assert.deepEqual(seen.sort(), [
      ['echo inside', 'exec bash --noprofile --norc -eo pipefail', '/workspace'],
      ['echo one', 'exec sh -e', '/workspace/from-workflow'],
      ['echo two', 'exec sh -e', '/workspace/from-job/push'],
      ['print("three")', 'exec python3', '/abs'],
    ]);
  });

  it('gives each step a fresh $GITHUB_STEP_SUMMARY and prints the job summary in step order, masked, dropping one over 1 MiB', async () => {
    const summaries: Record<string, string> = { one: '# One\nsecret hunter22', three: 'three', big: 'x'.repeat(STEP_SUMMARY_LIMIT_BYTES + 1) };
    const { lines, guest, result } = await runWorkflow(
      `on: push
jobs:
  s:
    runs-on: x
    steps:
      - {run: one}
      - {run: two}
      - {run: big}
      - {run: three, continue-on-error: true}
`,
      { secrets: { TOKEN: 'hunter22' }, onScript: (call) => ({ exitCode: call.script === 'three' ? 1 : 0, files: { summary: summaries[call.script] ?? '' } }) },
    );
    assert.equal(result('s').result, 'success');
    const paths = guest.scripts.map((s) => s.request.env?.GITHUB_STEP_SUMMARY);
    assert.equal(new Set(paths).size, 4, 'each step gets its own summary file');
    for (const [i, call] of guest.scripts.entries()) {
      const write = guest.requests.find((r) => r.argv[5] === call.command.split(' ').at(-1));
      assert.ok(write?.argv[2]?.includes(`: > ${paths[i]}`), 'the summary file is created empty before the step');
    }
    assert.ok(lines.includes('[s] error: $GITHUB_STEP_SUMMARY upload aborted, supports content up to a size of 1024k, got 1025k'));
    const at = lines.indexOf('[s] job summary:');
    assert.deepEqual(lines.slice(at), ['[s] job summary:', '[s] # One', '[s] secret ***', '[s] three']);
  });

  it('kills a step at its timeout-minutes, a number or an expression, and names a bad value with its place', async () => {
    const { guest, result, lines } = await runWorkflow(
      `on: push
jobs:
  t:
    runs-on: x
    strategy: {matrix: {limit: [2]}}
    env: {BAD: soon}
    steps:
      - {run: fixed, timeout-minutes: 1.5}
      - {run: from-matrix, timeout-minutes: "\${{ matrix.limit }}"}
      - {run: slow, timeout-minutes: 0.005, continue-on-error: true}
      - {run: none}
      - {run: bad, timeout-minutes: "\${{ env.BAD }}"}
      - {run: never}
`,
      {
        // The scenario: a step killed after running past its 0.3 s timeout-minutes (the guest's timeout makes it 1 s).
        onScript: (call) => (call.script === 'slow' ? { exitCode: 137, durationMs: 1_000 } : {}),
      },
    );
    const timeouts = Object.fromEntries(guest.scripts.map((s) => [s.script, /^exec timeout -s KILL (\d+) /.exec(s.command)?.[1] ?? 'none']));
    assert.deepEqual(timeouts, { fixed: '90', 'from-matrix': '120', slow: '1', none: 'none' });
    assert.ok(
      lines.some((l) => l === '[t (2)] error: Run slow ran past its timeout-minutes (1 s) and was killed'),
      lines.join('\n'),
    );
    const job = result('t (2)');
    assert.equal(job.result, 'failure');
    assert.match(job.reason ?? '', /wf\.yml:12:37: timeout-minutes \$\{\{ env\.BAD \}\} evaluates to "soon", not a positive number/);
  });

  it("bounds every command by the job's timeout-minutes and says so when the host stops the job", async () => {
    const { guest, result, lines } = await runWorkflow('on: push\njobs:\n  j:\n    runs-on: x\n    timeout-minutes: 3\n    steps:\n      - run: sleep 1000\n', {
      onScript: () => ({ throws: new HearthError('HEARTH_ERR_EXEC_TIMEOUT', { vmId: 'fake-1', timeoutSeconds: 180 }) }),
    });
    for (const request of guest.requests)
      assert.ok(request.timeoutSeconds !== undefined && request.timeoutSeconds > 160 && request.timeoutSeconds <= 180, `exec bound ${request.timeoutSeconds}`);
    assert.equal(result('j').result, 'failure');
    assert.equal(result('j').reason, 'the job ran past its timeout-minutes (3); the VM was destroyed');
    assert.ok(lines.includes('[j] error: the job ran past its timeout-minutes (3); the VM was destroyed'));
  });
});
