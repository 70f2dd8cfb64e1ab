import type { Forge, ForgeKind } from '../forge/forge.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { JobLogs } from '../ledger/logs.ts';
import type { Logger } from '../log.ts';
import { fits, type Capacity } from '../scheduler/capacity.ts';
import type { VmDriver } from '../vm/driver.ts';
import { ControllerContext, type ControllerObserver, type ControllerSettings } from './context.ts';
import { HostSteps } from './host-steps.ts';
import { LeaderSteps } from './leader-steps.ts';
import { StepLoop, type Step } from './steps.ts';

export { type ClusterRole, type ClusterSettings, type ControllerObserver, type ControllerSettings, type ReconcileAction } from './context.ts';

/**
 * The one place that closes the gap between what the ledger wants (jobs that
 * need a runner) and what exists (VMs, forge registrations). Level-triggered:
 * every pass reads the whole picture again, so a lost webhook, a crash or a
 * duplicate event only delays convergence. Webhooks just make a pass come sooner.
 *
 * The work is a table of named steps (steps.ts) run by a loop: the leader's
 * (leader-steps.ts), each host's (host-steps.ts), and a job's life on its host
 * (lifecycle.ts). What a job makes outside the ledger is a cleanup duty in the
 * ledger (a finalizer), carried out by idempotent steps wherever they run.
 */
export class RunnerController {
  private readonly ctx: ControllerContext;
  private readonly host: HostSteps;
  private readonly leader: LeaderSteps;
  private readonly loop: StepLoop;
  private heartbeatTimer: NodeJS.Timeout | undefined;

  constructor(
    ledger: Ledger,
    driver: VmDriver,
    forges: ReadonlyMap<ForgeKind, Forge>,
    settings: ControllerSettings,
    logger: Logger,
    observer: ControllerObserver = {},
    logs?: JobLogs,
  ) {
    const ctx = new ControllerContext(ledger, driver, forges, settings, logger, observer, logs);
    this.ctx = ctx;
    this.leader = new LeaderSteps(ctx);
    this.host = new HostSteps(ctx, (step) => this.loop.rerun(step));
    const { host, leader } = this;
    const steps: Step[] = [
      { name: 'heartbeat', role: 'host', cadence: 'every', run: () => host.heartbeat() },
      { name: 'recover', role: 'host', cadence: 'periodic', run: () => host.recoverAbandoned() },
      { name: 'abort', role: 'host', cadence: 'periodic', run: () => host.abortDisowned() },
      { name: 'sync_queued', role: 'leader', cadence: 'periodic', run: () => leader.syncQueued() },
      { name: 'hosts', role: 'leader', cadence: 'periodic', run: () => leader.reconcileLostHosts() },
      { name: 'release', role: 'host', cadence: 'every', run: () => host.releaseFinished() },
      { name: 'finalize', role: 'host', cadence: 'periodic', run: () => host.finalize() },
      { name: 'release_off_host', role: 'leader', cadence: 'periodic', run: () => leader.releaseOffHost() },
      { name: 'stuck', role: 'host', cadence: 'periodic', run: () => host.failStuck() },
      {
        name: 'place',
        role: 'leader',
        cadence: 'every',
        run: async () => {
          if (await leader.placeQueued()) this.loop.runAgain();
        },
      },
      { name: 'provision', role: 'host', cadence: 'every', run: () => host.provisionPlaced() },
      { name: 'pools', role: 'host', cadence: 'every', run: () => host.maintainPools() },
      { name: 'orphans', role: 'host', cadence: 'periodic', run: () => host.removeOrphanVms() },
      { name: 'orphan_runners', role: 'leader', cadence: 'periodic', run: () => leader.removeOrphanRunners() },
      { name: 'logs', role: 'leader', cadence: 'periodic', run: () => leader.pruneLogs() },
    ];
    this.loop = new StepLoop(steps, {
      intervalMs: settings.intervalSeconds * 1000,
      takes: (role) => (role === 'host' ? ctx.runsVms : ctx.leads),
      logger,
      beforePass: () => leader.beginPass(),
      onStepFailed: () => leader.stepFailed(),
      reconciled: (step, ok) => observer.reconciled?.(step, ok),
    });
    ctx.kick = () => this.loop.kick();
  }

  start(): void {
    this.ctx.stopped = false;
    this.loop.start();
    if (this.ctx.runsVms) {
      this.heartbeatTimer = setInterval(
        () => void this.host.heartbeat().catch((error: unknown) => this.ctx.logger.warn({ err: error }, 'heartbeat failed; retrying')),
        this.ctx.cluster.heartbeatSeconds * 1000,
      );
      this.heartbeatTimer.unref();
    }
  }

  /** Asks for a reconcile pass soon; passes never overlap, and a kick during one runs another after it. */
  kick(): void {
    this.loop.kick();
  }

  /** Waits for the current pass (tests and shutdown). */
  settle(): Promise<void> {
    return this.loop.settle();
  }

  /** One full pass, now. */
  reconcile(): Promise<void> {
    return this.loop.runPass();
  }

  get activeJobs(): number {
    return this.ctx.launches.size;
  }

  /** Stops taking work and tears down every VM and registration this process holds. */
  async stop(reason: string): Promise<void> {
    const { ctx } = this;
    ctx.stopped = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    await this.loop.stop();
    for (const [id, launch] of ctx.launches) {
      ctx.logger.info({ jobId: id, vmId: launch.vmId }, `stopping: ${reason}`);
      if (launch.vmId) await ctx.destroyQuietly(launch.vmId, `the service is stopping: ${reason}`, id);
    }
    await Promise.allSettled([...ctx.launches.values()].map((j) => j.task));
    for (const pool of ctx.pools) await pool.close();
    // A clean stop hands this host's placement back at once instead of after the timeout.
    if (ctx.runsVms && this.host.isRegistered) {
      await ctx.ledger
        .markHostLeft(ctx.hostId)
        .catch((error: unknown) =>
          ctx.logger.warn({ host: ctx.hostId, err: error }, 'could not mark this host as left; the leader finds it silent after the host timeout'),
        );
    }
  }

  /** VMs started for single jobs (pool VMs are counted by their pools): starting or busy. */
  jobVms(): { state: 'starting' | 'busy'; pool: string; count: number }[] {
    let starting = 0;
    let busy = 0;
    for (const launch of this.ctx.launches.values()) {
      if (launch.pool) continue;
      if (launch.vmId) busy++;
      else starting++;
    }
    return [
      { state: 'starting', pool: '', count: starting },
      { state: 'busy', pool: '', count: busy },
    ];
  }

  /** What this host's jobs and pools hold now. */
  used(): Capacity & { count: number } {
    return this.host.used();
  }

  /** Whether one more VM of `shape` fits beside every job and pool VM on this host. */
  roomFor(shape: Capacity): boolean {
    return fits(this.used(), shape, this.ctx.settings.capacity);
  }

  poolStatus() {
    return this.ctx.pools.map((p) => p.status());
  }
}
