import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ingestDelivery, type IngestDeps } from '../controller/ingest.ts';
import { githubWebhookAdapter } from '../forge/github/webhook.ts';
import { gitlabWebhookAdapter } from '../forge/gitlab/webhook.ts';
import { WebhookRejection, type ForgeWebhookAdapter, type WebhookDelivery } from '../forge/webhook.ts';
import type { Logger } from '../log.ts';
import { webhookResult, type HearthMetrics } from './metrics.ts';

export interface WebhookDeps extends IngestDeps {
  readonly metrics: HearthMetrics;
  readonly logger: Logger;
  readonly secrets: {
    readonly github: readonly string[];
    readonly gitlabTokens: readonly string[];
    readonly gitlabSigning: readonly string[];
  };
}

type Guard = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/** Each forge's adapter: its headers, its verification policy and its payload reader. */
function webhookAdapters(secrets: WebhookDeps['secrets']): readonly ForgeWebhookAdapter[] {
  return [githubWebhookAdapter(secrets.github), gitlabWebhookAdapter({ tokens: secrets.gitlabTokens, signing: secrets.gitlabSigning })];
}

/**
 * POST /webhooks/github and /webhooks/gitlab: verify the raw body, parse, record
 * durably, then answer. Nothing is stored for a delivery that fails any check.
 */
export function registerWebhooks(scope: FastifyInstance, deps: WebhookDeps, guard: Guard | undefined): void {
  // Raw bytes: the signature covers them exactly; JSON is parsed only after verification.
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, _body, done) => {
    done(Object.assign(new Error('webhook content type must be application/json (set it in the forge webhook settings)'), { statusCode: 415 }), undefined);
  });

  const handle = (adapter: ForgeWebhookAdapter) => async (request: FastifyRequest, reply: FastifyReply) => {
    const { forge } = adapter;
    const started = performance.now();
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const deliveryId = adapter.deliveryIdOf(request.headers)?.slice(0, 64);
    let delivery: WebhookDelivery;
    try {
      // The signature covers the raw bytes exactly; the payload is read only once they are verified.
      const verdict = adapter.verify(request.headers, raw);
      if (!verdict.ok) throw new WebhookRejection(verdict.status, verdict.reason);
      delivery = adapter.parse(request.headers, raw);
    } catch (error) {
      if (!(error instanceof WebhookRejection)) throw error;
      deps.metrics.webhooks.inc({ forge, result: webhookResult(error.status === 401 ? 'bad_signature' : 'malformed') });
      deps.logger.warn({ forge, deliveryId, ip: request.ip, status: error.status }, `webhook rejected: ${error.message}`);
      await reply.code(error.status).send({ error: error.message });
      return;
    }
    const result = await ingestDelivery(deps, delivery);
    deps.metrics.webhooks.inc({ forge, result: webhookResult(result.outcome) });
    deps.metrics.ingestSeconds.observe({ forge }, (performance.now() - started) / 1000);
    deps.logger.info({ forge, deliveryId: delivery.deliveryId, event: delivery.event, jobId: result.jobId, outcome: result.outcome }, 'webhook');
    await reply.code(result.status).send({ ok: true, outcome: result.outcome, ...(result.jobId ? { jobId: result.jobId } : {}) });
  };

  const options = guard ? { onRequest: guard } : {};
  for (const adapter of webhookAdapters(deps.secrets)) scope.post(`/${adapter.forge}`, options, handle(adapter));
}
