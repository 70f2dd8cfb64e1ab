import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTestHost, HEARTH_BIN, type TestHost } from '../support/env.ts';

const E2E = join(import.meta.dirname, 'e2e');
const EXAMPLE = join(import.meta.dirname, '..', '..', 'examples', 'wordfreq');

function hearthRun(host: TestHost, args: string[]) {
  const run = spawnSync(process.execPath, [HEARTH_BIN, 'run', ...args], { env: host.env, encoding: 'utf8', timeout: 15 * 60_000, maxBuffer: 64 * 1024 * 1024 });
  return { status: run.status, out: run.stdout, err: run.stderr, lines: run.stdout.split('\n') };
}

/** The summary row of a job (after its one-character mark and two spaces): its result column. */
function resultOf(out: string, key: string): string | undefined {
  const row = out.split('\n').find((line) => line.slice(3).startsWith(`${key}  `));
  return row
    ?.slice(3 + key.length)
    .trim()
    .split(/\s{2,}/)[0];
}

describe('hearth run, end to end in real VMs', () => {
  let host: TestHost;
  before(async () => {
    host = await createTestHost();
  });
  after(async () => {
    await host.cleanup();
  });

  it('--dry-run prints the plan with matrix expansion and order, booting nothing', async () => {
    const run = hearthRun(host, ['--dry-run', join(E2E, 'github-project/.github/workflows/pass.yml')]);
    assert.equal(run.status, 0, run.err);
    assert.match(run.out, /wave 1:\n {2}build \(plain\) +\[1 vCPU, 1024 MiB, debian/);
    assert.match(run.out, /build \(fancy, sparkles\)[\s\S]*matrix: \{"flavor":"fancy","extra":"sparkles"\}/);
    assert.match(run.out, /wave 2:\n {2}report [\s\S]*needs: build \(plain\), build \(fancy, sparkles\)/);
    assert.deepEqual(await readdir(host.driver.registry.vmsDir).catch(() => []), []);
  });

  it('runs a matrix, passes outputs down a needs chain, and carries GITHUB_ENV / GITHUB_PATH between steps', () => {
    const run = hearthRun(host, [join(E2E, 'github-project/.github/workflows/pass.yml')]);
    assert.equal(run.status, 0, run.out + run.err);
    for (const [flavor, key] of [
      ['plain', 'build (plain)'],
      ['fancy', 'build (fancy, sparkles)'],
    ] as const) {
      assert.ok(run.lines.includes(`[${key}] tool-on-path`), `GITHUB_PATH not applied in ${key}`);
      assert.ok(run.lines.includes(`[${key}] checked-out-marker`), `checkout missing in ${key}`);
      assert.ok(run.lines.includes(`[${key}] composite said hello ${flavor}`), `composite output missing in ${key}`);
      assert.equal(resultOf(run.out, key), 'success');
    }
    assert.ok(run.lines.includes('[build (fancy, sparkles)] matrix fancy extra=sparkles step-output=pkg-fancy'));
    assert.ok(run.lines.includes('[build (plain)] matrix plain extra= step-output=pkg-plain'));
    assert.ok(
      run.lines.some((l) => /^\[report\] needs output pkg-(plain|fancy) result success$/.test(l)),
      run.out,
    );
    assert.ok(run.lines.includes('[report] in /tmp/runner for by-push'), 'workflow env and working-directory are interpolated');
  });

  it('continue-on-error tolerates a step, a real failure fails the job, if: failure() cleans up, dependants are skipped', () => {
    const run = hearthRun(host, [join(E2E, 'github-project/.github/workflows/fail.yml')]);
    assert.equal(run.status, 1, run.out + run.err);
    const flaky = run.lines.filter((l) => l.startsWith('[flaky] '));
    assert.ok(flaky.some((l) => l.includes('✗ Tolerated failure') && l.includes('continue-on-error')));
    assert.ok(flaky.includes('[flaky] still running after a tolerated failure'));
    assert.ok(flaky.includes('[flaky] about to fail'));
    assert.ok(!flaky.includes('[flaky] never printed'));
    assert.ok(flaky.includes('[flaky] - Run echo "never printed" (skipped)'));
    assert.ok(flaky.includes('[flaky] cleanup after failure'));
    assert.ok(flaky.includes('[flaky] always runs'));
    assert.ok(!run.out.includes('must not run'));
    assert.equal(resultOf(run.out, 'flaky'), 'failure');
    assert.equal(resultOf(run.out, 'downstream'), 'skipped');
    assert.equal(resultOf(run.out, 'gated'), 'skipped');
    assert.equal(resultOf(run.out, 'after-gated'), 'skipped', 'a job whose need was skipped is skipped');
    assert.match(run.out, /\n4 job\(s\): 1 failed, 3 skipped\n/);
  });

  it('runs a GitLab pipeline with stages, needs, rules and allow_failure', async (t) => {
    // Its rules read the branch of the project's git checkout: a copy in a repository of its own on main, so the
    // result does not depend on the branch Hearth itself is checked out on.
    const project = await mkdtemp(join(tmpdir(), 'hearth-e2e-gitlab-'));
    t.after(() => rm(project, { recursive: true, force: true }));
    await cp(join(E2E, 'gitlab-project'), project, { recursive: true });
    const git = (...args: string[]) =>
      assert.equal(spawnSync('git', ['-C', project, '-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args]).status, 0, `git ${args.join(' ')}`);
    git('init', '-q', '-b', 'main');
    git('add', '.');
    git('commit', '-q', '-m', 'e2e');
    const run = hearthRun(host, [join(project, '.gitlab-ci.yml')]);
    assert.equal(run.status, 0, run.out + run.err);
    assert.ok(run.lines.includes('[build] $ echo "$GREETING from $CI_JOB_NAME"'));
    assert.ok(run.lines.includes('[build] hello from build'));
    assert.ok(run.lines.includes('[build] gitlab-marker'));
    assert.ok(run.lines.includes('[unit] unit on main'));
    assert.ok(run.lines.includes('[lint] after_script sees failed'));
    for (const [job, line] of [
      ['build', /^\[build\] ✓ before_script \(\d+\.\d s\)$/],
      ['build', /^\[build\] ✓ script \(\d+\.\d s\)$/],
      ['lint', /^\[lint\] ✗ script \(\d+\.\d s, exit 2\)$/],
      ['lint', /^\[lint\] ✓ after_script \(\d+\.\d s\)$/],
    ] as const) {
      assert.ok(
        run.lines.some((l) => line.test(l)),
        `${job}: no line like ${line}`,
      );
    }
    assert.ok(!run.out.includes('hearth-section-'), 'section markers leak into the output');
    assert.ok(run.lines.includes('[deploy] deploying hello'));
    assert.equal(resultOf(run.out, 'lint'), 'failure (allowed)');
    assert.equal(resultOf(run.out, 'deploy'), 'success');
    assert.ok(!run.out.includes('[nightly]'));
    assert.match(run.out, /not planned: nightly/);
  });

  it("runs the example project's GitHub workflow and GitLab pipeline on the debian image", () => {
    const github = hearthRun(host, [join(EXAMPLE, '.github/workflows/ci.yml')]);
    assert.equal(github.status, 0, github.out + github.err);
    assert.equal(github.lines.filter((l) => l.endsWith('] all wordfreq tests passed')).length, 3);
    const gitlab = hearthRun(host, [join(EXAMPLE, '.gitlab-ci.yml')]);
    assert.equal(gitlab.status, 0, gitlab.out + gitlab.err);
    assert.equal(gitlab.lines.filter((l) => l.endsWith('] all wordfreq tests passed')).length, 3);
  });
});
