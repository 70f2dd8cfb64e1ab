import { randomBytes } from 'node:crypto';
import type { Logger } from '../../log.ts';
import {
  runnerName,
  RUNNER_NAME_PREFIX,
  type Forge,
  type ForgeKind,
  type ForgeJob,
  type ForgeJobStatus,
  type ForgeRunner,
  type RunnerRegistration,
} from '../forge.ts';
import { ForgeHttp, type RetryPolicy } from '../http.ts';
import type { GithubAuth } from './auth.ts';

export interface GithubForgeOptions {
  readonly apiUrl: string;
  readonly auth: GithubAuth;
  /** `owner/name` repositories whose runners register at repository level. */
  readonly repos: readonly string[];
  /** Organisations whose runners register at org level (jobs of any repository they own). */
  readonly orgs: readonly string[];
  readonly runnerGroupId: number;
  /** The official runner's run.sh inside the image. */
  readonly runnerCommand: string;
  readonly logger: Logger;
  readonly retry?: RetryPolicy;
  readonly onResponse?: (forge: ForgeKind, status: number, headers?: Headers) => void;
}

/** Where a runner for a job registers: `/repos/o/r` or `/orgs/o`. Org runners are listed as `org:NAME`. */
type Scope = { readonly path: string; readonly repository: string };

// GitHub adds these to every self-hosted runner itself; the JIT API takes custom labels only.
const DEFAULT_RUNNER_LABELS = /^(self-hosted|linux|x64)$/i;

interface ApiJob {
  id: number;
  run_id: number;
  status: string;
  conclusion: string | null;
  labels: string[];
  runner_name: string | null;
  name?: string;
}

/** GitHub Actions as a `Forge`: JIT runners, their removal, and polling for jobs a lost webhook hid. */
export class GithubForge implements Forge {
  readonly kind = 'github' as const;
  private readonly http: ForgeHttp;

  constructor(private readonly options: GithubForgeOptions) {
    this.http = new ForgeHttp('github', options.apiUrl, () => options.auth.headers(), options.logger, options.retry, options.onResponse);
  }

  private scopeOf(repository: string): Scope {
    if (repository.startsWith('org:')) return { path: `/orgs/${encodeURIComponent(repository.slice(4))}`, repository };
    const [owner = '', name = ''] = repository.split('/');
    if (!this.options.repos.includes(repository) && this.options.orgs.includes(owner))
      return { path: `/orgs/${encodeURIComponent(owner)}`, repository: `org:${owner}` };
    return { path: `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`, repository };
  }

  async registerRunner(job: { id: string; repository: string; forgeJobId: string; labels: readonly string[] }): Promise<RunnerRegistration> {
    const scope = this.scopeOf(job.repository);
    const name = runnerName(job.id, randomBytes(3).toString('hex'));
    const custom = [...new Set(job.labels.filter((l) => !DEFAULT_RUNNER_LABELS.test(l)))];
    const response = await this.http.request({
      method: 'POST',
      path: `${scope.path}/actions/runners/generate-jitconfig`,
      body: { name, runner_group_id: this.options.runnerGroupId, labels: custom.length > 0 ? custom.slice(0, 100) : ['hearth'], work_folder: '_work' },
    });
    const body = response.body as { runner?: { id?: number }; encoded_jit_config?: string };
    if (typeof body.runner?.id !== 'number' || typeof body.encoded_jit_config !== 'string')
      throw new Error(`GitHub's generate-jitconfig answer for ${name} has no runner id or encoded_jit_config`);
    return { runnerId: String(body.runner.id), runnerName: name, argv: [this.options.runnerCommand, '--jitconfig', body.encoded_jit_config] };
  }

  async removeRunner(runner: { repository: string; runnerId: string }): Promise<'removed' | 'gone' | 'busy'> {
    const scope = this.scopeOf(runner.repository);
    const response = await this.http.request({
      method: 'DELETE',
      path: `${scope.path}/actions/runners/${encodeURIComponent(runner.runnerId)}`,
      accept: [404, 422],
    });
    return response.status === 404 ? 'gone' : response.status === 422 ? 'busy' : 'removed';
  }

  async listRunners(): Promise<ForgeRunner[]> {
    const scopes = [...this.options.repos.map((r) => this.scopeOf(r)), ...this.options.orgs.map((o) => this.scopeOf(`org:${o}`))];
    const found: ForgeRunner[] = [];
    for (const scope of scopes) {
      for (let page = 1; page <= 50; page += 1) {
        const { body } = await this.http.request({ method: 'GET', path: `${scope.path}/actions/runners?per_page=100&page=${page}` });
        const runners = (body as { runners?: { id: number; name: string; busy: boolean }[] }).runners ?? [];
        for (const r of runners)
          if (r.name.startsWith(RUNNER_NAME_PREFIX)) found.push({ runnerId: String(r.id), runnerName: r.name, repository: scope.repository, busy: r.busy });
        if (runners.length < 100) break;
      }
    }
    return found;
  }

  private async repositories(): Promise<string[]> {
    const repos = new Set(this.options.repos);
    for (const org of this.options.orgs) {
      for (let page = 1; page <= 20; page += 1) {
        const { body } = await this.http.request({ method: 'GET', path: `/orgs/${encodeURIComponent(org)}/repos?per_page=100&page=${page}` });
        const list = Array.isArray(body) ? (body as { full_name: string }[]) : [];
        for (const r of list) repos.add(r.full_name);
        if (list.length < 100) break;
      }
    }
    return [...repos];
  }

  async listQueuedJobs(): Promise<ForgeJob[]> {
    const jobs: ForgeJob[] = [];
    for (const repository of await this.repositories()) {
      const base = `/repos/${repository.split('/').map(encodeURIComponent).join('/')}/actions`;
      const { body } = await this.http.request({ method: 'GET', path: `${base}/runs?status=queued&per_page=100` });
      for (const run of (body as { workflow_runs?: { id: number }[] }).workflow_runs ?? []) {
        const { body: runJobs } = await this.http.request({ method: 'GET', path: `${base}/runs/${run.id}/jobs?per_page=100` });
        for (const job of (runJobs as { jobs?: ApiJob[] }).jobs ?? []) {
          if (job.status === 'queued') jobs.push({ forge: 'github', forgeJobId: String(job.id), repository, labels: job.labels, name: job.name });
        }
      }
    }
    return jobs;
  }

  async jobStatus(job: { repository: string; forgeJobId: string }): Promise<ForgeJobStatus> {
    const [owner = '', name = ''] = job.repository.split('/');
    const response = await this.http.request({
      method: 'GET',
      path: `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}/actions/jobs/${encodeURIComponent(job.forgeJobId)}`,
      accept: [404],
    });
    if (response.status === 404) return { status: 'unknown' };
    const api = response.body as ApiJob;
    if (api.status === 'in_progress') return { status: 'running', runnerName: api.runner_name };
    if (api.status === 'completed')
      return api.conclusion === 'cancelled' ? { status: 'cancelled' } : { status: 'finished', conclusion: api.conclusion ?? 'unknown' };
    return { status: 'queued' };
  }
}
