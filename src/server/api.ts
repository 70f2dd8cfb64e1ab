import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { computeInsights } from '../ledger/insights.ts';
import type { Job, Ledger } from '../ledger/ledger.ts';
import type { JobLogs } from '../ledger/logs.ts';
import { stageTimes } from '../ledger/stages.ts';
import { JOB_STATES, type JobState } from '../ledger/states.ts';
import type { Logger } from '../log.ts';
import type { VmDriver } from '../vm/driver.ts';
import { bearerMatches } from './guards.ts';
import type { PoolStatus } from '../pool/pool.ts';
import type { HostView } from './metrics.ts';
import { sessionMatches } from './session.ts';
import { streamJobLog } from './log-stream.ts';

export interface ApiDeps {
  readonly ledger: Ledger;
  readonly driver: VmDriver;
  readonly logger: Logger;
  readonly pools?: () => readonly PoolStatus[];
  readonly logs?: JobLogs;
  /** This host as /status shows it. */
  readonly host?: { readonly name: string; readonly driver: string; readonly view: HostView };
}

type Guard = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

const MAX_LIMIT = 10_000;
const MAX_LOG_PAGE = 5_000;

export function jobView(job: Job) {
  return {
    id: job.id,
    forge: job.forge,
    forgeJobId: job.forge_job_id,
    repository: job.repository,
    name: job.job_name,
    labels: [...job.labels],
    state: job.state,
    attempts: job.attempts,
    vmId: job.vm_id,
    runnerName: job.runner_name,
    runnerId: job.runner_id,
    lastError: job.last_error,
    conclusion: job.conclusion,
    failedStep: job.failed_step,
    pool: job.pool,
    poolHit: job.pool_hit === null ? null : job.pool_hit === 1,
    host: job.host,
    createdAt: job.created_at,
    updatedAt: job.updated_at,
    startedAt: job.started_at,
    finishedAt: job.finished_at,
    releasedAt: job.released_at,
  };
}

function encodeCursor(job: Job): string {
  return Buffer.from(JSON.stringify({ c: job.created_at, i: job.id })).toString('base64url');
}

function decodeCursor(cursor: string): { created_at: string; id: string } | undefined {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { c?: unknown; i?: unknown };
    return typeof value.c === 'string' && typeof value.i === 'string' ? { created_at: value.c, id: value.i } : undefined;
  } catch {
    return undefined;
  }
}

function badRequest(reply: FastifyReply, message: string) {
  return reply.code(400).send({ error: message });
}

/** A whole number in [min, max], the default when absent, or undefined when malformed. */
function wholeNumber(value: string | undefined, fallback: number, min: number, max: number): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  return Number.isInteger(n) && n >= min && n <= max ? n : undefined;
}

/**
 * /api/v1: jobs with their timelines and logs, VMs, runners, pools, host
 * status and insights. Every route needs the bearer token, or the dashboard's
 * session cookie (which is derived from the same token).
 */
export function registerApi(scope: FastifyInstance, deps: ApiDeps, token: string | null, guard: Guard | undefined): void {
  scope.addHook('onRequest', async (request, reply) => {
    if (guard) await guard(request, reply);
    if (reply.sent) return;
    if (!token) {
      await reply.code(503).send({ error: 'the API is disabled: set api.token (HEARTH_API_TOKEN) to enable it' });
      return;
    }
    if (!bearerMatches(request.headers.authorization, token) && !sessionMatches(request.headers.cookie, token)) {
      deps.logger.warn({ ip: request.ip, route: request.url.split('?')[0] }, 'rejected: API call without a valid bearer token');
      await reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'send Authorization: Bearer <api.token>' });
    }
  });

  scope.get('/jobs', async (request, reply) => {
    const query = request.query as { limit?: string; cursor?: string; forge?: string; repo?: string; state?: string };
    const limit = wholeNumber(query.limit, 100, 1, MAX_LIMIT);
    if (limit === undefined) return badRequest(reply, `limit must be a whole number from 1 to ${MAX_LIMIT}`);
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    if (query.cursor !== undefined && !after) return badRequest(reply, 'cursor is not one this API gave out: pass nextCursor from the previous page');
    if (query.forge !== undefined && query.forge !== '' && query.forge !== 'github' && query.forge !== 'gitlab')
      return badRequest(reply, 'forge must be github or gitlab');
    if (query.state !== undefined && query.state !== '' && !(JOB_STATES as readonly string[]).includes(query.state))
      return badRequest(reply, `state must be one of ${JOB_STATES.join(', ')}`);
    const filter = { forge: query.forge || undefined, repository: query.repo || undefined, state: (query.state || undefined) as JobState | undefined };
    const rows = await deps.ledger.jobs(limit, after, filter);
    const last = rows.at(-1);
    return { jobs: rows.map(jobView), nextCursor: rows.length === limit && last ? encodeCursor(last) : null };
  });

  const findJob = async (request: FastifyRequest, reply: FastifyReply): Promise<Job | undefined> => {
    const { id } = request.params as { id: string };
    const job = await deps.ledger.job(id);
    if (!job) await reply.code(404).send({ error: `no job ${id}: ids look like github:123456 or gitlab:7890` });
    return job;
  };

  scope.get('/jobs/:id', async (request, reply) => {
    const job = await findJob(request, reply);
    if (!job) return reply;
    const timeline = await deps.ledger.timeline(job.id);
    return { ...jobView(job), timeline, stages: camelStages(stageTimes(timeline)) };
  });

  scope.get('/jobs/:id/logs', async (request, reply) => {
    const job = await findJob(request, reply);
    if (!job) return reply;
    const query = request.query as { after?: string; limit?: string };
    const after = wholeNumber(query.after, 0, 0, Number.MAX_SAFE_INTEGER);
    const limit = wholeNumber(query.limit, 1000, 1, MAX_LOG_PAGE);
    if (after === undefined || limit === undefined)
      return badRequest(reply, `after must be a line's seq (0 for the start) and limit from 1 to ${MAX_LOG_PAGE}`);
    if (!deps.logs) return { lines: [], done: true };
    await deps.logs.flush();
    const lines = await deps.logs.lines(job.id, after, limit);
    return { lines, done: job.released_at !== null && lines.length < limit };
  });

  scope.get('/jobs/:id/logs/stream', async (request, reply) => {
    const job = await findJob(request, reply);
    if (!job) return reply;
    const query = request.query as { lastEventId?: string };
    const header = request.headers['last-event-id'];
    const resume = wholeNumber(typeof header === 'string' && header !== '' ? header : query.lastEventId, 0, 0, Number.MAX_SAFE_INTEGER);
    if (resume === undefined) return badRequest(reply, 'Last-Event-ID must be the id of a log event this stream sent');
    if (!deps.logs) return reply.code(404).send({ error: 'job logs are not kept by this server' });
    await streamJobLog(request, reply, { ledger: deps.ledger, logs: deps.logs, jobId: job.id, after: resume });
    return reply;
  });

  scope.get('/vms', async () => {
    const vms = await deps.driver.list();
    return { vms };
  });

  scope.get('/pools', async () => ({ pools: deps.pools?.() ?? [] }));

  scope.get('/runners', async () => {
    const jobs = await deps.ledger.inStates(['provisioning', 'runner_registered', 'running']);
    return {
      runners: jobs
        .filter((j) => j.runner_name)
        .map((j) => ({ name: j.runner_name, id: j.runner_id, forge: j.forge, jobId: j.id, vmId: j.vm_id, state: j.state })),
    };
  });

  scope.get('/status', async () => {
    const byState = await deps.ledger.countByState();
    const live = await deps.ledger.inStates(['provisioning', 'runner_registered', 'running']);
    const jobOfVm = new Map(live.filter((j) => j.vm_id).map((j) => [j.vm_id as string, j]));
    const pools = deps.pools?.() ?? [];
    const now = Date.now();
    const vms = (await deps.driver.list())
      .filter((vm) => vm.alive)
      .map((vm) => {
        const job = jobOfVm.get(vm.id);
        return {
          id: vm.id,
          jobId: job?.id ?? null,
          pool: job?.pool ?? null,
          state: job ? job.state : vm.leaked ? 'leaked' : 'idle',
          ageSeconds: Math.max(0, Math.round((now - Date.parse(vm.createdAt)) / 1000)),
          cpus: vm.cpus,
          memoryMib: vm.memoryMib,
          image: vm.image,
        };
      });
    const view = deps.host?.view;
    const used = view?.used() ?? { cpus: 0, memoryMib: 0 };
    return {
      host: { name: deps.host?.name ?? null, driver: deps.host?.driver ?? deps.driver.name },
      capacity: { cpus: { used: used.cpus, total: view?.capacity.cpus ?? 0 }, memoryMib: { used: used.memoryMib, total: view?.capacity.memoryMib ?? 0 } },
      jobs: { byState: Object.fromEntries(JOB_STATES.map((s) => [s, byState[s] ?? 0])) },
      queueDepth: byState.queued ?? 0,
      vms,
      pools: pools.map((p) => ({
        name: p.name,
        mode: p.mode,
        idle: p.idle,
        starting: p.starting,
        busy: p.busy,
        target: p.targetIdle,
        hits: p.hits,
        misses: p.misses,
      })),
    };
  });

  scope.get('/insights', async (request, reply) => {
    const days = wholeNumber((request.query as { days?: string }).days, 30, 1, 3650);
    if (days === undefined) return badRequest(reply, 'days must be a whole number from 1 to 3650');
    return { days, ...computeInsights(await deps.ledger.finishedSince(days)) };
  });
}

function camelStages(times: ReturnType<typeof stageTimes>) {
  return {
    received: times.received,
    placed: times.placed,
    vmReady: times.vm_ready,
    registered: times.registered,
    started: times.started,
    finished: times.finished,
    released: times.released,
  };
}
