import {
  field,
  header,
  isId,
  isObject,
  isString,
  parseJsonObject,
  WebhookRejection,
  type ForgeWebhookAdapter,
  type Headers,
  type JobPhase,
  type WebhookDelivery,
} from '../webhook.ts';
import { verifyGitlabDelivery } from './verify.ts';

/**
 * The headers GitLab sends with a delivery (lower-case, as Node gives them):
 * X-Gitlab-Token for a secret token, Standard Webhooks' webhook-* for a
 * signature; Idempotency-Key stays the same across retries.
 */
export const GITLAB_HEADERS = {
  event: 'x-gitlab-event',
  token: 'x-gitlab-token',
  idempotencyKey: 'idempotency-key',
  eventUuid: 'x-gitlab-event-uuid',
  webhookId: 'webhook-id',
  webhookTimestamp: 'webhook-timestamp',
  webhookSignature: 'webhook-signature',
} as const;

/** The delivery's id: Idempotency-Key, else (older GitLab) the event UUID, else the signed message id. */
function deliveryIdOf(headers: Headers): string | undefined {
  return header(headers, GITLAB_HEADERS.idempotencyKey) ?? header(headers, GITLAB_HEADERS.eventUuid) ?? header(headers, GITLAB_HEADERS.webhookId);
}

const DELIVERY_ID = /^[A-Za-z0-9-]{1,64}$/;

function phaseOf(status: string): JobPhase {
  if (status === 'pending') return 'queued';
  if (status === 'running') return 'running';
  if (status === 'success' || status === 'failed') return 'finished';
  if (status === 'canceled' || status === 'canceling') return 'cancelled';
  return 'other'; // created, waiting_for_resource, preparing, manual, scheduled, skipped
}

/**
 * Reads a verified GitLab delivery. A Job Hook becomes a job event whose labels
 * are not known yet (the hook has no tags); other hooks are ignored.
 */
export function parseGitlabDelivery(headers: Headers, raw: Buffer): WebhookDelivery {
  const event = header(headers, GITLAB_HEADERS.event);
  if (!event) throw new WebhookRejection(400, 'missing X-Gitlab-Event header');
  const deliveryId = deliveryIdOf(headers);
  if (!deliveryId || !DELIVERY_ID.test(deliveryId)) throw new WebhookRejection(400, 'missing or malformed Idempotency-Key (or X-Gitlab-Event-UUID) header');
  const body = parseJsonObject(raw);
  if (event !== 'Job Hook') return { forge: 'gitlab', deliveryId, event, payload: { kind: 'ignored', reason: `event ${event} is not handled` } };
  if (body.object_kind !== 'build') throw new WebhookRejection(400, 'a Job Hook must have object_kind "build"');
  const buildId = field(body, 'build_id', isId, 'payload');
  const projectId = field(body, 'project_id', isId, 'payload');
  const status = field(body, 'build_status', isString, 'payload');
  const runner = isObject(body.runner) ? body.runner : null;
  const name = typeof body.build_name === 'string' ? body.build_name.slice(0, 200) : undefined;
  const finished = status === 'success' || status === 'failed' || status === 'canceled';
  // GitLab names no failing command; its failure reason (script_failure, job_execution_timeout, ...) is the closest.
  const failedStep = status === 'failed' && typeof body.build_failure_reason === 'string' ? body.build_failure_reason.slice(0, 200) : undefined;
  return {
    forge: 'gitlab',
    deliveryId,
    event,
    payload: {
      kind: 'job',
      job: { forge: 'gitlab', forgeJobId: String(buildId), repository: String(projectId), labels: [], name },
      phase: phaseOf(status),
      detail: status,
      runnerName: runner && typeof runner.description === 'string' ? runner.description : null,
      labelsKnown: false,
      conclusion: finished ? status : undefined,
      failedStep,
    },
  };
}

/** GitLab webhooks, verified by secret token (`tokens`) or Standard Webhooks signature (`signing`), each a list for rotation. */
export function gitlabWebhookAdapter(secrets: { readonly tokens: readonly string[]; readonly signing: readonly string[] }): ForgeWebhookAdapter {
  return {
    forge: 'gitlab',
    deliveryIdOf,
    verify: (headers, raw, nowSeconds) =>
      verifyGitlabDelivery(
        raw,
        {
          token: header(headers, GITLAB_HEADERS.token),
          id: header(headers, GITLAB_HEADERS.webhookId),
          timestamp: header(headers, GITLAB_HEADERS.webhookTimestamp),
          signature: header(headers, GITLAB_HEADERS.webhookSignature),
        },
        secrets,
        nowSeconds,
      ),
    parse: parseGitlabDelivery,
  };
}
