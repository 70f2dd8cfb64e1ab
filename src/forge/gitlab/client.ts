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

export interface GitlabForgeOptions {
  readonly url: string;
  /** The URL the runner in the VM uses; differs from `url` behind NAT or in tests. */
  readonly runnerUrl: string;
  readonly token: string;
  readonly projects: readonly string[];
  readonly groups: readonly string[];
  readonly runnerCommand: string;
  readonly waitTimeoutSeconds: number;
  readonly logger: Logger;
  readonly retry?: RetryPolicy;
  readonly onResponse?: (forge: ForgeKind, status: number, headers?: Headers) => void;
}

interface ApiJob {
  id: number;
  status: string;
  tag_list?: string[];
  runner?: { description?: string } | null;
  name?: string;
}

/** The unique tag that binds a runner to its one job: run-single takes any job its tags allow. */
export function jobTag(forgeJobId: string): string {
  return `hearth-job-${forgeJobId}`;
}

/** GitLab CI as a `Forge`: runners made with POST /user/runners and run once with run-single. */
export class GitlabForge implements Forge {
  readonly kind = 'gitlab' as const;
  private readonly http: ForgeHttp;

  constructor(private readonly options: GitlabForgeOptions) {
    this.http = new ForgeHttp(
      'gitlab',
      `${options.url.replace(/\/+$/, '')}/api/v4`,
      () => Promise.resolve({ 'private-token': options.token }),
      options.logger,
      options.retry,
      options.onResponse,
    );
  }

  /** The job's tags: the Job Hook lacks them. One quick try: the webhook path must answer fast, and reconcile catches a miss. */
  async jobLabels(job: { repository: string; forgeJobId: string }, quick = false): Promise<{ tags: string[]; status: string } | undefined> {
    const response = await this.http.request({
      method: 'GET',
      path: `/projects/${encodeURIComponent(job.repository)}/jobs/${encodeURIComponent(job.forgeJobId)}`,
      accept: [404],
      // A webhook must be answered well within GitHub's and GitLab's 10 s.
      ...(quick ? { retry: { attempts: 1, baseDelayMs: 0, maxDelayMs: 0 }, timeoutMs: 3000 } : {}),
    });
    if (response.status === 404) return undefined;
    const api = response.body as ApiJob;
    return { tags: api.tag_list ?? [], status: api.status };
  }

  async registerRunner(job: { id: string; repository: string; forgeJobId: string; labels: readonly string[] }): Promise<RunnerRegistration> {
    const name = runnerName(job.id, randomBytes(3).toString('hex'));
    const response = await this.http.request({
      method: 'POST',
      path: '/user/runners',
      body: {
        runner_type: 'project_type',
        project_id: Number(job.repository),
        description: name,
        // The job's own tags plus one only this job has: the runner can take no other job.
        tag_list: [...new Set([...job.labels, jobTag(job.forgeJobId)])].join(','),
        run_untagged: false,
        locked: true,
      },
    });
    const body = response.body as { id?: number; token?: string };
    if (typeof body.id !== 'number' || typeof body.token !== 'string') throw new Error(`GitLab's POST /user/runners answer for ${name} has no id or token`);
    return {
      runnerId: String(body.id),
      runnerName: name,
      argv: [
        this.options.runnerCommand,
        'run-single',
        '--url',
        this.options.runnerUrl,
        '--token',
        body.token,
        '--executor',
        'shell',
        '--max-builds',
        '1',
        '--wait-timeout',
        String(this.options.waitTimeoutSeconds),
      ],
    };
  }

  async removeRunner(runner: { runnerId: string }): Promise<'removed' | 'gone' | 'busy'> {
    const response = await this.http.request({ method: 'DELETE', path: `/runners/${encodeURIComponent(runner.runnerId)}`, accept: [404] });
    return response.status === 404 ? 'gone' : 'removed';
  }

  async listRunners(): Promise<ForgeRunner[]> {
    const found: ForgeRunner[] = [];
    for (const project of this.options.projects) {
      for (let page = 1; page <= 50; page += 1) {
        const { body } = await this.http.request({
          method: 'GET',
          path: `/projects/${encodeURIComponent(project)}/runners?type=project_type&per_page=100&page=${page}`,
        });
        const list = Array.isArray(body) ? (body as { id: number; description: string; status?: string }[]) : [];
        for (const r of list)
          if (r.description?.startsWith(RUNNER_NAME_PREFIX))
            found.push({ runnerId: String(r.id), runnerName: r.description, repository: project, busy: false });
        if (list.length < 100) break;
      }
    }
    return found;
  }

  private async projectIds(): Promise<string[]> {
    const ids = new Set(this.options.projects);
    for (const group of this.options.groups) {
      for (let page = 1; page <= 20; page += 1) {
        const { body } = await this.http.request({
          method: 'GET',
          path: `/groups/${encodeURIComponent(group)}/projects?include_subgroups=true&per_page=100&page=${page}`,
        });
        const list = Array.isArray(body) ? (body as { id: number }[]) : [];
        for (const p of list) ids.add(String(p.id));
        if (list.length < 100) break;
      }
    }
    return [...ids];
  }

  async listQueuedJobs(): Promise<ForgeJob[]> {
    const jobs: ForgeJob[] = [];
    for (const project of await this.projectIds()) {
      const { body } = await this.http.request({ method: 'GET', path: `/projects/${encodeURIComponent(project)}/jobs?scope[]=pending&per_page=100` });
      for (const job of Array.isArray(body) ? (body as ApiJob[]) : []) {
        if (job.status === 'pending')
          jobs.push({ forge: 'gitlab', forgeJobId: String(job.id), repository: project, labels: job.tag_list ?? [], name: job.name });
      }
    }
    return jobs;
  }

  async jobStatus(job: { repository: string; forgeJobId: string }): Promise<ForgeJobStatus> {
    const response = await this.http.request({
      method: 'GET',
      path: `/projects/${encodeURIComponent(job.repository)}/jobs/${encodeURIComponent(job.forgeJobId)}`,
      accept: [404],
    });
    if (response.status === 404) return { status: 'unknown' };
    const api = response.body as ApiJob;
    if (api.status === 'running') return { status: 'running', runnerName: api.runner?.description ?? null };
    if (api.status === 'canceled' || api.status === 'canceling') return { status: 'cancelled' };
    if (api.status === 'success' || api.status === 'failed' || api.status === 'skipped') return { status: 'finished', conclusion: api.status };
    return { status: 'queued' };
  }
}
