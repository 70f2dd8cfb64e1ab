import { performance } from 'node:perf_hooks';
import { isHearthError } from '../../errors.ts';
import type { VmDriver } from '../../vm/driver.ts';
import { workflowError } from '../errors.ts';
import { evaluateCondition, evaluateValue, interpolate, type ExpressionContexts, type JobStatus } from '../github/expressions.ts';
import type { GithubJobBody, GithubStep, PlannedJob } from '../model.ts';
import { parseFileCommand } from './file-commands.ts';
import type { GuestSession } from './guest-session.ts';
import { bootJobVm } from './job-vm.ts';
import { JobLog } from './job-log.ts';
import type { FinishedJob, JobOutcome, JobRun, StepOutcome } from './plan-runner.ts';

export const WORKSPACE = '/workspace';
const EVENT_PATH = '/tmp/hearth/event.json';

export interface GithubRunEnvironment {
  readonly driver: VmDriver;
  readonly repoRoot: string;
  readonly write: (line: string) => void;
  /** The `github` context, the same for every job of the run. */
  readonly github: Readonly<Record<string, unknown>>;
  /** JSON of the synthesized event, written to $GITHUB_EVENT_PATH. */
  readonly eventPayload: string;
  readonly secrets: Readonly<Record<string, string>>;
  readonly vars: Readonly<Record<string, string>>;
  readonly inputs: Readonly<Record<string, string>>;
  readonly network: boolean;
  /** The job id (`jobs.<id>`) of a planned job's key, for the needs context. */
  readonly jobIdOf: (key: string) => string;
}

interface StepRecord {
  outcome: 'success' | 'failure' | 'skipped';
  conclusion: 'success' | 'failure' | 'skipped';
  outputs: Record<string, string>;
}

/** State shared by all steps of a job: what $GITHUB_ENV and $GITHUB_PATH added, the summary. */
interface JobState {
  failed: boolean;
  envFromFiles: Record<string, string>;
  pathPrefix: string[];
  summary: string[];
  fileCounter: number;
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function joinPath(base: string, dir: string | undefined): string {
  if (!dir) return base;
  return dir.startsWith('/') ? dir : `${base}/${dir}`;
}

/** Runs one GitHub Actions job in a fresh VM: its steps in order, as the official runner would. */
export async function runGithubJob(run: JobRun, env: GithubRunEnvironment): Promise<JobOutcome> {
  const job: PlannedJob = run.job;
  const body = job.body as GithubJobBody;
  const log = new JobLog(job.key, env.write, Object.values(env.secrets));
  const needs: Record<string, { result: string; outputs: Record<string, string> }> = {};
  for (const [key, finished] of Object.entries(run.needs)) needs[env.jobIdOf(key)] = { result: finished.result, outputs: { ...finished.outputs } };
  const upstream = upstreamStatus(run.ancestors);
  const needStatus = upstream.status;
  const runner = { os: 'Linux', arch: 'X64', name: `hearth-${job.key}`, temp: '/tmp/runner', tool_cache: '/opt/hostedtoolcache', workspace: '/' };
  const strategy = {
    'fail-fast': body.strategy.failFast,
    'job-index': body.strategy.jobIndex,
    'job-total': body.strategy.jobTotal,
    'max-parallel': body.strategy.maxParallel ?? body.strategy.jobTotal,
  };
  const base: Omit<ExpressionContexts, 'env' | 'steps' | 'job'> = {
    github: { ...env.github, job: body.jobId },
    vars: env.vars,
    matrix: body.matrix,
    needs,
    runner,
    inputs: env.inputs,
    secrets: env.secrets,
    strategy,
  };

  const jobLevel: ExpressionContexts = { ...base, env: { ...body.workflowEnv }, steps: {}, job: { status: needStatus } };
  if (!evaluateCondition(body.if ?? '', jobLevel, needStatus, job.location)) {
    const why = `if: ${body.if ?? 'success()'} is false${upstream.cause ? ` (${upstream.cause})` : ''}`;
    log.line(`skipped: ${why}`);
    return { result: 'skipped', outputs: {}, steps: [], reason: why };
  }

  const unsupported = firstUnsupported(body.steps);
  if (unsupported) {
    log.line(`error: ${unsupported}`);
    return { result: 'failure', outputs: {}, steps: [], reason: unsupported.split(';')[0]! };
  }
  const { session, bootMs, dispose } = await bootJobVm(run, env, log);
  const state: JobState = { failed: false, envFromFiles: {}, pathPrefix: [], summary: [], fileCounter: 0 };
  const outcomes: StepOutcome[] = [];
  try {
    await session.capture(['sh', '-c', `mkdir -p ${WORKSPACE} /tmp/runner /tmp/hearth && printf %s "$1" > ${EVENT_PATH}`, 'sh', env.eventPayload]);
    // Workflow and job env may refer to matrix, needs, secrets and the like; evaluated once, before the steps.
    const jobEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries(body.workflowEnv)) jobEnv[k] = interpolate(v, { ...jobLevel, env: jobEnv }, job.location);
    for (const [k, v] of Object.entries(body.jobEnv)) jobEnv[k] = interpolate(v, { ...jobLevel, env: jobEnv }, job.location);
    const scope = { base, jobEnv, steps: {} as Record<string, StepRecord>, inputs: env.inputs };
    await runSteps(body.steps, scope, { session, log, state, outcomes, body, env, signal: run.signal });
    const finalContexts: ExpressionContexts = {
      ...base,
      env: { ...jobEnv, ...state.envFromFiles },
      steps: scope.steps,
      job: { status: state.failed ? 'failure' : 'success' },
    };
    const outputs: Record<string, string> = {};
    for (const [name, template] of Object.entries(body.outputs)) outputs[name] = interpolate(template, finalContexts, job.location);
    if (state.summary.length) log.line(`job summary:\n${state.summary.join('\n')}`);
    return { result: state.failed ? 'failure' : 'success', outputs, steps: outcomes, bootMs };
  } catch (error) {
    if (run.signal.aborted) return { result: 'cancelled', outputs: {}, steps: outcomes, bootMs, reason: 'cancelled' };
    // The host enforces the job's timeout-minutes by destroying the VM.
    const reason = isHearthError(error, 'HEARTH_ERR_EXEC_TIMEOUT')
      ? `the job ran past its timeout-minutes (${job.timeoutMinutes}); the VM was destroyed`
      : (error as Error).message;
    log.line(`error: ${reason}`);
    return { result: 'failure', outputs: {}, steps: outcomes, bootMs, reason };
  } finally {
    await dispose();
  }
}

/**
 * The job status a job's `if:` sees, from every job up its needs chain, as
 * GitHub decides it: a failure anywhere makes failure() true; a job cancelled
 * (fail-fast) or skipped anywhere makes success() false, so that without a
 * status function in its `if:` the job is skipped; always() still runs it, and
 * `!failure()` runs it after a skip.
 */
export function upstreamStatus(ancestors: Readonly<Record<string, FinishedJob>>): { status: JobStatus; cause?: string } {
  const all = Object.values(ancestors);
  const first = (result: FinishedJob['result']): FinishedJob | undefined => all.find((a) => a.result === result && !(result === 'failure' && a.allowFailure));
  const failed = first('failure');
  if (failed) return { status: 'failure', cause: `${failed.key} failed` };
  const cancelled = first('cancelled');
  if (cancelled) return { status: 'cancelled', cause: `${cancelled.key} was cancelled` };
  const skipped = first('skipped');
  if (skipped) return { status: 'skipped', cause: `${skipped.key} was skipped` };
  return { status: 'success' };
}

/** The message of the first step that cannot run, looking into composite actions too. */
export function firstUnsupported(steps: readonly GithubStep[]): string | undefined {
  for (const step of steps) {
    if (step.action.kind === 'unsupported') return step.action.message;
    if (step.action.kind === 'composite') {
      const inner = firstUnsupported(step.action.steps);
      if (inner) return inner;
    }
  }
  return undefined;
}

interface StepScope {
  readonly base: Omit<ExpressionContexts, 'env' | 'steps' | 'job'>;
  readonly jobEnv: Record<string, string>;
  readonly steps: Record<string, StepRecord>;
  readonly inputs: Readonly<Record<string, string>>;
}

interface StepDeps {
  readonly session: GuestSession;
  readonly log: JobLog;
  readonly state: JobState;
  readonly outcomes: StepOutcome[];
  readonly body: GithubJobBody;
  readonly env: GithubRunEnvironment;
  readonly signal: AbortSignal;
}

async function runSteps(steps: readonly GithubStep[], scope: StepScope, deps: StepDeps): Promise<void> {
  for (const [index, step] of steps.entries()) {
    const status: JobStatus = deps.signal.aborted ? 'cancelled' : deps.state.failed ? 'failure' : 'success';
    const contexts = (env: Record<string, string>): ExpressionContexts => ({ ...scope.base, inputs: scope.inputs, env, steps: scope.steps, job: { status } });
    const env: Record<string, string> = { ...scope.jobEnv, ...deps.state.envFromFiles };
    for (const [k, v] of Object.entries(step.env)) env[k] = interpolate(v, contexts(env), step.location);
    const id = step.id ?? `__step${index}`;
    const name = interpolate(step.name, contexts(env), step.location);
    if (!evaluateCondition(step.if ?? '', contexts(env), status, step.location)) {
      scope.steps[id] = { outcome: 'skipped', conclusion: 'skipped', outputs: {} };
      deps.outcomes.push({ name, result: 'skipped', durationMs: 0 });
      deps.log.line(`- ${name} (skipped)`);
      continue;
    }
    deps.log.line(`▶ ${name}`);
    const started = performance.now();
    const { exitCode, outputs } = await runStep(step, env, contexts, scope, deps);
    const continueOnError =
      typeof step.continueOnError === 'boolean' ? step.continueOnError : evaluateCondition(`${step.continueOnError}`, contexts(env), status, step.location);
    const outcome = exitCode === 0 ? 'success' : 'failure';
    const conclusion = outcome === 'failure' && continueOnError ? 'success' : outcome;
    scope.steps[id] = { outcome, conclusion, outputs };
    if (conclusion === 'failure') deps.state.failed = true;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    deps.outcomes.push({ name, result: outcome, ...(outcome !== conclusion ? { failedButContinued: true } : {}), durationMs: performance.now() - started });
    deps.log.line(
      outcome === 'success' ? `✓ ${name} (${seconds} s)` : `✗ ${name} (${seconds} s, exit ${exitCode}${conclusion === 'success' ? ', continue-on-error' : ''})`,
    );
  }
}

async function runStep(
  step: GithubStep,
  env: Record<string, string>,
  contexts: (env: Record<string, string>) => ExpressionContexts,
  scope: StepScope,
  deps: StepDeps,
): Promise<{ exitCode: number; outputs: Record<string, string> }> {
  const { session, state, body } = deps;
  const action = step.action;
  if (action.kind === 'checkout') {
    const path = joinPath(WORKSPACE, action.with.path ? interpolate(action.with.path, contexts(env), step.location) : undefined);
    const { exitCode } = await session.runScript({
      script: `mkdir -p '${path}' && cp -a /mnt/hearth-src/. '${path}/'\necho "copied the local working tree into ${path}"\n`,
      shell: 'sh',
      env: {},
      cwd: '/',
    });
    return { exitCode, outputs: {} };
  }
  if (action.kind === 'composite') {
    const inputs: Record<string, string> = {};
    for (const [name, spec] of Object.entries(action.inputs))
      if (spec.default !== undefined) inputs[name] = interpolate(spec.default, contexts(env), step.location);
    for (const [name, value] of Object.entries(action.with)) inputs[name] = interpolate(value, contexts(env), step.location);
    const inner: StepScope = { base: scope.base, jobEnv: env, steps: {}, inputs };
    const failedBefore = state.failed;
    state.failed = false;
    await runSteps(action.steps, inner, deps);
    const failed = state.failed;
    state.failed = failedBefore;
    const outputs: Record<string, string> = {};
    const innerContexts: ExpressionContexts = { ...scope.base, inputs, env, steps: inner.steps, job: { status: failed ? 'failure' : 'success' } };
    for (const [name, template] of Object.entries(action.outputs)) outputs[name] = interpolate(template, innerContexts, step.location);
    return { exitCode: failed ? 1 : 0, outputs };
  }

  if (action.kind === 'unsupported') throw new Error(action.message);
  const dir = `/tmp/hearth/files/${++state.fileCounter}`;
  const files = { GITHUB_OUTPUT: `${dir}/output`, GITHUB_ENV: `${dir}/env`, GITHUB_PATH: `${dir}/path`, GITHUB_STEP_SUMMARY: `${dir}/summary` };
  const github = scope.base.github as Record<string, unknown>;
  const defaults: Record<string, string> = {
    CI: 'true',
    GITHUB_ACTIONS: 'true',
    GITHUB_WORKSPACE: WORKSPACE,
    GITHUB_EVENT_PATH: EVENT_PATH,
    GITHUB_EVENT_NAME: str(github.event_name),
    GITHUB_SHA: str(github.sha),
    GITHUB_REF: str(github.ref),
    GITHUB_REF_NAME: str(github.ref_name),
    GITHUB_REPOSITORY: str(github.repository),
    GITHUB_ACTOR: str(github.actor),
    GITHUB_RUN_ID: str(github.run_id),
    GITHUB_RUN_NUMBER: str(github.run_number),
    GITHUB_JOB: body.jobId,
    RUNNER_OS: 'Linux',
    RUNNER_ARCH: 'X64',
    RUNNER_TEMP: '/tmp/runner',
    HOME: '/root',
    ...files,
  };
  const path = [...state.pathPrefix, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'].join(':');
  const timeoutSeconds = stepTimeoutSeconds(step, contexts(env));
  const { exitCode, durationMs } = await session.runScript({
    script: interpolate(action.script, contexts(env), step.location),
    shell: step.shell ?? 'bash',
    env: { ...defaults, PATH: path, ...env },
    cwd: joinPath(WORKSPACE, interpolate(step.workingDirectory ?? '', contexts(env), step.location) || undefined),
    ...(timeoutSeconds ? { timeoutSeconds } : {}),
    setup: `mkdir -p ${dir} && : > ${files.GITHUB_OUTPUT} && : > ${files.GITHUB_ENV} && : > ${files.GITHUB_PATH} && : > ${files.GITHUB_STEP_SUMMARY}`,
  });
  // `timeout -s KILL` ends the script with 137 (124 where timeout's own status shows).
  if (timeoutSeconds && (exitCode === 137 || exitCode === 124) && durationMs >= timeoutSeconds * 1000 - 500) {
    deps.log.line(`error: ${step.name} ran past its timeout-minutes (${timeoutSeconds} s) and was killed`);
  }
  const raw = (
    await session.capture([
      'sh',
      '-c',
      `cat ${files.GITHUB_OUTPUT}; printf '\\0'; cat ${files.GITHUB_ENV}; printf '\\0'; cat ${files.GITHUB_PATH}; printf '\\0'; cat ${files.GITHUB_STEP_SUMMARY}`,
    ])
  ).split('\0');
  const outputs = parseFileCommand(raw[0] ?? '', 'GITHUB_OUTPUT');
  Object.assign(state.envFromFiles, parseFileCommand(raw[1] ?? '', 'GITHUB_ENV'));
  const added = (raw[2] ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  // Later additions come first, as with the runner's prepend.
  state.pathPrefix.unshift(...added.reverse());
  addStepSummary(state, deps.log, raw[3] ?? '');
  return { exitCode, outputs };
}

/** GitHub's limit for one step's $GITHUB_STEP_SUMMARY; a larger one is dropped with an error, the step's result unchanged. */
export const STEP_SUMMARY_LIMIT_BYTES = 1024 * 1024;

/** What a step wrote to $GITHUB_STEP_SUMMARY joins the job summary (printed when the job ends), in step order. */
function addStepSummary(state: JobState, log: JobLog, text: string): void {
  const bytes = Buffer.byteLength(text);
  if (bytes > STEP_SUMMARY_LIMIT_BYTES) {
    log.line(
      `error: $GITHUB_STEP_SUMMARY upload aborted, supports content up to a size of ${STEP_SUMMARY_LIMIT_BYTES / 1024}k, got ${Math.ceil(bytes / 1024)}k`,
    );
    return;
  }
  if (text.trim()) state.summary.push(text.trim());
}

/**
 * A step's `timeout-minutes` in seconds, or undefined for none. An expression
 * is evaluated with the step's contexts; anything but a positive number stops
 * the job with an error at the place it was written.
 */
export function stepTimeoutSeconds(step: GithubStep, contexts: ExpressionContexts): number | undefined {
  if (!step.timeout) return undefined;
  const { minutes, location } = step.timeout;
  if (typeof minutes === 'number') return Math.ceil(minutes * 60);
  const value = evaluateValue(minutes, contexts, location);
  const number = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
  if (!(number > 0))
    throw workflowError(
      location,
      `timeout-minutes \${{ ${minutes} }} evaluates to ${JSON.stringify(value)}, not a positive number`,
      'make the expression yield a number of minutes, or write a number',
    );
  return Math.ceil(number * 60);
}
