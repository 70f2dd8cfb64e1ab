import { performance } from 'node:perf_hooks';
import type { VmDriver } from '../../vm/driver.ts';
import { GITLAB_PROJECT_DIR, predefinedVariables, type GitlabPlanOptions } from '../gitlab/parse.ts';
import type { GitlabJobBody, PlannedJob } from '../model.ts';
import { bootJobVm } from './job-vm.ts';
import { JobLog } from './job-log.ts';
import type { JobOutcome, JobRun, StepOutcome } from './plan-runner.ts';

/** GitLab gives after_script five minutes of its own. */
const AFTER_SCRIPT_SECONDS = 300;

export interface GitlabRunEnvironment {
  readonly driver: VmDriver;
  readonly repoRoot: string;
  readonly write: (line: string) => void;
  readonly planOptions: GitlabPlanOptions;
  /** Masked in the log. */
  readonly secrets: Readonly<Record<string, string>>;
  readonly network: boolean;
}

/** A shell script that echoes each command as the GitLab runner does (`$ command`) before running it. */
export function gitlabScript(commands: readonly string[]): string {
  const quote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;
  return ['set -eo pipefail', ...commands.flatMap((c) => [`printf '%s\\n' ${quote(`$ ${c}`)}`, c])].join('\n') + '\n';
}

function shouldRun(body: GitlabJobBody, run: JobRun): { run: boolean; why: string } {
  const needs = Object.values(run.needs);
  const anyFailed = needs.some((n) => (n.result === 'failure' || n.result === 'cancelled') && !n.allowFailure);
  // A need that was skipped never succeeded: what depends on it is skipped too, down the chain.
  const anySkipped = needs.some((n) => n.result === 'skipped');
  if (body.when === 'always') return { run: true, why: '' };
  if (body.when === 'on_failure') return { run: anyFailed, why: 'when: on_failure and nothing before it failed' };
  if (anyFailed) return { run: false, why: 'a job it needs failed' };
  return { run: !anySkipped, why: 'a job it needs was skipped' };
}

/** Runs one GitLab CI job in a fresh VM: before_script and script in one shell, then after_script. */
export async function runGitlabJob(run: JobRun, env: GitlabRunEnvironment): Promise<JobOutcome> {
  const job: PlannedJob = run.job;
  const body = job.body as GitlabJobBody;
  const log = new JobLog(job.key, env.write, Object.values(env.secrets));
  const decision = shouldRun(body, run);
  if (!decision.run) {
    log.line(`skipped: ${decision.why}`);
    return { result: 'skipped', outputs: {}, steps: [], reason: decision.why };
  }
  const { session, bootMs, dispose } = await bootJobVm(run, env, log);
  const steps: StepOutcome[] = [];
  try {
    await session.capture(['sh', '-c', `mkdir -p ${GITLAB_PROJECT_DIR} && cp -a /mnt/hearth-src/. ${GITLAB_PROJECT_DIR}/`]);
    const variables = { ...predefinedVariables(env.planOptions, job), ...body.variables, ...env.planOptions.variables, HOME: '/root', PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };
    const scriptStarted = performance.now();
    const exitCode = await session.runScript({ script: gitlabScript([...body.beforeScript, ...body.script]), shell: 'bash', env: variables, cwd: GITLAB_PROJECT_DIR });
    const ok = exitCode === 0;
    steps.push({ name: 'script', result: ok ? 'success' : 'failure', durationMs: performance.now() - scriptStarted });
    log.line(ok ? 'Job succeeded' : `ERROR: Job failed: exit code ${exitCode}`);
    if (body.afterScript.length) {
      const afterStarted = performance.now();
      log.line('Running after_script');
      const afterCode = await session.runScript({ script: gitlabScript(body.afterScript), shell: 'bash', env: { ...variables, CI_JOB_STATUS: ok ? 'success' : 'failed' }, cwd: GITLAB_PROJECT_DIR, timeoutSeconds: AFTER_SCRIPT_SECONDS });
      // As in GitLab, a failing after_script does not change the job's result.
      if (afterCode !== 0) log.line(`WARNING: after_script failed with exit code ${afterCode}`);
      steps.push({ name: 'after_script', result: afterCode === 0 ? 'success' : 'failure', durationMs: performance.now() - afterStarted });
    }
    return { result: ok ? 'success' : 'failure', outputs: {}, steps, bootMs };
  } catch (error) {
    if (run.signal.aborted) return { result: 'cancelled', outputs: {}, steps, bootMs, reason: 'cancelled' };
    log.line(`error: ${(error as Error).message}`);
    return { result: 'failure', outputs: {}, steps, bootMs, reason: (error as Error).message };
  } finally {
    await dispose();
  }
}
