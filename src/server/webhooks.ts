import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ingestDelivery, type IngestDeps } from '../controller/ingest.ts';
import { parseGithubDelivery } from '../forge/github/webhook.ts';
import { verifyGithubSignature } from '../forge/github/verify.ts';
import { parseGitlabDelivery } from '../forge/gitlab/webhook.ts';
import { verifyGitlabToken, verifyStandardWebhook } from '../forge/gitlab/verify.ts';
import { header, WebhookRejection, type WebhookDelivery } from '../forge/webhook.ts';
import type { ForgeKind } from '../forge/forge.ts';
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

/** Verifies a delivery over its raw bytes; a failure is a 401 whose reason names no secret. */
function verify(forge: ForgeKind, request: FastifyRequest, raw: Buffer, deps: WebhookDeps): void {
  const headers = request.headers;
  if (forge === 'github') {
    if (deps.secrets.github.length === 0) throw new WebhookRejection(404, 'GitHub webhooks are not configured (set github.webhookSecret)');
    const result = verifyGithubSignature(raw, header(headers, 'x-hub-signature-256'), deps.secrets.github);
    if (!result.ok) throw new WebhookRejection(401, result.reason);
    return;
  }
  const signed = header(headers, 'webhook-signature') !== undefined;
  if (signed && deps.secrets.gitlabSigning.length > 0) {
    const result = verifyStandardWebhook(raw, { id: header(headers, 'webhook-id'), timestamp: header(headers, 'webhook-timestamp'), signature: header(headers, 'webhook-signature') }, deps.secrets.gitlabSigning);
    if (!result.ok) throw new WebhookRejection(401, result.reason);
    return;
  }
  if (deps.secrets.gitlabTokens.length === 0) throw new WebhookRejection(deps.secrets.gitlabSigning.length > 0 ? 401 : 404, deps.secrets.gitlabSigning.length > 0 ? 'missing webhook-signature header' : 'GitLab webhooks are not configured (set gitlab.webhookToken or gitlab.signingSecret)');
  const result = verifyGitlabToken(header(headers, 'x-gitlab-token'), deps.secrets.gitlabTokens);
  if (!result.ok) throw new WebhookRejection(401, result.reason);
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

  const handle = (forge: ForgeKind) => async (request: FastifyRequest, reply: FastifyReply) => {
    const started = performance.now();
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const deliveryHeader = forge === 'github' ? header(request.headers, 'x-github-delivery') : (header(request.headers, 'idempotency-key') ?? header(request.headers, 'x-gitlab-event-uuid'));
    const deliveryId = deliveryHeader?.slice(0, 64);
    let delivery: WebhookDelivery;
    try {
      verify(forge, request, raw, deps);
      delivery = forge === 'github' ? parseGithubDelivery(request.headers, raw) : parseGitlabDelivery(request.headers, raw);
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
  scope.post('/github', options, handle('github'));
  scope.post('/gitlab', options, handle('gitlab'));
}
