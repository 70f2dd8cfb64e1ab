import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { JobRow, Ledger } from '../ledger/ledger.ts';
import type { Logger } from '../log.ts';
import type { VmDriver } from '../vm/driver.ts';
import { bearerMatches } from './guards.ts';
import type { PoolStatus } from '../pool/pool.ts';

export interface ApiDeps {
  readonly ledger: Ledger;
  readonly driver: VmDriver;
  readonly logger: Logger;
  readonly pools?: () => readonly PoolStatus[];
}

type Guard = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

const MAX_LIMIT = 10_000;

function jobView(job: JobRow) {
  return {
    id: job.id,
    forge: job.forge,
    forgeJobId: job.forge_job_id,
    repository: job.repository,
    labels: JSON.parse(job.labels) as string[],
    state: job.state,
    attempts: job.attempts,
    vmId: job.vm_id,
    runnerName: job.runner_name,
    runnerId: job.runner_id,
    lastError: job.last_error,
    createdAt: job.created_at,
    updatedAt: job.updated_at,
    releasedAt: job.released_at,
  };
}

function encodeCursor(job: JobRow): string {
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

/** /api/v1: jobs with their timelines, VMs and runners; every route needs the bearer token. */
export function registerApi(scope: FastifyInstance, deps: ApiDeps, token: string | null, guard: Guard | undefined): void {
  scope.addHook('onRequest', async (request, reply) => {
    if (guard) await guard(request, reply);
    if (reply.sent) return;
    if (!token) {
      await reply.code(503).send({ error: 'the API is disabled: set api.token (HEARTH_API_TOKEN) to enable it' });
      return;
    }
    if (!bearerMatches(request.headers.authorization, token)) {
      deps.logger.warn({ ip: request.ip, route: request.url.split('?')[0] }, 'rejected: API call without a valid bearer token');
      await reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'send Authorization: Bearer <api.token>' });
    }
  });

  scope.get('/jobs', async (request, reply) => {
    const query = request.query as { limit?: string; cursor?: string };
    const limit = query.limit === undefined ? 100 : Number(query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) return badRequest(reply, `limit must be a whole number from 1 to ${MAX_LIMIT}`);
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    if (query.cursor !== undefined && !after) return badRequest(reply, 'cursor is not one this API gave out: pass nextCursor from the previous page');
    const rows = await deps.ledger.jobs(limit, after);
    const last = rows.at(-1);
    return { jobs: rows.map(jobView), nextCursor: rows.length === limit && last ? encodeCursor(last) : null };
  });

  scope.get('/jobs/:id', async (request, reply) => {
    const { id } = request.params as { id: string };
    const job = await deps.ledger.job(id);
    if (!job) return reply.code(404).send({ error: `no job ${id}: ids look like github:123456 or gitlab:7890` });
    return { ...jobView(job), timeline: await deps.ledger.timeline(id) };
  });

  scope.get('/vms', async () => {
    const vms = await deps.driver.list();
    return { vms };
  });

  scope.get('/pools', async () => ({ pools: deps.pools?.() ?? [] }));

  scope.get('/runners', async () => {
    const jobs = await deps.ledger.inStates(['provisioning', 'runner_registered', 'running']);
    return { runners: jobs.filter((j) => j.runner_name).map((j) => ({ name: j.runner_name, id: j.runner_id, forge: j.forge, jobId: j.id, vmId: j.vm_id, state: j.state })) };
  });
}
