// The GitHub side of the simulator: workflow runs with one job each, JIT
// runners, the REST routes Hearth calls, workflow_job webhooks, and the
// callback the run.sh stand-in uses in place of GitHub's runner protocol.
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import type { Deliverer } from './deliveries.ts';
import { pingExample, workflowJobExample } from './examples.ts';
import { GithubApp } from './github-app.ts';
import {
  headerValue,
  isoSeconds,
  isPositiveInteger,
  linkHeader,
  matchRoute,
  paginate,
  type Reply,
  type RequestContext,
  type Route,
  type SimCore,
} from './http.ts';
import type { ForgeSimulatorOptions, GithubSimJob, GithubSimRunner } from './types.ts';

type Json = Record<string, unknown>;

interface JobRecord extends GithubSimJob {
  /** The step that fails when the runner finishes; none: the job succeeds. */
  failingStep: string | null;
  createdAt: Date;
  startedAt: Date | null;
  completedAt: Date | null;
}

interface RunRecord {
  id: number;
  repo: string;
  name: string;
  runNumber: number;
  createdAt: Date;
  jobIds: number[];
}

interface RunnerRecord extends GithubSimRunner {
  groupId: number;
  jobId: number | null;
  secret: string;
}

export const GITHUB_RUNNER_CALLBACK = '/_sim/github/runner';
const DOCS = 'https://docs.github.com/rest';
const JIT_DOCS = 'https://docs.github.com/rest/actions/self-hosted-runners#create-configuration-for-a-just-in-time-runner-for-a-repository';
const HOOK_ID = 468210397;
const WORKFLOW_NAME = 'CI';

const notFound = (): Reply => ({ status: 404, json: { message: 'Not Found', documentation_url: DOCS } });
const invalid = (detail: string): Reply => ({ status: 422, json: { message: `Invalid request.\n\n${detail}`, documentation_url: JIT_DOCS } });

export class GithubWorld {
  readonly jobs = new Map<number, JobRecord>();
  readonly runners = new Map<number, RunnerRecord>();
  private readonly runs = new Map<number, RunRecord>();
  private readonly labelIds = new Map<string, number>();
  private readonly app: GithubApp | null;
  // Id ranges apart from each other and past 2^31, so swapped or truncated ids show up.
  private nextJobId = 30_000_000_001;
  private nextRunId = 10_000_000_001;
  private nextRunnerId = 101;
  private requestCount = 0;
  private readonly rateLimitReset = Math.ceil(Date.now() / 1000) + 3600;

  private readonly appRoutes: Route[] = [
    { method: 'POST', pattern: /^\/app\/installations\/(\d+)\/access_tokens$/, handle: (ctx, [id]) => this.createInstallationToken(ctx, id!) },
    { method: 'GET', pattern: /^\/repos\/([^/]+)\/([^/]+)\/installation$/, handle: (ctx, [o]) => this.getInstallation(ctx, o!) },
    { method: 'GET', pattern: /^\/orgs\/([^/]+)\/installation$/, handle: (ctx, [org]) => this.getInstallation(ctx, org!) },
  ];

  private readonly routes: Route[] = [
    {
      method: 'POST',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/actions\/runners\/generate-jitconfig$/,
      handle: (ctx, [o, r]) => this.generateJitConfig(ctx, `repo:${o}/${r}`),
    },
    { method: 'POST', pattern: /^\/orgs\/([^/]+)\/actions\/runners\/generate-jitconfig$/, handle: (ctx, [org]) => this.generateJitConfig(ctx, `org:${org}`) },
    { method: 'GET', pattern: /^\/repos\/([^/]+)\/([^/]+)\/actions\/runners$/, handle: (ctx, [o, r]) => this.listRunners(ctx, `repo:${o}/${r}`) },
    { method: 'GET', pattern: /^\/orgs\/([^/]+)\/actions\/runners$/, handle: (ctx, [org]) => this.listRunners(ctx, `org:${org}`) },
    {
      method: 'GET',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/actions\/runners\/(\d+)$/,
      handle: (_ctx, [o, r, id]) => this.getRunner(`repo:${o}/${r}`, Number(id)),
    },
    { method: 'GET', pattern: /^\/orgs\/([^/]+)\/actions\/runners\/(\d+)$/, handle: (_ctx, [org, id]) => this.getRunner(`org:${org}`, Number(id)) },
    {
      method: 'DELETE',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/actions\/runners\/(\d+)$/,
      handle: (_ctx, [o, r, id]) => this.deleteRunner(`repo:${o}/${r}`, Number(id)),
    },
    { method: 'DELETE', pattern: /^\/orgs\/([^/]+)\/actions\/runners\/(\d+)$/, handle: (_ctx, [org, id]) => this.deleteRunner(`org:${org}`, Number(id)) },
    { method: 'GET', pattern: /^\/repos\/([^/]+)\/([^/]+)\/actions\/runs$/, handle: (ctx, [o, r]) => this.listRuns(ctx, `${o}/${r}`) },
    { method: 'GET', pattern: /^\/repos\/([^/]+)\/([^/]+)\/actions\/runs\/(\d+)$/, handle: (_ctx, [o, r, id]) => this.getRun(`${o}/${r}`, Number(id)) },
    {
      method: 'GET',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/actions\/runs\/(\d+)\/jobs$/,
      handle: (ctx, [o, r, id]) => this.listRunJobs(ctx, `${o}/${r}`, Number(id)),
    },
    { method: 'GET', pattern: /^\/repos\/([^/]+)\/([^/]+)\/actions\/jobs\/(\d+)$/, handle: (_ctx, [o, r, id]) => this.getJob(`${o}/${r}`, Number(id)) },
  ];

  constructor(
    private readonly core: SimCore,
    private readonly deliverer: Deliverer,
    private readonly options: ForgeSimulatorOptions,
  ) {
    const { githubAppId, githubAppPublicKeyPem, githubInstallationId } = options;
    this.app = githubAppId && githubAppPublicKeyPem && githubInstallationId ? new GithubApp(githubAppId, githubAppPublicKeyPem, githubInstallationId) : null;
  }

  // ---- REST entry point --------------------------------------------------

  async handle(ctx: RequestContext): Promise<Reply> {
    const reply = await this.route(ctx);
    // Every REST answer carries the rate-limit headers clients budget with.
    this.requestCount++;
    reply.headers = {
      'x-ratelimit-limit': '5000',
      'x-ratelimit-remaining': String(Math.max(0, 5000 - this.requestCount)),
      'x-ratelimit-used': String(this.requestCount),
      'x-ratelimit-reset': String(this.rateLimitReset),
      'x-ratelimit-resource': 'core',
      'x-github-api-version-selected': '2022-11-28',
      ...reply.headers,
    };
    return reply;
  }

  private async route(ctx: RequestContext): Promise<Reply> {
    const appRoute = matchRoute(this.appRoutes, ctx);
    if (appRoute) return appRoute.route.handle(ctx, appRoute.params);
    if (!this.authorized(ctx)) return { status: 401, json: { message: 'Bad credentials', documentation_url: DOCS } };
    const found = matchRoute(this.routes, ctx);
    return found ? found.route.handle(ctx, found.params) : notFound();
  }

  private bearer(ctx: RequestContext): string | undefined {
    const match = /^(?:bearer|token)\s+(\S+)$/i.exec(headerValue(ctx.headers, 'authorization') ?? '');
    return match?.[1];
  }

  private authorized(ctx: RequestContext): boolean {
    const token = this.bearer(ctx);
    if (!token) return false;
    return token === this.options.githubToken || (this.app?.acceptsToken(token) ?? false);
  }

  // ---- GitHub App --------------------------------------------------------

  private checkAppJwt(ctx: RequestContext): Reply | undefined {
    if (!this.app) return notFound();
    const jwt = this.bearer(ctx);
    if (!jwt) return { status: 401, json: { message: 'A JSON web token could not be decoded', documentation_url: this.app.documentationUrl } };
    const check = this.app.checkJwt(jwt);
    return check.ok ? undefined : { status: 401, json: { message: check.message, documentation_url: this.app.documentationUrl } };
  }

  private createInstallationToken(ctx: RequestContext, installationId: string): Reply {
    const rejected = this.checkAppJwt(ctx);
    if (rejected) return rejected;
    if (installationId !== this.app!.installationId) return notFound();
    const { token, expiresAt } = this.app!.issueToken();
    return {
      status: 201,
      json: {
        token,
        expires_at: isoSeconds(expiresAt),
        permissions: { actions: 'read', administration: 'write', metadata: 'read' },
        repository_selection: 'all',
      },
    };
  }

  private getInstallation(ctx: RequestContext, account: string): Reply {
    const rejected = this.checkAppJwt(ctx);
    if (rejected) return rejected;
    return {
      status: 200,
      json: {
        id: Number(this.app!.installationId),
        app_id: Number(this.app!.appId),
        account: { login: account },
        target_type: 'Organization',
        repository_selection: 'all',
      },
    };
  }

  // ---- runners -----------------------------------------------------------

  private generateJitConfig(ctx: RequestContext, scope: string): Reply {
    let body: Json;
    try {
      const parsed: unknown = JSON.parse(ctx.body.toString('utf8') || 'null');
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
        return { status: 400, json: { message: 'Problems parsing JSON', documentation_url: JIT_DOCS } };
      body = parsed as Json;
    } catch {
      return { status: 400, json: { message: 'Problems parsing JSON', documentation_url: JIT_DOCS } };
    }
    const { name, runner_group_id: groupId, labels, work_folder: workFolder } = body;
    for (const field of ['name', 'runner_group_id', 'labels']) {
      if (!(field in body)) return invalid(`"${field}" wasn't supplied.`);
    }
    if (typeof name !== 'string' || name === '') return invalid(`For 'properties/name', ${JSON.stringify(name)} is not a non-empty string.`);
    if (!isPositiveInteger(groupId)) return invalid(`For 'properties/runner_group_id', ${JSON.stringify(groupId)} is not an integer.`);
    if (!Array.isArray(labels)) return invalid(`For 'properties/labels', ${JSON.stringify(labels)} is not an array.`);
    if (labels.length < 1 || labels.length > 100)
      return invalid(`For 'properties/labels', the array must have between 1 and 100 items (it has ${labels.length}).`);
    const badLabel = labels.find((l) => typeof l !== 'string' || l === '');
    if (badLabel !== undefined) return invalid(`For 'items' of 'properties/labels', ${JSON.stringify(badLabel)} is not a non-empty string.`);
    if (workFolder !== undefined && typeof workFolder !== 'string')
      return invalid(`For 'properties/work_folder', ${JSON.stringify(workFolder)} is not a string.`);
    const taken = [...this.runners.values()].some((r) => sameScope(r.scope, scope) && r.name === name);
    if (taken) return { status: 409, json: { message: `Already exists - A runner with the name '${name}' already exists.`, documentation_url: JIT_DOCS } };

    const id = this.nextRunnerId++;
    const secret = randomBytes(16).toString('hex');
    // Real configs are opaque base64 JSON; this one names the sim's callback instead of GitHub's broker.
    const config = {
      runnerId: id,
      name,
      callbackUrl: `${this.core.guestUrl}${GITHUB_RUNNER_CALLBACK}`,
      secret,
      scope,
      labels,
      workFolder: workFolder ?? '_work',
    };
    const jitConfig = Buffer.from(JSON.stringify(config)).toString('base64');
    const runner: RunnerRecord = {
      id,
      name,
      labels: labels as string[],
      scope,
      status: 'offline',
      busy: false,
      jitConfig,
      credentialsSeenInGuest: false,
      groupId,
      jobId: null,
      secret,
    };
    this.runners.set(id, runner);
    return { status: 201, json: { runner: this.runnerObject(runner), encoded_jit_config: jitConfig } };
  }

  private runnerObject(runner: RunnerRecord): Json {
    return {
      id: runner.id,
      name: runner.name,
      os: 'linux',
      status: runner.status,
      busy: runner.busy,
      ephemeral: true,
      runner_group_id: runner.groupId,
      labels: runner.labels.map((name) => ({ id: this.labelId(name), name, type: 'custom' })),
    };
  }

  private labelId(name: string): number {
    const key = name.toLowerCase();
    if (!this.labelIds.has(key)) this.labelIds.set(key, this.labelIds.size + 1);
    return this.labelIds.get(key)!;
  }

  private listRunners(ctx: RequestContext, scope: string): Reply {
    const all = [...this.runners.values()].filter((r) => sameScope(r.scope, scope));
    const page = paginate(all, ctx.query, 30);
    return {
      status: 200,
      headers: { link: linkHeader(this.core.url, ctx.path, ctx.query, page) },
      json: { total_count: page.total, runners: page.items.map((r) => this.runnerObject(r)) },
    };
  }

  private getRunner(scope: string, id: number): Reply {
    const runner = this.runners.get(id);
    return runner && sameScope(runner.scope, scope) ? { status: 200, json: this.runnerObject(runner) } : notFound();
  }

  private deleteRunner(scope: string, id: number): Reply {
    const runner = this.runners.get(id);
    if (!runner || !sameScope(runner.scope, scope)) return notFound();
    if (runner.busy) return { status: 422, json: { message: `Bad request - Runner "${runner.name}" is still running a job"`, documentation_url: DOCS } };
    this.runners.delete(id);
    return { status: 204 };
  }

  // ---- runs and jobs -----------------------------------------------------

  async queueJob(j: { repo: string; labels: string[]; name?: string; failingStep?: string }): Promise<GithubSimJob> {
    if (!/^[^/\s]+\/[^/\s]+$/.test(j.repo)) throw new Error(`repo must be owner/name, got ${JSON.stringify(j.repo)}`);
    const now = new Date();
    const run: RunRecord = { id: this.nextRunId++, repo: j.repo, name: WORKFLOW_NAME, runNumber: this.runs.size + 1, createdAt: now, jobIds: [] };
    const job: JobRecord = {
      id: this.nextJobId++,
      runId: run.id,
      repo: j.repo,
      name: j.name ?? 'build',
      labels: [...j.labels],
      status: 'queued',
      conclusion: null,
      runnerId: null,
      runnerName: null,
      failingStep: j.failingStep ?? null,
      createdAt: now,
      startedAt: null,
      completedAt: null,
    };
    run.jobIds.push(job.id);
    this.runs.set(run.id, run);
    this.jobs.set(job.id, job);
    await this.sendJobHook('queued', job);
    return job;
  }

  /**
   * What GitHub does when a runner vanishes mid-job (its VM died with its
   * host): after losing contact it fails the job ("The self-hosted runner lost
   * communication with the server") and, the job being over, drops the JIT runner.
   */
  async loseRunner(runnerName: string): Promise<void> {
    const runner = [...this.runners.values()].find((r) => r.name === runnerName);
    if (!runner) throw new Error(`no GitHub runner ${runnerName}`);
    const job = runner.jobId === null ? undefined : this.jobs.get(runner.jobId);
    this.runners.delete(runner.id);
    if (!job || job.status === 'completed') return;
    this.core.clock.stop(job.id);
    job.status = 'completed';
    job.conclusion = 'failure';
    job.completedAt = new Date();
    await this.sendJobHook('completed', job);
  }

  async cancelJob(jobId: number): Promise<void> {
    const job = this.jobs.get(jobId);
    if (!job) throw new Error(`no GitHub job ${jobId}`);
    // Like GitHub: cancelling a finished job changes nothing.
    if (job.status === 'completed') return;
    job.status = 'completed';
    job.conclusion = 'cancelled';
    job.completedAt = new Date();
    this.core.clock.stop(jobId);
    if (job.runnerId !== null) {
      const runner = this.runners.get(job.runnerId);
      if (runner) runner.busy = false;
    }
    await this.sendJobHook('completed', job);
  }

  private runOf(repo: string, id: number): RunRecord | undefined {
    const run = this.runs.get(id);
    return run && sameRepo(run.repo, repo) ? run : undefined;
  }

  /** One job per run, so the run's state is its job's. */
  private runState(run: RunRecord): { status: string; conclusion: string | null } {
    const job = this.jobs.get(run.jobIds[0]!)!;
    return { status: job.status, conclusion: job.conclusion };
  }

  private runObject(run: RunRecord): Json {
    const [owner, name] = run.repo.split('/') as [string, string];
    const api = `${this.core.url}/repos/${run.repo}/actions/runs/${run.id}`;
    const { status, conclusion } = this.runState(run);
    const repository = { id: repoId(run.repo), name, full_name: run.repo, owner: { login: owner } };
    return {
      id: run.id,
      name: run.name,
      display_title: run.name,
      head_branch: 'main',
      head_sha: 'e3103f8eb03e1ad7f2331c5446b23c070fc54055',
      path: '.github/workflows/ci.yml',
      run_number: run.runNumber,
      run_attempt: 1,
      event: 'push',
      status,
      conclusion,
      workflow_id: 1,
      url: api,
      html_url: `${this.core.url}/${run.repo}/actions/runs/${run.id}`,
      jobs_url: `${api}/jobs`,
      created_at: isoSeconds(run.createdAt),
      updated_at: isoSeconds(new Date()),
      run_started_at: isoSeconds(run.createdAt),
      repository,
      head_repository: repository,
    };
  }

  private listRuns(ctx: RequestContext, repo: string): Reply {
    const status = ctx.query.get('status');
    // GitHub lists newest runs first; `status` matches a status or a conclusion.
    const runs = [...this.runs.values()]
      .filter((run) => sameRepo(run.repo, repo))
      .filter((run) => {
        if (!status) return true;
        const state = this.runState(run);
        return state.status === status || state.conclusion === status;
      })
      .sort((a, b) => b.id - a.id);
    const page = paginate(runs, ctx.query, 30);
    return {
      status: 200,
      headers: { link: linkHeader(this.core.url, ctx.path, ctx.query, page) },
      json: { total_count: page.total, workflow_runs: page.items.map((r) => this.runObject(r)) },
    };
  }

  private getRun(repo: string, id: number): Reply {
    const run = this.runOf(repo, id);
    return run ? { status: 200, json: this.runObject(run) } : notFound();
  }

  private listRunJobs(ctx: RequestContext, repo: string, runId: number): Reply {
    const run = this.runOf(repo, runId);
    if (!run) return notFound();
    const page = paginate(
      run.jobIds.map((id) => this.jobs.get(id)!),
      ctx.query,
      30,
    );
    return {
      status: 200,
      headers: { link: linkHeader(this.core.url, ctx.path, ctx.query, page) },
      json: { total_count: page.total, jobs: page.items.map((j) => this.jobObject(j)) },
    };
  }

  private getJob(repo: string, id: number): Reply {
    const job = this.jobs.get(id);
    return job && sameRepo(job.repo, repo) ? { status: 200, json: this.jobObject(job) } : notFound();
  }

  /** A workflow job as REST returns it: the webhook's workflow_job object. */
  private jobObject(job: JobRecord): Json {
    return this.patchWorkflowJob(workflowJobExample(job.status).workflow_job as Json, job);
  }

  private patchWorkflowJob(base: Json, job: JobRecord): Json {
    const api = `${this.core.url}/repos/${job.repo}`;
    const runner = job.runnerId !== null;
    return Object.assign(base, {
      id: job.id,
      run_id: job.runId,
      run_url: `${api}/actions/runs/${job.runId}`,
      url: `${api}/actions/jobs/${job.id}`,
      html_url: `${this.core.url}/${job.repo}/actions/runs/${job.runId}/job/${job.id}`,
      check_run_url: `${api}/check-runs/${job.id}`,
      workflow_name: WORKFLOW_NAME,
      name: job.name,
      labels: [...job.labels],
      status: job.status,
      conclusion: job.conclusion,
      created_at: isoSeconds(job.createdAt),
      // GitHub reports a queued job's started_at as its creation time.
      started_at: isoSeconds(job.startedAt ?? job.createdAt),
      completed_at: job.completedAt ? isoSeconds(job.completedAt) : null,
      runner_id: job.runnerId,
      runner_name: job.runnerName,
      runner_group_id: runner ? 1 : null,
      runner_group_name: runner ? 'Default' : null,
      ...(job.status === 'completed' && job.failingStep ? { steps: this.failedSteps(job) } : {}),
    });
  }

  /** The steps of a completed job that failed: set-up passed, `failingStep` failed (GitHub's step shape). */
  private failedSteps(job: JobRecord): Json[] {
    const started = isoSeconds(job.startedAt ?? job.createdAt);
    const completed = isoSeconds(job.completedAt ?? new Date());
    return [
      { name: 'Set up job', status: 'completed', conclusion: 'success', number: 1, started_at: started, completed_at: started },
      { name: job.failingStep, status: 'completed', conclusion: 'failure', number: 2, started_at: started, completed_at: completed },
    ];
  }

  // ---- webhooks ----------------------------------------------------------

  private sendJobHook(action: 'queued' | 'in_progress' | 'completed', job: JobRecord): Promise<void> {
    const payload = workflowJobExample(action);
    this.patchWorkflowJob(payload.workflow_job as Json, job);
    const [owner, name] = job.repo.split('/') as [string, string];
    const repository = payload.repository as Json;
    Object.assign(repository, {
      id: repoId(job.repo),
      name,
      full_name: job.repo,
      html_url: `${this.core.url}/${job.repo}`,
      url: `${this.core.url}/repos/${job.repo}`,
    });
    (repository.owner as Json).login = owner;
    if (payload.organization) (payload.organization as Json).login = owner;
    // App webhooks name the installation; repository hooks do not.
    if (this.options.githubInstallationId)
      payload.installation = { id: Number(this.options.githubInstallationId), node_id: 'MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==' };
    else delete payload.installation;
    return this.send('workflow_job', action, job.id, JSON.stringify(payload));
  }

  sendPing(): Promise<void> {
    const payload = pingExample();
    payload.hook_id = HOOK_ID;
    (payload.hook as Json).id = HOOK_ID;
    return this.send('ping', '', 0, JSON.stringify(payload));
  }

  private send(event: string, action: string, jobId: number, body: string): Promise<void> {
    const id = randomUUID();
    const signature = `sha256=${createHmac('sha256', this.options.githubWebhookSecret).update(body).digest('hex')}`;
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'GitHub-Hookshot/sim',
      'x-github-event': event,
      'x-github-delivery': id,
      'x-github-hook-id': String(HOOK_ID),
      'x-hub-signature-256': signature,
    };
    return this.deliverer.enqueue({ forge: 'github', id, event, action, jobId, body, headers });
  }

  // ---- the run.sh stand-in's callback -----------------------------------

  /** POST <callbackUrl>/start and /finish, with the encoded JIT config as the body. */
  async handleRunner(ctx: RequestContext): Promise<Reply> {
    const step = ctx.path.slice(GITHUB_RUNNER_CALLBACK.length);
    if (ctx.method !== 'POST' || (step !== '/start' && step !== '/finish')) return notFound();
    const runner = this.runnerForConfig(ctx.body.toString('utf8').trim());
    if (!runner) return { status: 403, json: { message: 'This JIT config is unknown or its runner was removed.' } };
    return step === '/start' ? this.runnerStart(runner) : this.runnerFinish(runner);
  }

  private runnerForConfig(encoded: string): RunnerRecord | undefined {
    try {
      const config = JSON.parse(Buffer.from(encoded, 'base64').toString('utf8')) as { runnerId?: unknown; secret?: unknown };
      const runner = this.runners.get(Number(config.runnerId));
      return runner && runner.secret === config.secret && runner.jitConfig === encoded ? runner : undefined;
    } catch {
      return undefined;
    }
  }

  private runnerStart(runner: RunnerRecord): Reply {
    runner.credentialsSeenInGuest = true;
    runner.status = 'online';
    // A repeated /start (say after a dropped connection) gets the same job back.
    if (runner.jobId === null) {
      const job = [...this.jobs.values()].filter((j) => j.status === 'queued' && this.canTake(runner, j)).sort((a, b) => a.id - b.id)[0];
      if (!job) return { status: 204 };
      job.status = 'in_progress';
      job.startedAt = new Date();
      job.runnerId = runner.id;
      job.runnerName = runner.name;
      runner.busy = true;
      runner.jobId = job.id;
      this.core.clock.start(job.id);
      void this.sendJobHook('in_progress', job);
    }
    const job = this.jobs.get(runner.jobId!)!;
    return { status: 200, json: { jobId: job.id, repo: job.repo, name: job.name } };
  }

  private async runnerFinish(runner: RunnerRecord): Promise<Reply> {
    if (runner.jobId === null) return { status: 409, json: { message: 'This runner has not taken a job.' } };
    const job = this.jobs.get(runner.jobId)!;
    await this.core.clock.done(job.id);
    if (job.status === 'in_progress') {
      job.status = 'completed';
      job.conclusion = job.failingStep ? 'failure' : 'success';
      job.completedAt = new Date();
      void this.sendJobHook('completed', job);
    }
    // GitHub deletes a JIT runner once its one job is over.
    runner.busy = false;
    this.runners.delete(runner.id);
    return { status: 200, json: { jobId: job.id, conclusion: job.conclusion } };
  }

  /**
   * GitHub's rule: every label of the job is one of the runner's (case-insensitive),
   * and the scope covers the repo. Every self-hosted runner also has the default
   * labels self-hosted, its OS and its architecture, without asking for them.
   */
  private canTake(runner: RunnerRecord, job: JobRecord): boolean {
    const [owner] = job.repo.split('/');
    const inScope = runner.scope.startsWith('org:') ? sameName(runner.scope.slice(4), owner!) : sameRepo(runner.scope.slice(5), job.repo);
    const have = new Set(['self-hosted', 'linux', 'x64', ...runner.labels.map((l) => l.toLowerCase())]);
    return inScope && job.labels.every((l) => have.has(l.toLowerCase()));
  }
}

function sameName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

const sameRepo = sameName;
const sameScope = sameName;

/** A stable fake repository id derived from the name. */
function repoId(repo: string): number {
  let hash = 0;
  for (const char of repo.toLowerCase()) hash = (Math.imul(hash, 31) + char.charCodeAt(0)) >>> 0;
  return (hash % 900_000_000) + 100_000_000;
}
