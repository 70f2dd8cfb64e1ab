import type { Job } from '../ledger/ledger.ts';
import { isFinal, TRANSITIONAL } from '../ledger/states.ts';
import { fits, type Capacity } from '../scheduler/capacity.ts';
import { reconcileLeakedVms } from '../vm/gc.ts';
import type { ControllerContext, Launch } from './context.ts';
import { carryOut, launchRunner, settleFromForge, teardown } from './lifecycle.ts';

/**
 * The steps a VM host runs (roles all and host): its heartbeat, launching the
 * jobs placed on it, and tearing down what its jobs made.
 */
export class HostSteps {
  private registered = false;
  private firstRecovery = true;

  constructor(
    private readonly ctx: ControllerContext,
    /** Forget when a periodic step last ran, so the next pass runs it. */
    private readonly rerun: (step: string) => void,
  ) {}

  /** Registers this host once, then heartbeats: the heartbeat is its lease on the jobs placed on it. */
  async heartbeat(): Promise<void> {
    const { ctx } = this;
    if (!this.registered) {
      await ctx.ledger.registerHost(await ctx.cluster.describeHost());
      this.registered = true;
      return;
    }
    const reserved = ctx.pools.reduce((sum, p) => ({ cpus: sum.cpus + p.reserved.cpus, memoryMib: sum.memoryMib + p.reserved.memoryMib }), {
      cpus: 0,
      memoryMib: 0,
    });
    const before = await ctx.ledger.heartbeatHost(ctx.hostId, reserved);
    if (before === undefined) this.registered = false;
    else if (before === 'lost') {
      ctx.logger.warn({ host: ctx.hostId }, 'this host was marked lost (its heartbeat stopped); its jobs went to others, so their VMs here are destroyed');
      this.rerun('abort');
      ctx.kick();
    }
  }

  /** Whether this host registered itself (a clean stop then hands its placement back). */
  get isRegistered(): boolean {
    return this.registered;
  }

  /**
   * Jobs in a transitional state that no launch of this process works on were
   * abandoned by a process that died (kill -9, power loss). Their VMs died with
   * it (or are destroyed here); the forge says what became of the job.
   */
  async recoverAbandoned(): Promise<void> {
    const { ctx } = this;
    if (this.firstRecovery) {
      const leaked = await reconcileLeakedVms(ctx.driver, { all: false });
      for (const vm of leaked) ctx.logger.warn({ vmId: vm.id }, 'destroyed a VM left by a process that died');
      this.firstRecovery = false;
    }
    // Claimed jobs are only placed here, not started: provisioning picks them up.
    for (const job of await ctx.ledger.inStates(['provisioning', 'runner_registered', 'running'])) {
      // Jobs on other hosts are theirs to recover; the leader steps in when a host is lost.
      if (ctx.launches.has(job.id) || !ctx.mine(job)) continue;
      const log = ctx.logger.child({ jobId: job.id, vmId: job.vm_id ?? undefined });
      if (job.vm_id) await ctx.destroyQuietly(job.vm_id, 'its job was abandoned by an earlier process', job.id);
      const forge = ctx.forgeOf(job);
      const status = forge ? await forge.jobStatus({ repository: job.repository, forgeJobId: job.forge_job_id }) : { status: 'unknown' as const };
      log.warn({ state: job.state, forgeStatus: status.status }, 'job abandoned by an earlier process; recovering');
      ctx.observer.action?.('recovered');
      await settleFromForge(ctx, job, status, 'its VM was lost when the process that ran it stopped');
    }
  }

  /**
   * Jobs this host is running that are no longer placed here (the controller
   * gave them away when this host was lost) or that were re-queued: their
   * VMs are destroyed, and the launch's teardown does the rest.
   */
  async abortDisowned(): Promise<void> {
    const { ctx } = this;
    if (ctx.launches.size === 0) return;
    // One read for all of them.
    const jobs = new Map((await ctx.ledger.jobsByIds([...ctx.launches.keys()])).map((j) => [j.id, j]));
    for (const [id, launch] of ctx.launches) {
      const job = jobs.get(id);
      if (launch.disowned || !job || (ctx.mine(job) && job.state !== 'queued')) continue;
      ctx.logger.warn({ jobId: id, vmId: launch.vmId, host: job.host, state: job.state }, 'job is no longer placed on this host; destroying its VM');
      ctx.observer.action?.('aborted');
      launch.disowned = true;
      if (launch.vmId) await ctx.destroyQuietly(launch.vmId, 'its job is no longer placed on this host', id);
    }
  }

  /** Final jobs of this host still holding a VM or registration: stop what runs, carry out their duties. */
  async releaseFinished(): Promise<void> {
    const { ctx } = this;
    for (const job of await ctx.ledger.unreleasedFinal()) {
      if (!ctx.mine(job)) continue;
      const launch = ctx.launches.get(job.id);
      if (launch) {
        // The job ran on another job's runner: this VM's runner may be running that other
        // job now, so it is left to exit by itself (one-job runners always do).
        if (job.ran_on && launch.registration && job.ran_on !== launch.registration.runnerName) continue;
        // The launch's own teardown finishes the job once its runner is gone.
        if (launch.vmId) await ctx.destroyQuietly(launch.vmId, 'its job ended', job.id);
        continue;
      }
      await teardown(ctx, job.id);
    }
  }

  /**
   * Cleanup duties of this host that no launch here will carry out: VMs of jobs
   * that went round again or went to another host (after a restart, or a
   * launch that died with its process), and registrations of this host's jobs
   * that are no longer the job's. Final jobs are `releaseFinished`'s.
   */
  async finalize(): Promise<void> {
    const { ctx } = this;
    const duties = await ctx.ledger.finalizers();
    const relevant = duties.filter((d) => !ctx.launches.has(d.jobId) && (d.kind === 'runner' || d.host === ctx.hostId));
    if (relevant.length === 0) return;
    const jobs = new Map((await ctx.ledger.jobsByIds([...new Set(relevant.map((d) => d.jobId))])).map((j) => [j.id, j]));
    for (const duty of relevant) {
      const job = jobs.get(duty.jobId);
      if (!job) {
        // A duty whose job is gone from the ledger: nothing can hold it any more.
        if (duty.kind === 'vm' && (await ctx.destroyQuietly(duty.ref, `its job ${duty.jobId} is not in the ledger`, duty.jobId)))
          await ctx.ledger.finalized({ jobId: duty.jobId, kind: duty.kind, ref: duty.ref });
        continue;
      }
      if (isFinal(job.state)) continue;
      const stale = duty.kind === 'vm' ? !ctx.mine(job) || job.vm_id !== duty.ref : ctx.mine(job) && job.runner_id !== duty.ref;
      if (!stale) continue;
      ctx.logger.info(
        { jobId: job.id, kind: duty.kind, ref: duty.ref, state: job.state, host: job.host },
        'carrying out a cleanup duty left from an earlier attempt',
      );
      await carryOut(ctx, job, [duty], 'left from an earlier attempt of its job');
    }
  }

  /** Jobs that sat in a transitional state past the deadline get a retry or a visible failure. */
  async failStuck(): Promise<void> {
    const { ctx } = this;
    const limit = ctx.settings.stuckAfterSeconds;
    for (const state of ['claimed', 'provisioning', 'runner_registered'] as const) {
      for (const job of await ctx.ledger.stuckIn(state, limit * 1000)) {
        if (!ctx.mine(job)) continue;
        const forge = ctx.forgeOf(job);
        if (state === 'runner_registered' && forge) {
          const status = await forge.jobStatus({ repository: job.repository, forgeJobId: job.forge_job_id });
          if (status.status === 'running') {
            await ctx.move(job, 'running', `forge reports it running on ${status.runnerName ?? 'a runner'} (its webhook was missed)`);
            ctx.observer.action?.('unstuck');
            continue;
          }
        }
        const launch = ctx.launches.get(job.id);
        ctx.logger.warn({ jobId: job.id, state, vmId: launch?.vmId }, `stuck in ${state} for more than ${limit} s`);
        if (launch?.vmId) await ctx.destroyQuietly(launch.vmId, `its job was stuck in ${state}`, job.id);
        if (!launch) await ctx.retryOrFail(job, `stuck in ${state} for more than ${limit} s`);
      }
    }
  }

  /** Launches a runner for each job placed on this host, while it has room. */
  async provisionPlaced(): Promise<void> {
    const { ctx } = this;
    for (const job of await ctx.ledger.jobsOnHost(ctx.hostId, ['claimed'])) {
      if (ctx.stopped || ctx.launches.has(job.id)) continue;
      if (ctx.settings.maxConcurrent > 0 && ctx.launches.size >= ctx.settings.maxConcurrent) return;
      const pool = job.shape.pool === null ? undefined : ctx.pools.find((p) => p.config.name === job.shape.pool);
      // An idle pool VM already holds its share of the host; anything else needs room.
      if (!(pool && pool.status().idle > 0) && !fits(this.used(), job.shape, ctx.settings.capacity)) return;
      this.launch(job, pool);
    }
  }

  private launch(job: Job, pool: ReturnType<ControllerContext['pools']['find']>): void {
    const { ctx } = this;
    const shape = { cpus: job.shape.cpus, memoryMib: job.shape.memoryMib, image: job.shape.image };
    const launch: Launch = pool ? { shape, pool: pool.config.name } : { shape };
    ctx.launches.set(job.id, launch);
    launch.task = launchRunner(ctx, job, launch, pool)
      // The store can fail under it (a restart): the job is then recovered by the next pass.
      .catch((error: unknown) => ctx.logger.error({ jobId: job.id, err: error }, 'launching the runner failed; the next reconcile pass recovers the job'))
      .finally(() => {
        ctx.launches.delete(job.id);
        ctx.kick();
      });
  }

  async maintainPools(): Promise<void> {
    const failures: string[] = [];
    for (const pool of this.ctx.pools) {
      await pool.maintain().catch((error: unknown) => {
        failures.push(`${pool.config.name}: ${(error as Error).message.split('\n')[0]}`);
      });
    }
    if (failures.length > 0) throw new Error(`pool maintenance failed: ${failures.join('; ')}`);
  }

  /** VMs this host runs for no job (pool VMs aside). */
  async removeOrphanVms(): Promise<void> {
    const { ctx } = this;
    const vms = await ctx.driver.list();
    // Read after the listing: a VM that booted meanwhile is already held by its job here.
    const live = await ctx.ledger.inStates(TRANSITIONAL);
    const recorded = new Set(live.map((j) => j.vm_id).filter((v): v is string => Boolean(v)));
    for (const duty of await ctx.ledger.finalizers()) if (duty.kind === 'vm') recorded.add(duty.ref);
    for (const vm of vms) {
      // Only VMs this process started: `hearth run` on the same host keeps its own.
      // Pool VMs idle by design; VMs that appear while a pool is starting some are its own.
      if (vm.ownerPid !== process.pid || recorded.has(vm.id) || ctx.pools.some((p) => p.mayOwn(vm.id))) continue;
      // Checked now, not before the awaits above: jobs take hold of their VMs all the time.
      const launches = [...ctx.launches.values()];
      if (launches.some((a) => a.vmId === vm.id)) continue;
      if (launches.some((a) => a.vmId === undefined)) continue; // a VM whose job has not recorded it yet
      ctx.logger.warn({ vmId: vm.id }, 'destroying a VM no job holds');
      await ctx.destroyQuietly(vm.id, 'no job holds it');
      ctx.observer.action?.('orphan_vm');
    }
  }

  /** What this host's jobs and pools hold now. */
  used(): Capacity & { count: number } {
    let cpus = 0;
    let memoryMib = 0;
    for (const launch of this.ctx.launches.values()) {
      cpus += launch.shape.cpus;
      memoryMib += launch.shape.memoryMib;
    }
    for (const pool of this.ctx.pools) {
      cpus += pool.reserved.cpus;
      memoryMib += pool.reserved.memoryMib;
    }
    return { cpus, memoryMib, count: this.ctx.launches.size + this.ctx.pools.reduce((n, p) => n + p.reserved.count, 0) };
  }
}
