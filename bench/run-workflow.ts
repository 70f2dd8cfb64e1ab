/**
 * npm run bench (part 2): `hearth run` on the example project's GitHub workflow
 * ÷ the same steps run directly on this host, one after the other in a scratch
 * copy of the project (BENCH_RUNS runs each, interleaved, medians). Boot time is
 * reported on its own: it is the part of the ratio that is the VM itself.
 */
import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { resolvePaths } from '../src/config/paths.ts';
import { createLogger } from '../src/log.ts';
import { githubContextFor } from '../src/workflow/github/context.ts';
import { interpolate } from '../src/workflow/github/expressions.ts';
import { parseGithubWorkflow } from '../src/workflow/github/parse.ts';
import { runGithubJob } from '../src/workflow/runner/github-job.ts';
import { runPlan } from '../src/workflow/runner/plan-runner.ts';
import { QemuDriver } from '../src/vm/qemu/driver.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const project = join(import.meta.dirname, '..', 'examples', 'wordfreq');
const workflow = join(project, '.github', 'workflows', 'ci.yml');

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

const root = await mkdtemp(join(tmpdir(), 'hearth-bench-run-'));
const driver = new QemuDriver({
  paths: { cache: resolvePaths().cache, data: join(root, 'data'), runtime: join(root, 'run') },
  logger: createLogger({ level: 'silent' }),
  accel: process.env.HEARTH_ACCEL,
});
const plan = await parseGithubWorkflow(workflow, { repoRoot: project, event: 'push', inputs: {} });
const { github, payload } = await githubContextFor({ event: 'push', repoRoot: project, inputs: {} });

/** The reference: every job's run steps, in plan order, with bash on the host. */
async function onHost(): Promise<number> {
  const started = performance.now();
  for (const job of plan.jobs) {
    if (job.body.kind !== 'github') continue;
    const work = await mkdtemp(join(root, 'host-'));
    await cp(project, work, { recursive: true });
    const contexts = {
      github,
      env: {},
      vars: {},
      matrix: job.body.matrix,
      needs: {},
      steps: {},
      job: { status: 'success' },
      runner: {},
      inputs: {},
      secrets: {},
      strategy: {},
    };
    for (const step of job.body.steps) {
      if (step.action.kind !== 'run') continue;
      execFileSync('bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', interpolate(step.action.script, contexts, step.location)], {
        cwd: work,
        stdio: 'ignore',
      });
    }
    await rm(work, { recursive: true, force: true });
  }
  return performance.now() - started;
}

async function inVms(): Promise<{ total: number; boots: number[]; stepsMs: number }> {
  const boots: number[] = [];
  let stepsMs = 0;
  const started = performance.now();
  const results = await runPlan(plan, {
    executeJob: (run) =>
      runGithubJob(run, {
        driver,
        repoRoot: project,
        write: () => {},
        github,
        eventPayload: JSON.stringify(payload),
        secrets: {},
        vars: {},
        inputs: {},
        network: false,
        jobIdOf: (key) => key,
      }),
  });
  const total = performance.now() - started;
  for (const r of results) {
    if (r.result !== 'success') throw new Error(`job ${r.key} ended ${r.result}: ${r.reason ?? ''}`);
    if (r.bootMs !== undefined) boots.push(r.bootMs);
    stepsMs += r.steps.reduce((sum, step) => sum + step.durationMs, 0);
  }
  return { total, boots, stepsMs };
}

try {
  const host: number[] = [];
  const vm: number[] = [];
  const boots: number[] = [];
  const steps: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    host.push(await onHost());
    const run = await inVms();
    vm.push(run.total);
    boots.push(...run.boots);
    steps.push(run.stepsMs);
    process.stderr.write(`  run ${i + 1}: host ${host.at(-1)!.toFixed(0)} ms, hearth run ${run.total.toFixed(0)} ms\n`);
  }
  process.stdout.write(`\nhearth run examples/wordfreq ci.yml (${plan.jobs.length} jobs, medians of ${RUNS})\n`);
  process.stdout.write(
    `hearth run ${median(vm).toFixed(0)} ms ÷ same steps on the host ${median(host).toFixed(0)} ms = ${(median(vm) / median(host)).toFixed(2)}\n`,
  );
  process.stdout.write(`VM boot per job (debian image): median ${median(boots).toFixed(0)} ms\n`);
  process.stdout.write(
    `steps inside the VMs, summed over jobs: ${median(steps).toFixed(0)} ms (${(median(steps) / median(host)).toFixed(1)}x the host: the guest CPU's cost, large under TCG)\n`,
  );
} finally {
  await driver.destroyAll();
  await rm(root, { recursive: true, force: true });
}
