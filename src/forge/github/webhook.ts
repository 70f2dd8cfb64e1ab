import {
  field,
  header,
  isId,
  isObject,
  isString,
  isStringList,
  parseJsonObject,
  WebhookRejection,
  type ForgeWebhookAdapter,
  type Headers,
  type JobPhase,
  type WebhookDelivery,
} from '../webhook.ts';
import { verifyGithubDelivery } from './verify.ts';

/** The headers GitHub sends with a delivery (lower-case, as Node gives them). */
export const GITHUB_HEADERS = { delivery: 'x-github-delivery', event: 'x-github-event', signature: 'x-hub-signature-256' } as const;

const DELIVERY_ID = /^[A-Za-z0-9-]{1,64}$/;

function phaseOf(action: string, conclusion: unknown): JobPhase {
  if (action === 'queued') return 'queued';
  if (action === 'in_progress') return 'running';
  if (action === 'completed') return conclusion === 'cancelled' ? 'cancelled' : 'finished';
  return 'other'; // waiting: held by an environment's protection rules; nothing to do yet
}

/**
 * Reads a verified GitHub delivery. `workflow_job` becomes a job event, `ping`
 * is acknowledged, anything else is ignored (202). Malformed payloads are a 400
 * naming the field, so fuzzed input never reaches the ledger.
 */
export function parseGithubDelivery(headers: Headers, raw: Buffer): WebhookDelivery {
  const deliveryId = header(headers, GITHUB_HEADERS.delivery);
  const event = header(headers, GITHUB_HEADERS.event);
  if (!deliveryId || !DELIVERY_ID.test(deliveryId)) throw new WebhookRejection(400, 'missing or malformed X-GitHub-Delivery header');
  if (!event || !/^[a-z_]{1,64}$/.test(event)) throw new WebhookRejection(400, 'missing or malformed X-GitHub-Event header');
  const body = parseJsonObject(raw);
  if (event === 'ping') return { forge: 'github', deliveryId, event, payload: { kind: 'ping' } };
  if (event !== 'workflow_job') return { forge: 'github', deliveryId, event, payload: { kind: 'ignored', reason: `event ${event} is not handled` } };
  const action = field(body, 'action', isString, 'payload');
  const job = field(body, 'workflow_job', isObject, 'payload');
  const repository = field(body, 'repository', isObject, 'payload');
  const id = field(job, 'id', isId, 'workflow_job');
  const labels = field(job, 'labels', isStringList, 'workflow_job');
  const fullName = field(repository, 'full_name', isString, 'repository');
  if (!/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(fullName)) throw new WebhookRejection(400, 'repository.full_name is not owner/name');
  const runnerName = typeof job.runner_name === 'string' ? job.runner_name : null;
  const name = typeof job.name === 'string' ? job.name.slice(0, 200) : undefined;
  const conclusion = action === 'completed' && typeof job.conclusion === 'string' ? job.conclusion : undefined;
  return {
    forge: 'github',
    deliveryId,
    event,
    payload: {
      kind: 'job',
      job: { forge: 'github', forgeJobId: String(id), repository: fullName, labels, name },
      phase: phaseOf(action, job.conclusion),
      detail: action === 'completed' ? `completed (${typeof job.conclusion === 'string' ? job.conclusion : 'no conclusion'})` : action,
      runnerName,
      labelsKnown: true,
      conclusion,
      failedStep: conclusion === 'failure' ? firstFailedStep(job.steps) : undefined,
    },
  };
}

/** The name of the first step GitHub reports as failed, for the Insights view. */
function firstFailedStep(steps: unknown): string | undefined {
  if (!Array.isArray(steps)) return undefined;
  for (const step of steps) {
    if (isObject(step) && step.conclusion === 'failure' && typeof step.name === 'string') return step.name.slice(0, 200);
  }
  return undefined;
}

/** GitHub webhooks, verified with `secrets` (current first; older ones still accepted during a rotation). */
export function githubWebhookAdapter(secrets: readonly string[]): ForgeWebhookAdapter {
  return {
    forge: 'github',
    deliveryIdOf: (headers) => header(headers, GITHUB_HEADERS.delivery),
    verify: (headers, raw) => verifyGithubDelivery(raw, header(headers, GITHUB_HEADERS.signature), secrets),
    parse: parseGithubDelivery,
  };
}
