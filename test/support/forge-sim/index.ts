// The forge simulator: a test double for GitHub and GitLab that `hearth serve`
// integration tests run against. One node:http server on 127.0.0.1 serves
// GitHub's REST paths at the root, GitLab's under /gitlab, and the callback
// of the run.sh stand-in; webhooks go out with fetch to the targets set.
import { randomInt } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Deliverer } from './deliveries.ts';
import { ApiFaults, seededRandom } from './faults.ts';
import { GITHUB_RUNNER_CALLBACK, GithubWorld } from './github.ts';
import { GITLAB_PREFIX, GitlabWorld, isGitlabRunnerApi } from './gitlab.ts';
import { BodyTooLarge, JobClock, readBody, type Reply, type RequestContext } from './http.ts';
import type {
  ApiFailureRule,
  ApiLogEntry,
  DeliveryRecord,
  FaultSettings,
  ForgeSimulatorOptions,
  GithubSimJob,
  GithubSimRunner,
  GitlabSimJob,
  GitlabSimRunner,
  SimForge,
} from './types.ts';
import { waitFor } from '../wait.ts';

export type {
  ApiFailureRule,
  ApiLogEntry,
  DeliveryRecord,
  FaultSettings,
  ForgeSimulatorOptions,
  GithubSimJob,
  GithubSimRunner,
  GitlabSimJob,
  GitlabSimRunner,
} from './types.ts';

/** The run.sh stand-in, installed in test images as /opt/actions-runner/run.sh. */
export const GITHUB_RUNNER_STAND_IN: string = join(import.meta.dirname, 'stand-ins', 'github-run.sh');
/** The gitlab-runner stand-in, installed in test images as /usr/local/bin/gitlab-runner. */
export const GITLAB_RUNNER_STAND_IN: string = join(import.meta.dirname, 'stand-ins', 'gitlab-runner');

const DEFAULT_JOB_DURATION_MS = 500;
const WAIT_POLL_MS = 50;

export class ForgeSimulator {
  readonly url: string;
  readonly githubApiUrl: string;
  readonly gitlabUrl: string;
  readonly guestUrl: string;
  readonly guestGitlabUrl: string;
  /** Mutable: tests flip these between events. */
  faults: FaultSettings = { dropRate: 0, duplicate: false, reorder: false };
  readonly apiLog: ApiLogEntry[] = [];
  readonly github: { jobs: Map<number, GithubSimJob>; runners: Map<number, GithubSimRunner> };
  readonly gitlab: { jobs: Map<number, GitlabSimJob>; runners: Map<number, GitlabSimRunner> };

  private readonly deliverer: Deliverer;
  private readonly apiFaults = new ApiFaults();
  private readonly clock: JobClock;
  private readonly githubWorld: GithubWorld;
  private readonly gitlabWorld: GitlabWorld;
  private closed = false;

  private constructor(
    private readonly server: Server,
    port: number,
    options: ForgeSimulatorOptions,
  ) {
    this.url = `http://127.0.0.1:${port}`;
    this.githubApiUrl = this.url;
    this.gitlabUrl = `${this.url}${GITLAB_PREFIX}`;
    this.guestUrl = `http://${options.guestHost ?? '10.0.2.2'}:${port}`;
    this.guestGitlabUrl = `${this.guestUrl}${GITLAB_PREFIX}`;
    this.clock = new JobClock(options.jobDurationMs ?? DEFAULT_JOB_DURATION_MS);
    this.deliverer = new Deliverer(() => this.faults, seededRandom(options.seed ?? randomInt(2 ** 31)));
    const core = { url: this.url, guestUrl: this.guestUrl, clock: this.clock };
    this.githubWorld = new GithubWorld(core, this.deliverer, options);
    this.gitlabWorld = new GitlabWorld(core, this.deliverer, options);
    this.github = { jobs: this.githubWorld.jobs, runners: this.githubWorld.runners };
    this.gitlab = { jobs: this.gitlabWorld.jobs, runners: this.gitlabWorld.runners };
  }

  static async start(options: ForgeSimulatorOptions): Promise<ForgeSimulator> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const sim = new ForgeSimulator(server, (server.address() as AddressInfo).port, options);
    server.on('request', (req, res) => void sim.onRequest(req, res));
    return sim;
  }

  get deliveries(): DeliveryRecord[] {
    return this.deliverer.records;
  }

  setWebhookTargets(t: { github?: string; gitlab?: string }): void {
    this.deliverer.setTargets(t);
  }

  flushHeld(): Promise<void> {
    return this.deliverer.flushHeld();
  }

  /** The next `rule.count` API requests whose path matches answer with `rule.status` (runner traffic is exempt). */
  failApi(rule: ApiFailureRule): void {
    this.apiFaults.add(rule);
  }

  redeliver(deliveryId: string): Promise<number> {
    return this.deliverer.redeliver(deliveryId);
  }

  sendRaw(forge: SimForge, body: Buffer | string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
    return this.deliverer.sendRaw(forge, body, headers);
  }

  /** Resolves once every webhook queued so far was sent (held ones excepted). */
  webhooksIdle(): Promise<void> {
    return this.deliverer.idle();
  }

  // ---- GitHub world ------------------------------------------------------

  queueGithubJob(j: { repo: string; labels: string[]; name?: string; failingStep?: string }): Promise<GithubSimJob> {
    return this.githubWorld.queueJob(j);
  }

  /** GitHub gives up on a runner that vanished mid-job: the job fails, the runner is gone. */
  loseGithubRunner(runnerName: string): Promise<void> {
    return this.githubWorld.loseRunner(runnerName);
  }

  cancelGithubJob(jobId: number): Promise<void> {
    return this.githubWorld.cancelJob(jobId);
  }

  sendGithubPing(): Promise<void> {
    return this.githubWorld.sendPing();
  }

  // ---- GitLab world ------------------------------------------------------

  queueGitlabJob(j: { projectId: number; tags: string[]; name?: string }): Promise<GitlabSimJob> {
    return this.gitlabWorld.queueJob(j);
  }

  cancelGitlabJob(jobId: number): Promise<void> {
    return this.gitlabWorld.cancelJob(jobId);
  }

  // ---- helpers -----------------------------------------------------------

  /** The shared waitFor (test/support/wait.ts) in this simulator's older signature, kept for bench/serve.ts. */
  async waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
    await waitFor(predicate, { timeout: timeoutMs, interval: WAIT_POLL_MS, what });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Release requests parked until a job's end, so the server can close.
    this.clock.stopAll();
    const closing = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    setTimeout(() => this.server.closeAllConnections(), 1000).unref();
    await closing;
  }

  // ---- request handling --------------------------------------------------

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = Date.now();
    const url = new URL(req.url ?? '/', this.url);
    const override = req.headers['x-http-method-override'];
    // busybox wget can only GET and POST, so a POST may stand for a PUT.
    const method = req.method === 'POST' && typeof override === 'string' ? override.toUpperCase() : (req.method ?? 'GET');
    const forge = this.forgeOf(url.pathname);
    let reply: Reply;
    try {
      const ctx: RequestContext = { method, path: url.pathname, query: url.searchParams, headers: req.headers, body: await readBody(req) };
      reply = await this.dispatch(forge, ctx);
    } catch (error) {
      reply =
        error instanceof BodyTooLarge
          ? { status: 413, json: { message: error.message } }
          : { status: 500, json: { message: `simulator error: ${(error as Error).message}` } };
    }
    // Paths only: query strings may carry tokens (DELETE /runners?token=).
    this.apiLog.push({ at, method, path: url.pathname, status: reply.status, forge });
    writeReply(res, reply);
  }

  private forgeOf(path: string): ApiLogEntry['forge'] {
    if (path.startsWith(GITHUB_RUNNER_CALLBACK) || isGitlabRunnerApi(path)) return 'runner';
    return path === GITLAB_PREFIX || path.startsWith(`${GITLAB_PREFIX}/`) ? 'gitlab' : 'github';
  }

  private dispatch(forge: ApiLogEntry['forge'], ctx: RequestContext): Reply | Promise<Reply> {
    if (forge === 'runner') return ctx.path.startsWith(GITHUB_RUNNER_CALLBACK) ? this.githubWorld.handleRunner(ctx) : this.gitlabWorld.handleRunnerApi(ctx);
    const fault = this.apiFaults.take(forge, ctx.path);
    if (fault) return fault;
    return forge === 'github' ? this.githubWorld.handle(ctx) : this.gitlabWorld.handle(ctx);
  }
}

function writeReply(res: ServerResponse, reply: Reply): void {
  const headers: Record<string, string> = { ...reply.headers };
  let body = '';
  if (reply.json !== undefined) {
    body = JSON.stringify(reply.json);
    headers['content-type'] = 'application/json; charset=utf-8';
  } else if (reply.text !== undefined) {
    body = reply.text;
    headers['content-type'] = 'text/plain; charset=utf-8';
  }
  // Statuses without a body must not announce one.
  if (reply.status === 204 || reply.status === 304) body = '';
  headers['content-length'] = String(Buffer.byteLength(body));
  res.writeHead(reply.status, headers);
  res.end(body);
}
