import type { ForgeKind } from '../forge/forge.ts';
import type { GitlabForge } from '../forge/gitlab/client.ts';
import type { WebhookDelivery } from '../forge/webhook.ts';
import { poolForJob, type PoolConfig } from '../config/pools-config.ts';
import { jobId, type JobShape, type Ledger, type WebhookEffect } from '../ledger/ledger.ts';
import type { Logger } from '../log.ts';
import { jobOwnership, type ShapeLimits, type VmShape } from '../scheduler/labels.ts';

/** What decides whether a job is Hearth's and with which shape. */
export interface AdmissionRules {
  readonly limits: ShapeLimits;
  readonly defaultShape: VmShape;
  /** Pools a job's labels may route it to: the job then takes its pool's shape. */
  readonly poolConfigs?: readonly PoolConfig[] | undefined;
}

export type Admission =
  { readonly owned: false; readonly reason: string } | { readonly owned: true; readonly refused: string } | { readonly owned: true; readonly shape: JobShape };

/**
 * Whether a job is ours and, if so, its shape: computed here once (the webhook,
 * or the forge sweep for a missed one) and stored with the job, so placement
 * and the host never read the labels again. The shape is the labels' (see
 * `jobOwnership`), or the pool's when the labels route the job to a pool.
 */
export function admitJob(rules: AdmissionRules, labels: readonly string[]): Admission {
  const ownership = jobOwnership(labels, rules.limits, rules.defaultShape);
  if (!ownership.owned || 'refused' in ownership) return ownership;
  const pool = poolForJob(rules.poolConfigs ?? [], labels, ownership.pool);
  const shape = pool ? { cpus: pool.cpus, memoryMib: pool.memoryMib, image: pool.image } : ownership.shape;
  return { owned: true, shape: { ...shape, pool: pool?.name ?? null, requires: ownership.requires } };
}

export interface IngestDeps extends AdmissionRules {
  readonly ledger: Ledger;
  /** Only for the tags a GitLab Job Hook lacks. */
  readonly gitlab?: GitlabForge | undefined;
  readonly logger: Logger;
  /** Called when the ledger changed, so the controller reconciles soon. */
  readonly onChange: () => void;
}

export interface IngestOutcome {
  /** 200: recorded (or a duplicate of something recorded); 202: accepted and ignored. */
  readonly status: 200 | 202;
  readonly outcome: 'enqueued' | 'updated' | 'duplicate' | 'unchanged' | 'not_ours' | 'refused' | 'ignored' | 'pong' | 'deferred';
  readonly jobId?: string;
}

/**
 * Turns a verified, parsed delivery into at most one ledger change, recorded in
 * the same transaction as the delivery id so a redelivery changes nothing. Only
 * owned jobs are enqueued; updates touch only jobs the ledger already has.
 */
export async function ingestDelivery(deps: IngestDeps, delivery: WebhookDelivery): Promise<IngestOutcome> {
  const { payload } = delivery;
  const record = (effect: WebhookEffect) =>
    deps.ledger.recordWebhook({ forge: delivery.forge, deliveryId: delivery.deliveryId, event: delivery.event }, effect);
  if (payload.kind === 'ping') {
    await record({ kind: 'none' });
    return { status: 200, outcome: 'pong' };
  }
  if (payload.kind === 'ignored') return { status: 202, outcome: 'ignored' };

  const id = jobId(delivery.forge, payload.job.forgeJobId);
  let effect: WebhookEffect = { kind: 'none' };
  let outcome: IngestOutcome['outcome'] = 'unchanged';
  const why = `${delivery.forge} webhook ${delivery.deliveryId}: ${payload.detail}`;
  if (payload.phase === 'queued') {
    let labels = payload.job.labels;
    if (!payload.labelsKnown) {
      const fetched = await fetchGitlabTags(deps, delivery.forge, payload.job);
      if (fetched === undefined) {
        await record({ kind: 'none' });
        return { status: 200, outcome: 'deferred', jobId: id };
      }
      // A pending hook delivered late, after the job already moved on, must start nothing.
      if (fetched.status !== 'pending') {
        await record({ kind: 'none' });
        return { status: 200, outcome: 'unchanged', jobId: id };
      }
      labels = fetched.tags;
    }
    const admission = admitJob(deps, labels);
    if (!admission.owned) {
      await record({ kind: 'none' });
      return { status: 202, outcome: 'not_ours' };
    }
    if ('refused' in admission) {
      deps.logger.warn(
        { jobId: id, deliveryId: delivery.deliveryId, labels, reason: admission.refused },
        'refusing an owned job: its shape is outside the limits',
      );
      await record({ kind: 'none' });
      return { status: 202, outcome: 'refused', jobId: id };
    }
    effect = { kind: 'enqueue', job: { ...payload.job, labels, shape: admission.shape }, reason: why };
    outcome = 'enqueued';
  } else if (payload.phase === 'running') {
    effect = {
      kind: 'transition',
      id,
      to: 'running',
      reason: `${why}${payload.runnerName ? ` on ${payload.runnerName}` : ''}`,
      ranOn: payload.runnerName ?? undefined,
    };
    outcome = 'updated';
  } else if (payload.phase === 'finished' || payload.phase === 'cancelled') {
    const to = payload.phase === 'finished' ? 'completed' : 'cancelled';
    const known = await deps.ledger.job(id);
    // An owned job that ends before its queued event arrived (reordered delivery) is recorded as ended.
    // (A job whose shape would be refused was never ours to record.)
    const admission = !known && payload.labelsKnown ? admitJob(deps, payload.job.labels) : undefined;
    const verdict = { conclusion: payload.conclusion ?? (payload.phase === 'cancelled' ? 'cancelled' : undefined), failedStep: payload.failedStep };
    effect =
      admission && 'shape' in admission
        ? { kind: 'finish', job: { ...payload.job, shape: admission.shape }, to, reason: why, verdict }
        : { kind: 'transition', id, to, reason: why, ranOn: payload.runnerName ?? undefined, verdict };
    outcome = 'updated';
  }
  const result = await record(effect);
  if (result.duplicate) return { status: 200, outcome: 'duplicate', jobId: id };
  if (result.changed) deps.onChange();
  return { status: 200, outcome: result.changed ? outcome : 'unchanged', jobId: id };
}

/** The Job Hook has no tags; one quick API call gets them. On failure the reconcile loop finds the job instead. */
async function fetchGitlabTags(
  deps: IngestDeps,
  forge: ForgeKind,
  job: { repository: string; forgeJobId: string },
): Promise<{ tags: string[]; status: string } | undefined> {
  if (forge !== 'gitlab' || !deps.gitlab) return undefined;
  try {
    return await deps.gitlab.jobLabels(job, true);
  } catch (error) {
    deps.logger.warn({ jobId: jobId(forge, job.forgeJobId), err: (error as Error).message }, 'could not read the job tags now; reconcile will pick the job up');
    return undefined;
  }
}
