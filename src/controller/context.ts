import { HearthError } from '../errors.ts';
import type { Forge, ForgeKind, RunnerRegistration } from '../forge/forge.ts';
import type { HostInfo, Job, Ledger, TimelineEntry, TransitionExtra } from '../ledger/ledger.ts';
import type { LeaderElection } from '../ledger/leader.ts';
import type { JobLogs } from '../ledger/logs.ts';
import { isFinal, type JobState } from '../ledger/states.ts';
import type { Logger } from '../log.ts';
import type { PoolConfig } from '../config/pools-config.ts';
import type { VmPool } from '../pool/pool.ts';
import type { Capacity } from '../scheduler/capacity.ts';
import type { ShapeLimits, VmShape } from '../scheduler/labels.ts';
import type { PlacementStrategy } from '../scheduler/placement.ts';
import type { VmDriver } from '../vm/driver.ts';
import { destroyQuietly } from '../vm/gc.ts';

export interface ControllerSettings {
  readonly limits: ShapeLimits;
  readonly defaultShape: VmShape;
  readonly capacity: Capacity;
  /** 0: as many as the capacity allows. */
  readonly maxConcurrent: number;
  readonly network: boolean;
  readonly jobTimeoutMinutes: number;
  readonly intervalSeconds: number;
  readonly stuckAfterSeconds: number;
  readonly maxAttempts: number;
  /** Warm and snapshot pools; a job routed to one takes an idle VM at once. */
  readonly pools?: readonly VmPool[];
  /** Aborted when the service stops: back-off waits end at once. */
  readonly shutdown?: AbortSignal;
  /** Every pool's config: jobs found by the forge sweep get their pool (and its shape) at enqueue. */
  readonly poolConfigs?: readonly PoolConfig[];
  /** Where this process sits in a cluster (one box: role `all`). */
  readonly cluster: ClusterSettings;
}

/**
 * The two halves of the work: `controller` replicas take webhooks and, while
 * leader, place jobs on hosts and watch them; `host` processes run the VMs of
 * the jobs placed on them. `all` is both in one process (the single box).
 */
export type ClusterRole = 'all' | 'controller' | 'host';

export interface ClusterSettings {
  readonly role: ClusterRole;
  /** This host's id in the ledger (roles all and host). */
  readonly hostId: string;
  readonly placement: PlacementStrategy;
  readonly heartbeatSeconds: number;
  /** A host silent this long is lost: its jobs are re-queued or failed. */
  readonly hostTimeoutSeconds: number;
  /** What this host offers, registered at start. */
  readonly describeHost: () => Promise<HostInfo>;
  readonly leader: LeaderElection;
}

/** Each thing the reconcile loop does to close a gap between the ledger and the world. */
export type ReconcileAction =
  | 'claimed'
  | 'recovered'
  | 'enqueued_missed'
  | 'released'
  | 'retried'
  | 'failed'
  | 'unstuck'
  | 'orphan_vm'
  | 'orphan_runner'
  | 'logs_pruned'
  | 'host_lost'
  | 'lost_requeued'
  | 'lost_failed'
  | 'aborted';

/** What the controller reports as it works; the server turns it into Prometheus metrics. */
export interface ControllerObserver {
  transition?(to: JobState, forge: string): void;
  /** A job's VM and registration are gone, so its whole timeline is known. */
  released?(job: Job, timeline: readonly TimelineEntry[]): void;
  provisionFailed?(forge: string, final: boolean): void;
  reconciled?(step: string, ok: boolean): void;
  action?(kind: ReconcileAction): void;
}

/**
 * A launch running in this process: a handle kept for speed (stop its VM at
 * once, count what it holds). Correctness never depends on it: what the launch
 * made is in the ledger as finalizers, and a restart finishes them.
 */
export interface Launch {
  readonly shape: VmShape;
  readonly pool?: string;
  /** The controller gave the job to another host (this one was lost): tear down, report nothing. */
  disowned?: boolean;
  vmId?: string;
  registration?: RunnerRegistration;
  task?: Promise<void>;
}

/**
 * What every step and the job lifecycle share: the ledger, driver and forges,
 * this process's place in the cluster, and the few decisions they all make
 * (move a job, retry or fail it, destroy a VM and say so if that fails).
 */
export class ControllerContext {
  /** Launches running in this process (see `Launch`). */
  readonly launches = new Map<string, Launch>();
  /** Asks the loop for another pass soon (set by the loop). */
  kick: () => void = () => {};
  /** Set when the service stops: no new launches. */
  stopped = false;

  constructor(
    readonly ledger: Ledger,
    readonly driver: VmDriver,
    readonly forges: ReadonlyMap<ForgeKind, Forge>,
    readonly settings: ControllerSettings,
    readonly logger: Logger,
    readonly observer: ControllerObserver,
    /** Where each job's runner output and Hearth's steps for it are kept. */
    readonly logs: JobLogs | undefined,
  ) {}

  get cluster(): ClusterSettings {
    return this.settings.cluster;
  }

  get hostId(): string {
    return this.cluster.hostId;
  }

  /** This process runs VMs (roles all and host). */
  get runsVms(): boolean {
    return this.cluster.role !== 'controller';
  }

  /** This process does the cluster-wide work now: it is a controller and holds the leadership. */
  get leads(): boolean {
    return this.cluster.role !== 'host' && this.cluster.leader.isLeader;
  }

  get pools(): readonly VmPool[] {
    return this.settings.pools ?? [];
  }

  get hostTimeoutMs(): number {
    return this.cluster.hostTimeoutSeconds * 1000;
  }

  forgeOf(job: Pick<Job, 'forge'>): Forge | undefined {
    return this.forges.get(job.forge);
  }

  mine(job: Pick<Job, 'host'>): boolean {
    return job.host === this.hostId;
  }

  async move(job: Pick<Job, 'id' | 'forge'>, to: JobState, reason: string, extra: TransitionExtra = {}): Promise<boolean> {
    const moved = await this.ledger.transition(job.id, to, reason, extra);
    if (moved) {
      this.observer.transition?.(to, job.forge);
      this.logger.info({ jobId: job.id, to, reason }, 'job state');
    }
    return moved;
  }

  /** A failed attempt: back to the queue for another host, or failed once the attempts are spent. */
  async retryOrFail(job: Job, reason: string): Promise<void> {
    const current = (await this.ledger.job(job.id)) ?? job;
    if (isFinal(current.state)) return;
    if (current.attempts + 1 >= this.settings.maxAttempts) {
      const error = new HearthError('HEARTH_ERR_PROVISION', { jobId: job.id, attempts: current.attempts + 1, reason });
      this.observer.provisionFailed?.(job.forge, true);
      this.logger.error({ jobId: job.id, err: { code: error.code, message: error.message } }, 'job failed: no runner after the allowed attempts');
      this.observer.action?.('failed');
      await this.move(current, 'failed', error.message, { error: reason, attempt: true });
    } else {
      this.observer.provisionFailed?.(job.forge, false);
      this.observer.action?.('retried');
      await this.move(current, 'queued', `retrying: ${reason}`, { error: reason, attempt: true, placement: null });
    }
  }

  /** Destroys a VM; a failure is logged with the job and VM (the duty stays, so a later pass retries it). True when it is gone. */
  destroyQuietly(vmId: string, why: string, jobId?: string): Promise<boolean> {
    return destroyQuietly(this.driver, vmId, why, this.logger.child(jobId ? { jobId } : {}));
  }
}
