import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { ServeConfig } from '../config/serve-config.ts';
import type { Logger } from '../log.ts';
import { registerApi, type ApiDeps } from './api.ts';
import { registerDashboard } from './dashboard.ts';
import { allowlist, RateLimiter } from './guards.ts';
import type { HearthMetrics } from './metrics.ts';
import { registerWebhooks, type WebhookDeps } from './webhooks.ts';

export interface ServerDeps extends WebhookDeps, ApiDeps {
  readonly config: ServeConfig;
  readonly logger: Logger;
  readonly metrics: HearthMetrics;
  /** Store reachable and a driver usable; each check named. */
  readonly ready: () => Promise<{ ok: boolean; checks: Record<string, string> }>;
}

type Guard = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/** Rejects callers outside a route group's CIDR list; logs who and why, never a header. */
function cidrGuard(cidrs: readonly string[], group: string, logger: Logger): Guard | undefined {
  const allowed = allowlist(cidrs);
  if (!allowed) return undefined;
  return async (request, reply) => {
    if (allowed(request.ip)) return;
    logger.warn({ ip: request.ip, route: request.url.split('?')[0], group }, `rejected: ${request.ip} is not in server.allow.${group}`);
    await reply.code(403).send({ error: `address not allowed for ${group}` });
  };
}

/**
 * The HTTP surface: a small core with each concern in its own plugin, so the
 * webhook routes' raw-body parser and guards stay inside their own scope.
 */
export async function buildServer(deps: ServerDeps): Promise<FastifyInstance> {
  const { config } = deps;
  const tls = config.server.tls;
  const app = Fastify({
    loggerInstance: deps.logger,
    disableRequestLogging: true,
    bodyLimit: config.server.bodyLimitBytes,
    trustProxy: false,
    ...(tls ? { https: { cert: await readPem(tls.certPath), key: await readPem(tls.keyPath) } } : {}),
  }) as unknown as FastifyInstance;

  const limiter = new RateLimiter(config.server.rateLimitPerMinute);
  app.addHook('onRequest', async (request, reply) => {
    const wait = limiter.take(request.ip);
    if (wait === 0) return;
    deps.logger.warn({ ip: request.ip, route: request.url.split('?')[0] }, `rejected: rate limit of ${config.server.rateLimitPerMinute}/min per IP`);
    await reply.code(429).header('retry-after', String(wait)).send({ error: 'rate limited', retryAfterSeconds: wait });
  });
  app.setErrorHandler(async (error: Error & { statusCode?: number; code?: string }, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    const level = status >= 500 ? 'error' : 'warn';
    deps.logger[level]({ route: request.url.split('?')[0], status, code: error.code, reason: error.message }, `rejected: ${error.message}`);
    await reply.code(status).send({ error: status >= 500 ? 'internal error' : error.message });
  });

  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_request, reply) => {
    const result = await deps.ready();
    await reply.code(result.ok ? 200 : 503).send(result);
  });
  const metricsGuard = cidrGuard(config.server.allow.metrics, 'metrics', deps.logger);
  app.get('/metrics', { ...(metricsGuard ? { onRequest: metricsGuard } : {}) }, async (_request, reply) => {
    await reply.header('content-type', deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });

  await app.register(async (scope) => registerWebhooks(scope, deps, cidrGuard(config.server.allow.webhooks, 'webhooks', deps.logger)), { prefix: '/webhooks' });
  const apiGuard = cidrGuard(config.server.allow.api, 'api', deps.logger);
  await app.register(async (scope) => registerApi(scope, deps, config.api.token, apiGuard), { prefix: '/api/v1' });
  // The dashboard reads the same API, so the same allowlist applies to its pages.
  await app.register(async (scope) => {
    if (apiGuard) scope.addHook('onRequest', apiGuard);
    await registerDashboard(scope, { token: config.api.token, logger: deps.logger, secure: Boolean(tls) });
  });
  return app;
}

async function readPem(path: string): Promise<Buffer> {
  const { readFile } = await import('node:fs/promises');
  return readFile(path);
}
