import { setTimeout as sleep } from 'node:timers/promises';
import { HearthError, isHearthError } from '../errors.ts';
import { RUNNER_NAME_PREFIX, runnerName, type Forge, type ForgeJobStatus, type ForgeKind, type RunnerRegistration } from '../forge/forge.ts';
import type { HostInfo, JobRow, Ledger, PlacementChoice, TimelineEntry } from '../ledger/ledger.ts';
import type { LeaderElection } from '../ledger/leader.ts';
import { placeJobs, type HostSlot, type PlacementStrategy } from '../scheduler/placement.ts';
import type { JobLogs } from '../ledger/logs.ts';
import { isFinal, type JobState } from '../ledger/states.ts';
import type { Logger } from '../log.ts';
import { fits, type Capacity } from '../scheduler/capacity.ts';
import { jobOwnership, type ShapeLimits, type VmShape } from '../scheduler/labels.ts';
import type { Vm, VmDriver } from '../vm/driver.ts';
import { poolForJob, type PoolConfig } from '../config/pools-config.ts';
import type { VmPool } from '../pool/pool.ts';
import { reconcileLeakedVms } from '../vm/gc.ts';

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
  /** Every pool's config, for job shapes where pools run on other hosts (role controller). */
  readonly poolConfigs?: readonly PoolConfig[];
  /** Where this process sits in a cluster; absent: one process does everything (SQLite). */
  readonly cluster?: ClusterSettings;
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
export type ReconcileAction = 'claimed' | 'recovered' | 'enqueued_missed' | 'released' | 'retried' | 'failed' | 'unstuck' | 'orphan_vm' | 'orphan_runner' | 'logs_pruned' | 'host_lost' | 'lost_requeued' | 'lost_failed' | 'aborted';

/** What the controller reports as it works; the server turns it into Prometheus metrics. */
export interface ControllerObserver {
  transition?(to: JobState, forge: string): void;
  /** A job's VM and registration are gone, so its whole timeline is known. */
  released?(job: JobRow, timeline: readonly TimelineEntry[]): void;
  provisionFailed?(forge: string, final: boolean): void;
  reconciled?(step: string, ok: boolean): void;
  action?(kind: ReconcileAction): void;
}

interface ActiveJob {
  readonly shape: VmShape;
  readonly pool?: string;
  /** The controller gave the job to another host (this one was lost): tear down, report nothing. */
  disowned?: boolean;
  vmId?: string;
  registration?: RunnerRegistration;
  task?: Promise<void>;
}

const TRANSITIONAL: readonly JobState[] = ['claimed', 'provisioning', 'runner_registered', 'running'];

/**
 * The one place that closes the gap between what the ledger wants (jobs that
 * need a runner) and what exists (VMs, forge registrations). Level-triggered:
 * every pass reads the whole picture again, so a lost webhook, a crash or a
 * duplicate event only delays convergence. Webhooks just make a pass come sooner.
 */
export class RunnerController {
  private readonly active = new Map<string, ActiveJob>();
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private firstPass = true;

  constructor(
    private readonly ledger: Ledger,
    private readonly driver: VmDriver,
    private readonly forges: ReadonlyMap<ForgeKind, Forge>,
    private readonly settings: ControllerSettings,
    private readonly logger: Logger,
    private readonly observer: ControllerObserver = {},
    /** Where each job's runner output and Hearth's steps for it are kept. */
    private readonly logs?: JobLogs,
  ) {}

  private lastLogPrune = 0;
  /** When each periodic step last ran. */
  private readonly lastRun = new Map<string, number>();
  /** Since when this process has led with the store reachable: a host is judged only after a full timeout of that. */
  private watchingSince = 0;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private registered = false;

  private get cluster(): ClusterSettings | undefined {
    return this.settings.cluster;
  }

  /** This process runs VMs (roles all and host). */
  private get runsVms(): boolean {
    return !this.cluster || this.cluster.role !== 'controller';
  }

  /** This process does the cluster-wide work now: it is a controller and holds the leadership. */
  private get leads(): boolean {
    return !this.cluster || (this.cluster.role !== 'host' && this.cluster.leader.isLeader);
  }

  private get hostId(): string {
    return this.cluster?.hostId ?? 'local';
  }

  start(): void {
    this.stopped = false;
    this.kick();
    this.timer = setInterval(() => this.kick(), this.settings.intervalSeconds * 1000);
    this.timer.unref();
    if (this.cluster && this.runsVms) {
      this.heartbeatTimer = setInterval(() => void this.heartbeat().catch((error: unknown) => this.logger.warn({ err: error }, 'heartbeat failed; retrying')), this.cluster.heartbeatSeconds * 1000);
      this.heartbeatTimer.unref();
    }
  }

  /** Asks for a reconcile pass soon; passes never overlap, and a kick during one runs another after it. */
  kick(): void {
    if (this.stopped) return;
    if (this.pass) {
      this.again = true;
      return;
    }
    this.pass = this.reconcile()
      .catch((error: unknown) => this.logger.error({ err: error }, 'reconcile pass failed'))
      .finally(() => {
        this.pass = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** Waits for the current pass (tests and shutdown). */
  async settle(): Promise<void> {
    while (this.pass) await this.pass;
  }

  get activeJobs(): number {
    return this.active.size;
  }

  /** Stops taking work and tears down every VM and registration this process holds. */
  async stop(reason: string): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    await this.settle();
    for (const [id, job] of this.active) {
      this.logger.info({ jobId: id, vmId: job.vmId }, `stopping: ${reason}`);
      if (job.vmId) await this.driver.destroy(job.vmId).catch(() => {});
    }
    await Promise.allSettled([...this.active.values()].map((j) => j.task));
    for (const pool of this.pools) await pool.close();
    // A clean stop hands this host's placement back at once instead of after the timeout.
    if (this.cluster && this.runsVms && this.registered) await this.ledger.markHostLeft(this.hostId).catch(() => {});
  }

  /** One full pass. Each step is independent: one failing (a forge down) does not stop the others. */
  async reconcile(): Promise<void> {
    // host: runs where VMs run; leader: on the replica holding the leadership (checked per step: it can move).
    // every: on each pass, kicks included; periodic: sweeps that read the world (the forge API, every VM)
    // at most once per interval, so a busy host's kicks do not turn into API calls and full scans.
    const steps: [string, 'host' | 'leader', 'every' | 'periodic', () => Promise<void>][] = [
      ['heartbeat', 'host', 'every', () => this.heartbeat()],
      ['recover', 'host', 'periodic', () => this.recoverAbandoned()],
      ['abort', 'host', 'periodic', () => this.abortDisowned()],
      ['sync_queued', 'leader', 'periodic', () => this.syncQueued()],
      ['hosts', 'leader', 'periodic', () => this.reconcileLostHosts()],
      ['release', 'host', 'every', () => this.releaseFinished()],
      ['release_off_host', 'leader', 'periodic', () => this.releaseOffHost()],
      ['stuck', 'host', 'periodic', () => this.failStuck()],
      ['place', 'leader', 'every', () => this.placeQueued()],
      ['provision', 'host', 'every', () => this.provisionPlaced()],
      ['pools', 'host', 'every', () => this.maintainPools()],
      ['orphans', 'host', 'periodic', () => this.removeOrphanVms()],
      ['orphan_runners', 'leader', 'periodic', () => this.removeOrphanRunners()],
      ['logs', 'leader', 'periodic', () => this.pruneLogs()],
    ];
    if (!this.leads) this.watchingSince = 0;
    else if (this.watchingSince === 0) this.watchingSince = Date.now();
    const intervalMs = this.settings.intervalSeconds * 1000;
    for (const [name, where, when, step] of steps) {
      if (this.stopped) return;
      if (where === 'host' ? !this.runsVms : !this.leads) continue;
      if (when === 'periodic') {
        if (Date.now() - (this.lastRun.get(name) ?? 0) < intervalMs) continue;
        this.lastRun.set(name, Date.now());
      }
      try {
        await step();
        this.observer.reconciled?.(name, true);
      } catch (error) {
        // The store may have been away (a restart): heartbeats failed meanwhile too, so silence proves nothing yet.
        if (this.leads) this.watchingSince = Date.now();
        this.observer.reconciled?.(name, false);
        this.logger.warn({ step: name, err: isHearthError(error) ? { message: error.message, fix: error.fix } : error }, 'reconcile step failed; the next pass retries');
      }
    }
    this.firstPass = false;
  }

  private forgeOf(job: JobRow): Forge | undefined {
    return this.forges.get(job.forge as ForgeKind);
  }

  private async move(job: { id: string; forge: string }, to: JobState, reason: string, extra: Parameters<Ledger['transition']>[3] = {}): Promise<boolean> {
    const moved = await this.ledger.transition(job.id, to, reason, extra);
    if (moved) {
      this.observer.transition?.(to, job.forge);
      this.logger.info({ jobId: job.id, to, reason }, 'job state');
    }
    return moved;
  }

  /**
   * Jobs in a transitional state that no task of this process works on were
   * abandoned by a process that died (kill -9, power loss). Their VMs died with
   * it (or are destroyed here); the forge says what became of the job.
   */
  private async recoverAbandoned(): Promise<void> {
    if (this.firstPass) {
      const leaked = await reconcileLeakedVms(this.driver, { all: false });
      for (const vm of leaked) this.logger.warn({ vmId: vm.id }, 'destroyed a VM left by a process that died');
    }
    // Claimed jobs are only placed here, not started: provisioning picks them up.
    for (const job of await this.ledger.inStates(['provisioning', 'runner_registered', 'running'])) {
      // Jobs on other hosts are theirs to recover; the leader steps in when a host is lost.
      if (this.active.has(job.id) || !this.mine(job)) continue;
      const log = this.logger.child({ jobId: job.id, vmId: job.vm_id ?? undefined });
      if (job.vm_id) await this.driver.destroy(job.vm_id).catch(() => {});
      const forge = this.forgeOf(job);
      const status: ForgeJobStatus = forge ? await forge.jobStatus({ repository: job.repository, forgeJobId: job.forge_job_id }) : { status: 'unknown' };
      log.warn({ state: job.state, forgeStatus: status.status }, 'job abandoned by an earlier process; recovering');
      this.observer.action?.('recovered');
      await this.settleFromForge(job, status, 'its VM was lost when the process that ran it stopped');
    }
  }

  /** Decides a job whose runner is gone from what the forge says of it. */
  private async settleFromForge(job: JobRow, status: ForgeJobStatus, lost: string): Promise<void> {
    if (status.status === 'finished') await this.move(job, 'completed', `forge reports it finished: ${status.conclusion}`, { verdict: { conclusion: status.conclusion } });
    else if (status.status === 'cancelled') await this.move(job, 'cancelled', 'forge reports it cancelled', { verdict: { conclusion: 'cancelled' } });
    else if (status.status === 'running' && status.runnerName && status.runnerName !== job.runner_name && status.runnerName.startsWith(RUNNER_NAME_PREFIX)) {
      // With equal labels the forge gave this job another Hearth runner; that runner's VM carries it now.
      await this.move(job, 'running', `forge reports it running on ${status.runnerName}`, { ranOn: status.runnerName });
      await this.teardown(job.id);
      return;
    } else if (status.status === 'running') await this.move(job, 'failed', `${lost} while the job ran`, { error: lost });
    else await this.retryOrFail(job, lost);
    await this.teardown(job.id);
  }

  private async retryOrFail(job: JobRow, reason: string): Promise<void> {
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

  /** Lost webhooks: the forge's queued jobs that the ledger does not know, if they are ours. */
  private async syncQueued(): Promise<void> {
    for (const forge of this.forges.values()) {
      for (const found of await forge.listQueuedJobs()) {
        if (await this.ledger.job(`${found.forge}:${found.forgeJobId}`)) continue;
        const ownership = jobOwnership(found.labels, this.settings.limits, this.settings.defaultShape);
        if (!ownership.owned) continue;
        if ('refused' in ownership) {
          this.logger.warn({ forgeJobId: found.forgeJobId, labels: found.labels, reason: ownership.refused }, 'refusing a queued job: its shape is outside the limits');
          continue;
        }
        const { created, id } = await this.ledger.enqueue({ forge: found.forge, forgeJobId: found.forgeJobId, repository: found.repository, labels: found.labels, name: found.name }, 'found queued at the forge by reconcile (its webhook was missed)');
        if (created) {
          this.observer.transition?.('queued', found.forge);
          this.observer.action?.('enqueued_missed');
          this.logger.info({ jobId: id }, 'enqueued a job whose webhook was missed');
        }
      }
    }
  }

  /** Final jobs still holding a VM or registration: stop what runs, remove what remains. */
  private async releaseFinished(): Promise<void> {
    for (const job of await this.ledger.unreleasedFinal()) {
      if (!this.mine(job)) continue;
      const active = this.active.get(job.id);
      if (active) {
        // The job ran on another job's runner: this VM's runner may be running that other
        // job now, so it is left to exit by itself (one-job runners always do).
        if (job.ran_on && active.registration && job.ran_on !== active.registration.runnerName) continue;
        // The launch task's own teardown finishes the job once its runner is gone.
        if (active.vmId) await this.driver.destroy(active.vmId).catch(() => {});
        continue;
      }
      await this.teardown(job.id);
    }
  }

  /** Jobs that sat in a transitional state past the deadline get a retry or a visible failure. */
  private async failStuck(): Promise<void> {
    const deadlineMs = this.settings.stuckAfterSeconds * 1000;
    for (const state of ['claimed', 'provisioning', 'runner_registered'] as const) {
      for (const job of await this.ledger.stuckIn(state, deadlineMs)) {
        if (!this.mine(job)) continue;
        const forge = this.forgeOf(job);
        if (state === 'runner_registered' && forge) {
          const status = await forge.jobStatus({ repository: job.repository, forgeJobId: job.forge_job_id });
          if (status.status === 'running') {
            await this.move(job, 'running', `forge reports it running on ${status.runnerName ?? 'a runner'} (its webhook was missed)`);
            this.observer.action?.('unstuck');
            continue;
          }
        }
        const active = this.active.get(job.id);
        this.logger.warn({ jobId: job.id, state, vmId: active?.vmId }, `stuck in ${state} for more than ${this.settings.stuckAfterSeconds} s`);
        if (active?.vmId) await this.driver.destroy(active.vmId).catch(() => {});
        if (!active) await this.retryOrFail(job, `stuck in ${state} for more than ${this.settings.stuckAfterSeconds} s`);
      }
    }
  }

  /** VMs started for single jobs (pool VMs are counted by their pools): starting or busy. */
  jobVms(): { state: 'starting' | 'busy'; pool: string; count: number }[] {
    let starting = 0;
    let busy = 0;
    for (const job of this.active.values()) {
      if (job.pool) continue;
      if (job.vmId) busy++;
      else starting++;
    }
    return [
      { state: 'starting', pool: '', count: starting },
      { state: 'busy', pool: '', count: busy },
    ];
  }

  /** What this host's jobs and pools hold now. */
  used(): Capacity & { count: number } {
    let cpus = 0;
    let memoryMib = 0;
    for (const job of this.active.values()) {
      cpus += job.shape.cpus;
      memoryMib += job.shape.memoryMib;
    }
    for (const pool of this.pools) {
      cpus += pool.reserved.cpus;
      memoryMib += pool.reserved.memoryMib;
    }
    return { cpus, memoryMib, count: this.active.size + this.pools.reduce((n, p) => n + p.reserved.count, 0) };
  }

  private get pools(): readonly VmPool[] {
    return this.settings.pools ?? [];
  }

  /** Whether one more VM of `shape` fits beside every job and pool VM on this host. */
  roomFor(shape: Capacity): boolean {
    return fits(this.used(), shape, this.settings.capacity);
  }

  private async maintainPools(): Promise<void> {
    const failures: string[] = [];
    for (const pool of this.pools) {
      await pool.maintain().catch((error: unknown) => {
        failures.push(`${pool.config.name}: ${(error as Error).message.split('\n')[0]}`);
      });
    }
    if (failures.length > 0) throw new Error(`pool maintenance failed: ${failures.join('; ')}`);
  }

  poolStatus() {
    return this.pools.map((p) => p.status());
  }

  /** A job's shape as placement and the host both compute it: its pool's shape, else its labels'. */
  private shapeOf(job: JobRow): { shape: VmShape; pool: VmPool | undefined; requires: readonly string[] } | { refused: string } {
    const labels = JSON.parse(job.labels) as string[];
    const ownership = jobOwnership(labels, this.settings.limits, this.settings.defaultShape);
    if (!ownership.owned) return { refused: `not ours: ${ownership.reason}` };
    if ('refused' in ownership) return { refused: `refused: ${ownership.refused}` };
    const poolConfig = poolForJob(this.settings.poolConfigs ?? this.pools.map((p) => p.config), labels, ownership.pool);
    const pool = poolConfig ? this.pools.find((p) => p.config.name === poolConfig.name) : undefined;
    const shape: VmShape = poolConfig ? { cpus: poolConfig.cpus, memoryMib: poolConfig.memoryMib, image: poolConfig.image } : ownership.shape;
    return { shape, pool, requires: ownership.requires };
  }

  private mine(job: JobRow): boolean {
    return job.host === this.hostId;
  }

  /**
   * Placement (leader): queued jobs, oldest first, onto up hosts by CPU and
   * memory (bin-packing or spreading), honouring image and host labels. Each
   * placement is a guarded queued → claimed change with the host recorded; the
   * host that owns it wakes and launches it.
   */
  private async placeQueued(): Promise<void> {
    const timeoutMs = (this.cluster?.hostTimeoutSeconds ?? 30) * 1000;
    const hosts = await this.ledger.liveHosts(timeoutMs);
    const committed = await this.ledger.committedByHost();
    const slots: HostSlot[] = hosts.map((h) => {
      const used = committed.get(h.id) ?? { cpus: 0, memoryMib: 0 };
      return { id: h.id, cpus: h.cpus, memoryMib: h.memory_mib, usedCpus: used.cpus + h.pool_cpus, usedMemoryMib: used.memoryMib + h.pool_memory_mib, images: JSON.parse(h.images) as string[], labels: JSON.parse(h.labels) as string[] };
    });
    const refused: { job: JobRow; reason: string }[] = [];
    const placed = await this.ledger.placeQueued(500, async (jobs) => {
      const requests = [];
      for (const job of jobs) {
        const decided = this.shapeOf(job);
        if ('refused' in decided) refused.push({ job, reason: decided.refused });
        else requests.push({ id: job.id, shape: decided.shape, requires: decided.requires });
      }
      const decisions = placeJobs(requests, slots, this.cluster?.placement ?? 'binpack');
      const choices = new Map<string, PlacementChoice>();
      for (const request of requests) {
        const decision = decisions.get(request.id);
        if (!decision || !('host' in decision)) continue;
        choices.set(request.id, { host: decision.host, cpus: request.shape.cpus, memoryMib: request.shape.memoryMib, reason: `placed on host ${decision.host}: ${request.shape.cpus} vCPU, ${request.shape.memoryMib} MiB, image ${request.shape.image}` });
      }
      return choices;
    });
    for (const { job, reason } of refused) await this.move(job, 'failed', reason);
    for (const { id, host } of placed) {
      this.observer.action?.('claimed');
      this.observer.transition?.('claimed', id.split(':')[0] ?? '');
      this.logger.info({ jobId: id, host }, 'job placed');
    }
    if (placed.length > 0) {
      await this.ledger.notify('hearth_placed', [...new Set(placed.map((p) => p.host))].join(','));
      if (placed.some((p) => p.host === this.hostId)) this.again = true;
    }
  }

  /** Launches a runner for each job placed on this host, while it has room. */
  private async provisionPlaced(): Promise<void> {
    const claimed = this.cluster ? await this.ledger.jobsOnHost(this.hostId, ['claimed']) : [];
    for (const job of claimed) {
      if (this.stopped || this.active.has(job.id)) continue;
      const decided = this.shapeOf(job);
      if ('refused' in decided) {
        await this.move(job, 'failed', decided.refused);
        continue;
      }
      if (this.settings.maxConcurrent > 0 && this.active.size >= this.settings.maxConcurrent) return;
      const { shape, pool } = decided;
      // An idle pool VM already holds its share of the host; anything else needs room.
      if (!(pool && pool.status().idle > 0) && !fits(this.used(), shape, this.settings.capacity)) return;
      const active: ActiveJob = pool ? { shape, pool: pool.config.name } : { shape };
      this.active.set(job.id, active);
      active.task = this.launchRunner(job, shape, active, pool)
        // The store can fail under it (a restart): the job is then recovered by the next pass.
        .catch((error: unknown) => this.logger.error({ jobId: job.id, err: error }, 'launching the runner failed; the next reconcile pass recovers the job'))
        .finally(() => {
        this.active.delete(job.id);
        this.kick();
      });
    }
  }

  /** Registers this host once, then heartbeats: the heartbeat is its lease on the jobs placed on it. */
  private async heartbeat(): Promise<void> {
    const cluster = this.cluster;
    if (!cluster) return;
    if (!this.registered) {
      await this.ledger.registerHost(await cluster.describeHost());
      this.registered = true;
      return;
    }
    const reserved = this.pools.reduce((sum, p) => ({ cpus: sum.cpus + p.reserved.cpus, memoryMib: sum.memoryMib + p.reserved.memoryMib }), { cpus: 0, memoryMib: 0 });
    const before = await this.ledger.heartbeatHost(this.hostId, reserved);
    if (before === undefined) this.registered = false;
    else if (before === 'lost') {
      this.logger.warn({ host: this.hostId }, 'this host was marked lost (its heartbeat stopped); its jobs went to others, so their VMs here are destroyed');
      this.lastRun.delete('abort');
      this.kick();
    }
  }

  /**
   * Jobs this host is running that are no longer placed here (the controller
   * gave them away when this host was lost) or that were re-queued: their
   * VMs are destroyed, and the launch task's teardown does the rest.
   */
  private async abortDisowned(): Promise<void> {
    if (this.active.size === 0) return;
    // One read for all of them.
    const jobs = new Map((await this.ledger.jobsByIds([...this.active.keys()])).map((j) => [j.id, j]));
    for (const [id, active] of this.active) {
      const job = jobs.get(id);
      if (active.disowned || !job || (this.mine(job) && job.state !== 'queued')) continue;
      this.logger.warn({ jobId: id, vmId: active.vmId, host: job.host, state: job.state }, 'job is no longer placed on this host; destroying its VM');
      this.observer.action?.('aborted');
      active.disowned = true;
      if (active.vmId) await this.driver.destroy(active.vmId).catch(() => {});
    }
  }

  /**
   * Hosts whose heartbeat stopped (leader): marked lost. Their jobs that never
   * started are re-queued for another host; running ones are failed with the
   * reason, since the runner died with the host. Registrations are removed
   * (or left to the orphan sweep while the forge still calls them busy).
   */
  private async reconcileLostHosts(): Promise<void> {
    const cluster = this.cluster;
    if (!cluster) return;
    const timeoutMs = cluster.hostTimeoutSeconds * 1000;
    // A new leader, or one whose store was just unreachable, has not watched long enough to call a host silent.
    if (this.watchingSince === 0 || Date.now() - this.watchingSince < timeoutMs) return;
    const live = new Set((await this.ledger.liveHosts(timeoutMs)).map((h) => h.id));
    for (const host of await this.ledger.hosts()) {
      if (live.has(host.id)) continue;
      if (host.state === 'up' && (await this.ledger.markHostLost(host.id, timeoutMs))) {
        this.observer.action?.('host_lost');
        this.logger.warn({ host: host.id, heartbeatAt: host.heartbeat_at }, `host ${host.id} lost: no heartbeat for ${cluster.hostTimeoutSeconds} s`);
      }
      for (const job of await this.ledger.jobsOnHost(host.id, TRANSITIONAL)) {
        const why = `host ${host.id} ${host.state === 'left' ? 'stopped' : 'lost (no heartbeat)'}`;
        if (job.vm_id) await this.ledger.note(job.id, `VM ${job.vm_id} lost with host ${host.id}; destroyed if the host comes back`);
        if (job.state === 'running') {
          await this.move(job, 'failed', `${why} while the job ran`, { error: `${why} while the job ran` });
          this.observer.action?.('lost_failed');
        } else {
          await this.removeRegistration(job);
          if (await this.move(job, 'queued', `re-queued: ${why} before the job started`, { error: why, placement: null })) {
            await this.ledger.note(job.id, 'VM and registration left behind on the lost host', { vm_id: null, runner_id: null, runner_name: null });
            this.observer.action?.('lost_requeued');
          }
        }
      }
    }
  }

  /** Removes a job's registration at its forge, if it has one; false when the forge says it is still busy. */
  private async removeRegistration(job: JobRow): Promise<boolean> {
    const forge = this.forgeOf(job);
    if (!job.runner_id || !forge) return true;
    return (await forge.removeRunner({ repository: job.repository, runnerId: job.runner_id })) !== 'busy';
  }

  /** Ended jobs whose host is gone (leader): their VM went with it; the registration is removed here. */
  private async releaseOffHost(): Promise<void> {
    const live = (await this.ledger.liveHosts((this.cluster?.hostTimeoutSeconds ?? 30) * 1000)).map((h) => h.id);
    for (const job of await this.ledger.unreleasedFinalOffHosts(live)) {
      if (this.runsVms && this.mine(job)) continue; // this host tears its own jobs down
      if (!(await this.removeRegistration(job))) continue;
      if (await this.ledger.release(job.id, `released by the controller: ${job.host ? `host ${job.host} is gone` : 'it never had a host'}${job.runner_id ? `, runner ${job.runner_id} removed` : ''}`)) {
        this.observer.action?.('released');
        const released = await this.ledger.job(job.id);
        if (released) this.observer.released?.(released, await this.ledger.timeline(job.id));
      }
    }
  }

  /**
   * One job's whole life on this host: boot a VM and register the runner side by
   * side, hand the runner its credentials through the agent, wait for it to exit,
   * tear everything down. Failures before the runner starts are retried.
   */
  private async launchRunner(job: JobRow, shape: VmShape, active: ActiveJob, pool?: VmPool): Promise<void> {
    const log = this.logger.child({ jobId: job.id });
    const forge = this.forgeOf(job);
    try {
      if (!forge) throw new Error(`no ${job.forge} forge is configured (set its token in the config)`);
      const placed = `placed: ${shape.cpus} vCPU, ${shape.memoryMib} MiB, image ${shape.image}${pool ? `, pool ${pool.config.name}` : ''}, on host ${this.hostId}`;
      if (!(await this.move(job, 'provisioning', placed))) {
        // Taken off this host (re-queued or ended) between placement and now.
        log.info('job is no longer placed here; not starting it');
        active.disowned = true;
        return;
      }
      this.logs?.write(job.id, 'hearth', placed);
      const labels = JSON.parse(job.labels) as string[];
      const [vm, registration] = await Promise.allSettled([
        this.startVm(shape, pool).then(async ({ vm: booted, how, hit }) => {
          active.vmId = booted.id;
          const ready = `VM ${booted.id} ready ${how}`;
          await this.ledger.note(job.id, ready, { vm_id: booted.id, ...(pool ? { pool: pool.config.name, pool_hit: hit ? 1 : 0 } : {}) }, 'vm_ready');
          this.logs?.write(job.id, 'hearth', ready);
          if (pool) this.kick(); // refill behind the job, never in front of it
          return booted;
        }),
        forge.registerRunner({ id: job.id, repository: job.repository, forgeJobId: job.forge_job_id, labels }).then(async (registered) => {
          active.registration = registered;
          // The credential rides in argv: mask it should the runner ever print it.
          this.logs?.addSecrets(job.id, registered.argv.slice(1));
          const done = `runner ${registered.runnerName} (id ${registered.runnerId}) registered at ${job.forge}`;
          await this.ledger.note(job.id, done, { runner_id: registered.runnerId, runner_name: registered.runnerName });
          this.logs?.write(job.id, 'hearth', done);
          return registered;
        }),
      ]);
      if (vm.status === 'rejected') throw vm.reason;
      if (registration.status === 'rejected') throw registration.reason;
      const current = await this.ledger.job(job.id);
      if (!current || isFinal(current.state)) {
        log.info({ state: current?.state }, 'job ended while its runner was being prepared');
        return;
      }
      await this.move(job, 'runner_registered', `runner ${registration.value.runnerName} handed to VM ${vm.value.id}`, { vmId: vm.value.id, runnerName: registration.value.runnerName, runnerId: registration.value.runnerId });
      const vmLog = log.child({ vmId: vm.value.id });
      vmLog.info({ runner: registration.value.runnerName }, 'starting the runner in the VM');
      const tail: string[] = [];
      const store = this.logs?.output(job.id, 'runner');
      const keep = (chunk: Buffer): void => {
        store?.(chunk);
        for (const line of chunk.toString('utf8').split('\n')) {
          if (!line) continue;
          tail.push(line.slice(0, 500));
          if (tail.length > 20) tail.shift();
        }
      };
      const result = await this.driver
        .exec(vm.value.id, { argv: registration.value.argv, env: { RUNNER_ALLOW_RUNASROOT: '1' }, cwd: '/root', timeoutSeconds: this.settings.jobTimeoutMinutes * 60 }, { stdout: keep, stderr: keep })
        .catch((error: unknown) => ({ exitCode: -1, signal: 0, durationMs: 0, error: error as Error }));
      const how = 'error' in result ? `stopped: ${result.error.message.split('\n')[0]}` : `exited with code ${result.exitCode}`;
      await this.ledger.note(job.id, `runner ${how}`);
      this.logs?.write(job.id, 'hearth', `runner ${how}`);
      // The tail goes through the job log's masking: the runner could print anything.
      vmLog.info({ exitCode: result.exitCode, tail: tail.slice(-5).map((line) => this.logs?.mask(job.id, line) ?? '[masked]') }, `runner ${how}`);
      await this.teardown(job.id, active);
      const after = await this.ledger.job(job.id);
      if (after && !isFinal(after.state) && !active.disowned) await this.settleFromForge(after, await forge.jobStatus({ repository: job.repository, forgeJobId: job.forge_job_id }), `the runner ${how}`);
    } catch (error) {
      const reason = isHearthError(error) ? error.message.split('\n')[0] ?? error.code : (error as Error).message;
      log.warn({ err: isHearthError(error) ? { code: error.code, message: reason, fix: error.fix } : error }, 'provisioning failed');
      await this.teardown(job.id, active);
      if (!active.disowned) await this.retryOrFail((await this.ledger.job(job.id)) ?? job, reason ?? 'unknown error');
      // A failed attempt waits a little, so a broken forge or host is not hammered.
      await sleep(Math.min(30_000, 1000 * 2 ** job.attempts), undefined, this.settings.shutdown ? { signal: this.settings.shutdown } : {}).catch(() => {});
    } finally {
      const final = await this.ledger.job(job.id);
      if (final && isFinal(final.state)) await this.teardown(job.id, active);
    }
  }

  /** The job's VM: an idle one from its pool at once, else one started for it now. */
  private async startVm(shape: VmShape, pool: VmPool | undefined): Promise<{ vm: Vm; how: string; hit: boolean }> {
    if (pool) {
      const idle = pool.take();
      if (idle) return { vm: idle, how: `at once from pool ${pool.config.name} (idle, ${pool.config.mode})`, hit: true };
      const vm = await pool.startForJob();
      return { vm, how: `in ${(vm.startMs / 1000).toFixed(1)} s: pool ${pool.config.name} had none idle, ${vm.origin.kind === 'snapshot' ? 'restored from its template' : 'booted'} (${vm.accel})`, hit: false };
    }
    const vm = await this.driver.boot({ image: shape.image, cpus: shape.cpus, memoryMib: shape.memoryMib, network: this.settings.network });
    return { vm, how: `in ${(vm.startMs / 1000).toFixed(1)} s (${vm.accel})`, hit: false };
  }

  /** Log rotation: at most every ten minutes, lines past the retention period go. */
  private async pruneLogs(): Promise<void> {
    if (!this.logs || Date.now() - this.lastLogPrune < 600_000) return;
    this.lastLogPrune = Date.now();
    const removed = await this.logs.prune();
    if (removed > 0) {
      this.observer.action?.('logs_pruned');
      this.logger.info({ lines: removed }, 'deleted job log lines past the retention period');
    }
  }

  /** Destroys the job's VM and removes its registration; marks a final job released. Idempotent. */
  private async teardown(id: string, active?: ActiveJob): Promise<void> {
    if (active?.disowned) {
      // The job belongs elsewhere now: remove what this host made, record nothing.
      if (active.vmId) await this.driver.destroy(active.vmId).catch(() => {});
      const forge = this.forges.get(id.split(':')[0] as ForgeKind);
      const job = await this.ledger.job(id);
      if (active.registration && forge && job) await forge.removeRunner({ repository: job.repository, runnerId: active.registration.runnerId }).catch(() => {});
      delete active.vmId;
      delete active.registration;
      return;
    }
    const job = await this.ledger.job(id);
    if (!job) return;
    const log = this.logger.child({ jobId: id });
    const vmId = active?.vmId ?? job.vm_id;
    if (vmId) await this.driver.destroy(vmId).catch((error: unknown) => log.debug({ vmId, err: error }, 'VM already gone'));
    const runnerId = active?.registration?.runnerId ?? job.runner_id;
    const forge = this.forgeOf(job);
    if (runnerId && forge) {
      const outcome = await forge.removeRunner({ repository: job.repository, runnerId });
      if (outcome === 'busy') {
        log.warn({ runnerId }, 'registration still busy at the forge; the orphan sweep removes it later');
        return;
      }
    }
    if (active) {
      delete active.vmId;
      delete active.registration;
    }
    if (isFinal(job.state)) {
      const how = `torn down: ${vmId ? `VM ${vmId} destroyed` : 'no VM'}, ${runnerId ? `runner ${runnerId} removed` : 'no registration'}`;
      if (await this.ledger.release(id, how)) {
        log.info({ vmId }, 'torn down');
        this.observer.action?.('released');
        this.logs?.write(id, 'hearth', how);
        this.logs?.close(id);
        const released = await this.ledger.job(id);
        if (released) this.observer.released?.(released, await this.ledger.timeline(id));
      }
    } else if (vmId || runnerId) {
      await this.ledger.note(id, 'VM and registration removed before a retry', { vm_id: null, runner_id: null, runner_name: null });
    }
  }

  /** VMs this host runs for no job (pool VMs aside). */
  private async removeOrphanVms(): Promise<void> {
    const vms = await this.driver.list();
    // Read after the listing: a VM that booted meanwhile is already held by its job here.
    const live = await this.ledger.inStates(TRANSITIONAL);
    const recorded = new Set(live.map((j) => j.vm_id).filter((v): v is string => Boolean(v)));
    for (const vm of vms) {
      // Only VMs this process started: `hearth run` on the same host keeps its own.
      // Pool VMs idle by design; VMs that appear while a pool is starting some are its own.
      if (vm.ownerPid !== process.pid || recorded.has(vm.id) || this.pools.some((p) => p.mayOwn(vm.id))) continue;
      // Checked now, not before the awaits above: jobs take hold of their VMs all the time.
      const active = [...this.active.values()];
      if (active.some((a) => a.vmId === vm.id)) continue;
      const booting = active.some((a) => a.vmId === undefined);
      if (booting) continue; // a VM whose job has not recorded it yet
      this.logger.warn({ vmId: vm.id }, 'destroying a VM no job holds');
      await this.driver.destroy(vm.id).catch(() => {});
      this.observer.action?.('orphan_vm');
    }
  }

  /**
   * `hearth-` registrations no job holds (leader). A registration named after
   * a job that is still being set up may be one a host just made and has not
   * recorded yet, so it is left alone; busy runners are never touched.
   */
  private async removeOrphanRunners(): Promise<void> {
    const live = await this.ledger.inStates(TRANSITIONAL);
    const namesInUse = new Set(live.map((j) => j.runner_name).filter((n): n is string => Boolean(n)));
    for (const a of this.active.values()) if (a.registration) namesInUse.add(a.registration.runnerName);
    const settingUp = live.map((j) => runnerName(j.id, ''));
    for (const forge of this.forges.values()) {
      for (const runner of await forge.listRunners()) {
        if (runner.busy || namesInUse.has(runner.runnerName) || settingUp.some((prefix) => runner.runnerName.startsWith(prefix))) continue;
        this.logger.warn({ runner: runner.runnerName, runnerId: runner.runnerId, forge: forge.kind }, 'removing a registration no job holds');
        await forge.removeRunner(runner);
        this.observer.action?.('orphan_runner');
      }
    }
  }
}
