// The GitLab side of the simulator: pipelines with one job each, runners made
// with POST /user/runners, the REST routes Hearth calls, Job Hooks, and the
// runner API (jobs/request, PUT jobs/:id) that gitlab-runner itself calls.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Deliverer } from './deliveries.ts';
import {
  headerValue,
  linkHeader,
  matchRoute,
  paginate,
  parseBody,
  toInteger,
  type Page,
  type Reply,
  type RequestContext,
  type Route,
  type SimCore,
} from './http.ts';
import type { ForgeSimulatorOptions, GitlabSimJob, GitlabSimRunner } from './types.ts';

type Json = Record<string, unknown>;

interface JobRecord extends GitlabSimJob {
  pipelineId: number;
  stage: string;
  /** The CI job token, issued when a runner takes the job. */
  token: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

interface RunnerRecord extends GitlabSimRunner {
  runUntagged: boolean;
  locked: boolean;
  paused: boolean;
  accessLevel: string;
  maximumTimeout: number | null;
  contactedAt: Date | null;
}

export const GITLAB_PREFIX = '/gitlab';
const API = `${GITLAB_PREFIX}/api/v4`;
const RUNNER_TYPES = ['instance_type', 'group_type', 'project_type'] as const;
const NAMESPACE = 'hearth-sim';
const SHA = '2293ada6b400935a1378653304eaf6221e0fdb8f';
const USER = { id: 1, name: 'Sim User', username: 'sim-user', avatar_url: null, email: '[REDACTED]' };

const message = (status: number, text: string): Reply => ({ status, json: { message: text } });
const notFound = (what = ''): Reply => message(404, `404 ${what ? `${what} ` : ''}Not Found`);

/** Paths of the runner API: called by gitlab-runner with runner or job tokens, never PRIVATE-TOKEN. */
export function isGitlabRunnerApi(path: string): boolean {
  return path === `${API}/jobs/request` || /^\/gitlab\/api\/v4\/jobs\/\d+$/.test(path);
}

export class GitlabWorld {
  readonly jobs = new Map<number, JobRecord>();
  readonly runners = new Map<number, RunnerRecord>();
  // Id ranges apart from each other, so a job id used as a runner id shows up.
  private nextJobId = 5001;
  private nextPipelineId = 9001;
  private nextRunnerId = 301;
  private readonly webhookUuid = randomUUID();

  private readonly routes: Route[] = [
    { method: 'GET', pattern: /^\/projects\/(\d+)\/jobs\/(\d+)$/, handle: (_ctx, [p, j]) => this.getJob(Number(p), Number(j)) },
    { method: 'GET', pattern: /^\/projects\/(\d+)\/jobs$/, handle: (ctx, [p]) => this.listJobs(ctx, Number(p)) },
    { method: 'GET', pattern: /^\/projects\/(\d+)\/runners$/, handle: (ctx, [p]) => this.listProjectRunners(ctx, Number(p)) },
    { method: 'POST', pattern: /^\/user\/runners$/, handle: (ctx) => this.createRunner(ctx) },
    { method: 'GET', pattern: /^\/runners\/(\d+)$/, handle: (_ctx, [id]) => this.getRunner(Number(id)) },
    { method: 'DELETE', pattern: /^\/runners\/(\d+)$/, handle: (_ctx, [id]) => this.deleteRunner(Number(id)) },
    { method: 'DELETE', pattern: /^\/runners$/, handle: (ctx) => this.deleteRunnerByToken(ctx) },
  ];

  private readonly runnerRoutes: Route[] = [
    { method: 'POST', pattern: /^\/jobs\/request$/, handle: (ctx) => this.requestJob(ctx) },
    { method: 'PUT', pattern: /^\/jobs\/(\d+)$/, handle: (ctx, [id]) => this.updateJob(ctx, Number(id)) },
  ];

  constructor(
    private readonly core: SimCore,
    private readonly deliverer: Deliverer,
    private readonly options: ForgeSimulatorOptions,
  ) {}

  // ---- entry points ------------------------------------------------------

  async handle(ctx: RequestContext): Promise<Reply> {
    if (!ctx.path.startsWith(`${API}/`)) return notFound();
    const sub = { ...ctx, path: ctx.path.slice(API.length) };
    const token = headerValue(ctx.headers, 'private-token') ?? /^bearer\s+(\S+)$/i.exec(headerValue(ctx.headers, 'authorization') ?? '')?.[1];
    if (token !== this.options.gitlabToken) return message(401, '401 Unauthorized');
    const found = matchRoute(this.routes, sub);
    return found ? found.route.handle(sub, found.params) : notFound();
  }

  async handleRunnerApi(ctx: RequestContext): Promise<Reply> {
    const sub = { ...ctx, path: ctx.path.slice(API.length) };
    const found = matchRoute(this.runnerRoutes, sub);
    return found ? found.route.handle(sub, found.params) : notFound();
  }

  // ---- jobs --------------------------------------------------------------

  async queueJob(j: { projectId: number; tags: string[]; name?: string }): Promise<GitlabSimJob> {
    if (!Number.isInteger(j.projectId) || j.projectId < 1) throw new Error(`projectId must be a positive integer, got ${j.projectId}`);
    const job: JobRecord = {
      id: this.nextJobId++,
      projectId: j.projectId,
      name: j.name ?? 'build',
      tags: [...j.tags],
      status: 'pending',
      runnerId: null,
      pipelineId: this.nextPipelineId++,
      stage: 'test',
      token: null,
      createdAt: new Date(),
      startedAt: null,
      finishedAt: null,
    };
    this.jobs.set(job.id, job);
    await this.sendJobHook(job);
    return job;
  }

  async cancelJob(jobId: number): Promise<void> {
    const job = this.jobs.get(jobId);
    if (!job) throw new Error(`no GitLab job ${jobId}`);
    // Only unfinished jobs can be canceled; a late cancel changes nothing.
    if (job.status !== 'pending' && job.status !== 'running') return;
    job.status = 'canceled';
    job.finishedAt = new Date();
    this.core.clock.stop(jobId);
    await this.sendJobHook(job);
  }

  private jobInProject(projectId: number, jobId: number): JobRecord | undefined {
    const job = this.jobs.get(jobId);
    return job && job.projectId === projectId ? job : undefined;
  }

  private getJob(projectId: number, jobId: number): Reply {
    const job = this.jobInProject(projectId, jobId);
    return job ? { status: 200, json: this.jobObject(job) } : notFound('Job');
  }

  private listJobs(ctx: RequestContext, projectId: number): Reply {
    // `scope[]=pending&scope[]=running` or `scope=pending`; GitLab lists newest first.
    const scopes = [...ctx.query.getAll('scope[]'), ...ctx.query.getAll('scope')];
    const jobs = [...this.jobs.values()]
      .filter((j) => j.projectId === projectId && (scopes.length === 0 || scopes.includes(j.status)))
      .sort((a, b) => b.id - a.id);
    const page = paginate(jobs, ctx.query, 20);
    return { status: 200, headers: this.pageHeaders(ctx, page), json: page.items.map((j) => this.jobObject(j)) };
  }

  private pageHeaders(ctx: RequestContext, page: Page<unknown>): Record<string, string> {
    return {
      'x-total': String(page.total),
      'x-total-pages': String(page.totalPages),
      'x-page': String(page.page),
      'x-per-page': String(page.perPage),
      'x-next-page': page.page < page.totalPages ? String(page.page + 1) : '',
      'x-prev-page': page.page > 1 ? String(page.page - 1) : '',
      link: linkHeader(this.core.url, `${API}${ctx.path}`, ctx.query, page),
    };
  }

  private project(projectId: number): Json {
    const path = `project-${projectId}`;
    const web = `${this.core.url}${GITLAB_PREFIX}/${NAMESPACE}/${path}`;
    return {
      id: projectId,
      name: path,
      description: null,
      web_url: web,
      avatar_url: null,
      git_ssh_url: `git@sim.invalid:${NAMESPACE}/${path}.git`,
      git_http_url: `${web}.git`,
      namespace: NAMESPACE,
      visibility_level: 0,
      path_with_namespace: `${NAMESPACE}/${path}`,
      default_branch: 'main',
      ci_config_path: null,
    };
  }

  private commit(job: JobRecord): Json {
    return {
      id: SHA,
      short_id: SHA.slice(0, 8),
      title: 'Simulated commit',
      message: 'Simulated commit\n',
      author_name: USER.name,
      author_email: 'sim@sim.invalid',
      created_at: job.createdAt.toISOString(),
    };
  }

  private jobObject(job: JobRecord): Json {
    const project = this.project(job.projectId);
    const runner = job.runnerId !== null ? this.runners.get(job.runnerId) : undefined;
    return {
      id: job.id,
      status: job.status,
      stage: job.stage,
      name: job.name,
      ref: 'main',
      tag: false,
      coverage: null,
      allow_failure: false,
      created_at: job.createdAt.toISOString(),
      started_at: job.startedAt?.toISOString() ?? null,
      finished_at: job.finishedAt?.toISOString() ?? null,
      erased_at: null,
      duration: seconds(job.startedAt, job.finishedAt),
      queued_duration: seconds(job.createdAt, job.startedAt ?? new Date()),
      user: USER,
      commit: this.commit(job),
      pipeline: {
        id: job.pipelineId,
        iid: job.pipelineId - 9000,
        project_id: job.projectId,
        sha: SHA,
        ref: 'main',
        status: job.status,
        source: 'push',
        web_url: `${project.web_url}/-/pipelines/${job.pipelineId}`,
      },
      web_url: `${project.web_url}/-/jobs/${job.id}`,
      project: { ci_job_token_scope_enabled: false },
      artifacts: [],
      runner: runner ? this.runnerSummary(runner) : null,
      runner_manager: null,
      artifacts_expire_at: null,
      archived: false,
      tag_list: [...job.tags],
    };
  }

  // ---- runners -----------------------------------------------------------

  private createRunner(ctx: RequestContext): Reply {
    const body = parseBody(ctx);
    if (typeof body === 'string') return message(400, `400 Bad request - ${body}`);
    const type = body.runner_type;
    if (type === undefined) return message(400, 'runner_type is missing');
    if (!RUNNER_TYPES.includes(type as (typeof RUNNER_TYPES)[number])) return message(400, 'runner_type does not have a valid value');
    const runnerType = type as (typeof RUNNER_TYPES)[number];
    const projectId = toInteger(body.project_id);
    const groupId = toInteger(body.group_id);
    if (runnerType === 'project_type' && projectId === undefined) return message(400, 'project_id is missing');
    if (runnerType === 'group_type' && groupId === undefined) return message(400, 'group_id is missing');
    const tags = parseTags(body.tag_list);
    if (typeof tags === 'string') return message(400, tags);
    const flags: Record<string, boolean> = {};
    for (const [key, fallback] of [
      ['run_untagged', true],
      ['locked', false],
      ['paused', false],
    ] as const) {
      const value = parseBool(body[key], fallback);
      if (value === undefined) return message(400, `${key} is invalid`);
      flags[key] = value;
    }
    const maximumTimeout = body.maximum_timeout === undefined ? null : toInteger(body.maximum_timeout);
    if (maximumTimeout === undefined) return message(400, 'maximum_timeout is invalid');
    if (body.description !== undefined && typeof body.description !== 'string') return message(400, 'description is invalid');

    const runner: RunnerRecord = {
      id: this.nextRunnerId++,
      token: `glrt-${randomBytes(15).toString('base64url')}`,
      description: (body.description as string | undefined) ?? '',
      tags,
      runnerType,
      projectId: runnerType === 'project_type' ? projectId! : null,
      groupId: runnerType === 'group_type' ? groupId! : null,
      credentialsSeenInGuest: false,
      runUntagged: flags.run_untagged!,
      locked: flags.locked!,
      paused: flags.paused!,
      accessLevel: typeof body.access_level === 'string' ? body.access_level : 'not_protected',
      maximumTimeout,
      contactedAt: null,
    };
    this.runners.set(runner.id, runner);
    return { status: 201, json: { id: runner.id, token: runner.token, token_expires_at: null } };
  }

  private runnerSummary(runner: RunnerRecord): Json {
    const online = runner.contactedAt !== null && Date.now() - runner.contactedAt.getTime() < 2 * 60 * 60 * 1000;
    return {
      id: runner.id,
      description: runner.description,
      ip_address: null,
      active: !runner.paused,
      paused: runner.paused,
      is_shared: runner.runnerType === 'instance_type',
      runner_type: runner.runnerType,
      name: runner.contactedAt ? 'gitlab-runner' : null,
      online,
      status: runner.contactedAt === null ? 'never_contacted' : online ? 'online' : 'offline',
    };
  }

  /** Group runners serve any project here: the sim has no group membership. */
  private servesProject(runner: RunnerRecord, projectId: number): boolean {
    return runner.runnerType !== 'project_type' || runner.projectId === projectId;
  }

  private listProjectRunners(ctx: RequestContext, projectId: number): Reply {
    const type = ctx.query.get('type');
    const wantTags = (ctx.query.get('tag_list') ?? '')
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    const runners = [...this.runners.values()].filter(
      (r) => this.servesProject(r, projectId) && (!type || r.runnerType === type) && wantTags.every((t) => r.tags.includes(t)),
    );
    const page = paginate(runners, ctx.query, 20);
    return { status: 200, headers: this.pageHeaders(ctx, page), json: page.items.map((r) => this.runnerSummary(r)) };
  }

  private getRunner(id: number): Reply {
    const runner = this.runners.get(id);
    if (!runner) return notFound('Runner');
    return {
      status: 200,
      json: {
        ...this.runnerSummary(runner),
        contacted_at: runner.contactedAt?.toISOString() ?? null,
        maintenance_note: null,
        tag_list: [...runner.tags],
        run_untagged: runner.runUntagged,
        locked: runner.locked,
        access_level: runner.accessLevel,
        maximum_timeout: runner.maximumTimeout,
        projects:
          runner.projectId !== null
            ? [{ id: runner.projectId, name: `project-${runner.projectId}`, path_with_namespace: `${NAMESPACE}/project-${runner.projectId}` }]
            : [],
        groups: runner.groupId !== null ? [{ id: runner.groupId, name: NAMESPACE, web_url: `${this.core.url}${GITLAB_PREFIX}/groups/${NAMESPACE}` }] : [],
      },
    };
  }

  private deleteRunner(id: number): Reply {
    if (!this.runners.delete(id)) return notFound('Runner');
    return { status: 204 };
  }

  private deleteRunnerByToken(ctx: RequestContext): Reply {
    const body = parseBody(ctx);
    const token = ctx.query.get('token') ?? (typeof body === 'object' ? body.token : undefined);
    const runner = [...this.runners.values()].find((r) => r.token === token);
    if (!runner) return message(403, '403 Forbidden');
    this.runners.delete(runner.id);
    return { status: 204 };
  }

  // ---- runner API --------------------------------------------------------

  /** GitLab's matching rule: the job's tags are a subset of the runner's; an untagged job needs run_untagged. */
  private canTake(runner: RunnerRecord, job: JobRecord): boolean {
    if (!this.servesProject(runner, job.projectId)) return false;
    if (job.tags.length === 0) return runner.runUntagged;
    return job.tags.every((t) => runner.tags.includes(t));
  }

  private requestJob(ctx: RequestContext): Reply {
    const body = parseBody(ctx);
    const token = typeof body === 'object' ? body.token : undefined;
    const runner = [...this.runners.values()].find((r) => r.token === token);
    if (!runner) return message(403, '403 Forbidden');
    runner.contactedAt = new Date();
    const lastUpdate = { 'x-gitlab-last-update': randomBytes(8).toString('hex') };
    if (runner.paused) return { status: 204, headers: lastUpdate };
    const job = [...this.jobs.values()].filter((j) => j.status === 'pending' && this.canTake(runner, j)).sort((a, b) => a.id - b.id)[0];
    if (!job) return { status: 204, headers: lastUpdate };

    job.status = 'running';
    job.startedAt = new Date();
    job.runnerId = runner.id;
    job.token = `glcbt-${randomBytes(20).toString('hex')}`;
    runner.credentialsSeenInGuest = true;
    this.core.clock.start(job.id);
    void this.sendJobHook(job);
    return { status: 201, json: this.jobPayload(job) };
  }

  /** What gitlab-runner receives; `id` and `token` come first so a sed one-liner can read them. */
  private jobPayload(job: JobRecord): Json {
    const project = this.project(job.projectId);
    const guestRepo = `${this.core.guestUrl}${GITLAB_PREFIX}/${project.path_with_namespace as string}.git`;
    return {
      id: job.id,
      token: job.token,
      allow_git_fetch: true,
      job_info: { id: job.id, name: job.name, stage: job.stage, project_id: job.projectId, project_name: project.name },
      git_info: {
        repo_url: guestRepo,
        ref: 'main',
        sha: SHA,
        before_sha: '0000000000000000000000000000000000000000',
        ref_type: 'branch',
        refspecs: ['+refs/heads/main:refs/remotes/origin/main'],
        depth: 20,
      },
      runner_info: { timeout: 3600, runner_session_url: null },
      variables: [
        { key: 'CI_JOB_ID', value: String(job.id), public: true, masked: false },
        { key: 'CI_PROJECT_ID', value: String(job.projectId), public: true, masked: false },
        { key: 'CI_SERVER_URL', value: `${this.core.guestUrl}${GITLAB_PREFIX}`, public: true, masked: false },
      ],
      steps: [{ name: 'script', script: ['echo "simulated job"'], timeout: 3600, when: 'on_success', allow_failure: false }],
      image: null,
      services: [],
      artifacts: [],
      cache: [],
      credentials: [],
      dependencies: [],
      features: { trace_sections: true },
    };
  }

  private async updateJob(ctx: RequestContext, jobId: number): Promise<Reply> {
    const body = parseBody(ctx);
    if (typeof body === 'string') return message(400, `400 Bad request - ${body}`);
    const job = this.jobs.get(jobId);
    if (!job) return notFound();
    if (!job.token || body.token !== job.token) return message(403, '403 Forbidden');
    const state = body.state;
    // A running-state update is the runner's heartbeat.
    if (state === 'running' || state === undefined) return { status: 200, headers: { 'job-status': job.status }, json: { status: job.status } };
    if (state !== 'success' && state !== 'failed') return message(400, 'state does not have a valid value');
    await this.core.clock.done(job.id);
    if (job.status === 'running') {
      job.status = state;
      job.finishedAt = new Date();
      void this.sendJobHook(job);
    }
    return { status: 200, headers: { 'job-status': job.status }, json: { status: job.status } };
  }

  // ---- Job Hook ----------------------------------------------------------

  /** The body of GitLab's Job Hook (data_builder/build.rb): note that it carries no job tags. */
  jobHookBody(job: JobRecord): Json {
    const project = this.project(job.projectId);
    const runner = job.runnerId !== null ? this.runners.get(job.runnerId) : undefined;
    return {
      object_kind: 'build',
      ref: 'main',
      tag: false,
      before_sha: '0000000000000000000000000000000000000000',
      sha: SHA,
      retries_count: 0,
      build_id: job.id,
      build_name: job.name,
      build_stage: job.stage,
      build_status: job.status,
      build_created_at: hookTime(job.createdAt),
      build_started_at: job.startedAt ? hookTime(job.startedAt) : null,
      build_finished_at: job.finishedAt ? hookTime(job.finishedAt) : null,
      build_duration: seconds(job.startedAt, job.finishedAt),
      build_queued_duration: seconds(job.createdAt, job.startedAt ?? new Date()),
      build_allow_failure: false,
      build_failure_reason: job.status === 'failed' ? 'script_failure' : 'unknown',
      pipeline_id: job.pipelineId,
      runner: runner
        ? {
            id: runner.id,
            description: runner.description,
            runner_type: runner.runnerType,
            active: !runner.paused,
            is_shared: runner.runnerType === 'instance_type',
            tags: [...runner.tags],
          }
        : null,
      project_id: job.projectId,
      project_name: `${NAMESPACE} / ${project.name as string}`,
      user: USER,
      commit: {
        id: job.pipelineId,
        name: null,
        sha: SHA,
        message: 'Simulated commit\n',
        author_name: USER.name,
        author_email: 'sim@sim.invalid',
        author_url: `${this.core.url}${GITLAB_PREFIX}/${USER.username}`,
        status: job.status,
        duration: seconds(job.startedAt, job.finishedAt),
        started_at: job.startedAt ? hookTime(job.startedAt) : null,
        finished_at: job.finishedAt ? hookTime(job.finishedAt) : null,
      },
      repository: {
        name: project.name,
        url: project.git_ssh_url,
        description: null,
        homepage: project.web_url,
        git_http_url: project.git_http_url,
        git_ssh_url: project.git_ssh_url,
        visibility_level: 0,
      },
      project,
      environment: null,
    };
  }

  private sendJobHook(job: JobRecord): Promise<void> {
    const body = JSON.stringify(this.jobHookBody(job));
    // Idempotency-Key stays the same across retries of one delivery, so it is the delivery id.
    const id = randomUUID();
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'GitLab/sim',
      'x-gitlab-event': 'Job Hook',
      'x-gitlab-token': this.options.gitlabWebhookToken,
      'x-gitlab-event-uuid': randomUUID(),
      'x-gitlab-webhook-uuid': this.webhookUuid,
      'x-gitlab-instance': `${this.core.url}${GITLAB_PREFIX}`,
      'idempotency-key': id,
    };
    return this.deliverer.enqueue({ forge: 'gitlab', id, event: 'Job Hook', action: job.status, jobId: job.id, body, headers });
  }
}

/** GitLab's hook timestamp style: `2021-02-23 02:41:37 UTC`. */
function hookTime(date: Date): string {
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

function seconds(from: Date | null, to: Date | null): number | null {
  return from && to ? (to.getTime() - from.getTime()) / 1000 : null;
}

function parseTags(value: unknown): string[] | string {
  if (value === undefined) return [];
  const list = typeof value === 'string' ? value.split(',') : value;
  if (!Array.isArray(list) || list.some((t) => typeof t !== 'string')) return 'tag_list is invalid';
  return list.map((t: string) => t.trim()).filter(Boolean);
}

function parseBool(value: unknown, fallback: boolean): boolean | undefined {
  if (value === undefined) return fallback;
  if (typeof value === 'boolean') return value;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  return undefined;
}
