import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { isHearthError } from '../../errors.ts';
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
  return gitlabSectionsScript([{ name: 'script', commands }]);
}

function quote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * Sections (before_script, script) run in one shell, as GitLab runs them, so
 * what before_script exports reaches script. With a marker, each section
 * starts by printing `<marker> <name>` on stdout, which tells the host where
 * one section ends and the next begins.
 */
export function gitlabSectionsScript(sections: readonly { readonly name: string; readonly commands: readonly string[] }[], marker?: string): string {
  const lines = ['set -eo pipefail'];
  for (const section of sections) {
    if (marker) lines.push(`printf '%s\\n' ${quote(`${marker} ${section.name}`)}`);
    for (const command of section.commands) lines.push(`printf '%s\\n' ${quote(`$ ${command}`)}`, command);
  }
  return lines.join('\n') + '\n';
}

/**
 * Times the sections of one script run from the markers it prints, and
 * reports each as the GitHub path reports steps: `✓ name (N s)` when the next
 * one starts or the script ends, `✗ name (N s, exit N)` for the one that
 * failed, and `- name (not run)` for those after it.
 */
export class SectionClock {
  private current: { name: string; started: number } | undefined;
  private readonly outcomes: StepOutcome[] = [];

  constructor(
    private readonly names: readonly string[],
    private readonly log: JobLog,
    private readonly now: () => number = () => performance.now(),
    private readonly started = now(),
  ) {}

  /** A marker arrived: the section before it passed. */
  start(name: string): void {
    this.close('success');
    this.current = { name, started: this.now() };
  }

  private close(result: 'success' | 'failure', detail = ''): void {
    if (!this.current) return;
    const durationMs = this.now() - this.current.started;
    const seconds = (durationMs / 1000).toFixed(1);
    this.outcomes.push({ name: this.current.name, result, durationMs });
    this.log.line(result === 'success' ? `✓ ${this.current.name} (${seconds} s)` : `✗ ${this.current.name} (${seconds} s${detail})`);
    this.current = undefined;
  }

  /** The script ended (exit code), or was stopped (undefined, with why): closes the running section and lists the ones never reached. */
  finish(exitCode: number | undefined, why = ''): StepOutcome[] {
    // No marker came through (the script failed before printing one): blame the first section.
    if (!this.current && this.outcomes.length === 0 && this.names[0]) this.current = { name: this.names[0], started: this.started };
    const failedAt = this.current?.name;
    if (exitCode === 0) this.close('success');
    else this.close('failure', exitCode === undefined ? `, ${why}` : `, exit ${exitCode}`);
    for (const name of this.names.slice(this.names.indexOf(failedAt ?? '') + 1)) {
      if (this.outcomes.some((o) => o.name === name)) continue;
      this.outcomes.push({ name, result: 'skipped', durationMs: 0 });
      this.log.line(`- ${name} (not run)`);
    }
    return this.outcomes;
  }
}

function minutesText(minutes: number): string {
  const h = Math.floor(minutes / 60);
  const m = Math.round(minutes % 60);
  return h ? `${h}h ${m}m` : `${m}m`;
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
  const sections = [...(body.beforeScript.length ? [{ name: 'before_script', commands: body.beforeScript }] : []), { name: 'script', commands: body.script }];
  const clock = new SectionClock(
    sections.map((s) => s.name),
    log,
  );
  const marker = `hearth-section-${randomBytes(6).toString('hex')}`;
  let scriptDone = false;
  try {
    await session.capture(['sh', '-c', `mkdir -p ${GITLAB_PROJECT_DIR} && cp -a /mnt/hearth-src/. ${GITLAB_PROJECT_DIR}/`]);
    const variables = {
      ...predefinedVariables(env.planOptions, job),
      ...body.variables,
      ...env.planOptions.variables,
      HOME: '/root',
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    };
    log.interceptStdout((line) => {
      if (!line.startsWith(`${marker} `)) return false;
      clock.start(line.slice(marker.length + 1));
      return true;
    });
    const { exitCode } = await session.runScript({ script: gitlabSectionsScript(sections, marker), shell: 'bash', env: variables, cwd: GITLAB_PROJECT_DIR });
    log.interceptStdout(undefined);
    steps.push(...clock.finish(exitCode));
    scriptDone = true;
    const ok = exitCode === 0;
    log.line(ok ? 'Job succeeded' : `ERROR: Job failed: exit code ${exitCode}`);
    if (body.afterScript.length) {
      const afterStarted = performance.now();
      log.line('Running after_script');
      // after_script has a timeout of its own, past the job's.
      session.extendDeadline(AFTER_SCRIPT_SECONDS + 30);
      const { exitCode: afterCode } = await session.runScript({
        script: gitlabScript(body.afterScript),
        shell: 'bash',
        env: { ...variables, CI_JOB_STATUS: ok ? 'success' : 'failed' },
        cwd: GITLAB_PROJECT_DIR,
        timeoutSeconds: AFTER_SCRIPT_SECONDS,
      });
      const durationMs = performance.now() - afterStarted;
      const seconds = (durationMs / 1000).toFixed(1);
      // As in GitLab, a failing after_script does not change the job's result.
      log.line(afterCode === 0 ? `✓ after_script (${seconds} s)` : `✗ after_script (${seconds} s, exit ${afterCode}; the job's result stands)`);
      steps.push({ name: 'after_script', result: afterCode === 0 ? 'success' : 'failure', durationMs });
    }
    return { result: ok ? 'success' : 'failure', outputs: {}, steps, bootMs };
  } catch (error) {
    log.interceptStdout(undefined);
    const timedOut = isHearthError(error, 'HEARTH_ERR_EXEC_TIMEOUT');
    if (!scriptDone) steps.push(...clock.finish(undefined, timedOut ? 'timed out' : run.signal.aborted ? 'cancelled' : 'error'));
    if (run.signal.aborted) return { result: 'cancelled', outputs: {}, steps, bootMs, reason: 'cancelled' };
    const reason = timedOut
      ? `execution took longer than the job's timeout of ${minutesText(job.timeoutMinutes)}; the VM was destroyed`
      : (error as Error).message;
    log.line(`ERROR: Job failed: ${reason}`);
    return { result: 'failure', outputs: {}, steps, bootMs, reason };
  } finally {
    await dispose();
  }
}
