import { field, header, isId, isObject, isString, parseJsonObject, WebhookRejection, type Headers, type JobPhase, type WebhookDelivery } from '../webhook.ts';

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
  const event = header(headers, 'x-gitlab-event');
  if (!event) throw new WebhookRejection(400, 'missing X-Gitlab-Event header');
  // Idempotency-Key stays the same across GitLab's retries; older GitLab sends only the event UUID.
  const deliveryId = header(headers, 'idempotency-key') ?? header(headers, 'x-gitlab-event-uuid') ?? header(headers, 'webhook-id');
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
