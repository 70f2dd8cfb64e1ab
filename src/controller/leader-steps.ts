import { runnerName } from '../forge/forge.ts';
import { jobId, type Job, type PlacementChoice } from '../ledger/ledger.ts';
import { placeJobs, type HostSlot } from '../scheduler/placement.ts';
import { TRANSITIONAL } from '../ledger/states.ts';
import type { ControllerContext } from './context.ts';
import { admitJob } from './ingest.ts';
import { carryOut } from './lifecycle.ts';

/**
 * The cluster-wide steps, run by the replica holding the leadership: placing
 * queued jobs, watching hosts, the forge sweeps, and the duties of hosts that are gone.
 */
export class LeaderSteps {
  private lastLogPrune = 0;
  /** Since when this process has led with the store reachable: a host is judged only after a full timeout of that. */
  private watchingSince = 0;

  constructor(private readonly ctx: ControllerContext) {}

  /** Called before each pass: leadership can move, and a new leader starts watching afresh. */
  beginPass(): void {
    if (!this.ctx.leads) this.watchingSince = 0;
    else if (this.watchingSince === 0) this.watchingSince = Date.now();
  }

  /** A step failed: the store may have been away, so heartbeats failed meanwhile too and silence proves nothing yet. */
  stepFailed(): void {
    if (this.ctx.leads) this.watchingSince = Date.now();
  }

  /** Lost webhooks: the forge's queued jobs that the ledger does not know, if they are ours. */
  async syncQueued(): Promise<void> {
    const { ctx } = this;
    for (const forge of ctx.forges.values()) {
      for (const found of await forge.listQueuedJobs()) {
        if (await ctx.ledger.job(jobId(found.forge, found.forgeJobId))) continue;
        const admission = admitJob(ctx.settings, found.labels);
        if (!admission.owned) continue;
        if ('refused' in admission) {
          ctx.logger.warn(
            { forgeJobId: found.forgeJobId, labels: found.labels, reason: admission.refused },
            'refusing a queued job: its shape is outside the limits',
          );
          continue;
        }
        const job = {
          forge: found.forge,
          forgeJobId: found.forgeJobId,
          repository: found.repository,
          labels: found.labels,
          name: found.name,
          shape: admission.shape,
        };
        const { created, id } = await ctx.ledger.enqueue(job, 'found queued at the forge by reconcile (its webhook was missed)');
        if (created) {
          ctx.observer.transition?.('queued', found.forge);
          ctx.observer.action?.('enqueued_missed');
          ctx.logger.info({ jobId: id }, 'enqueued a job whose webhook was missed');
        }
      }
    }
  }

  /**
   * Hosts whose heartbeat stopped: marked lost. Their jobs that never started
   * are re-queued for another host; running ones are failed with the reason,
   * since the runner died with the host. Registrations are removed (a busy one
   * stays a duty for a later pass).
   */
  async reconcileLostHosts(): Promise<void> {
    const { ctx } = this;
    const timeoutMs = ctx.hostTimeoutMs;
    // A new leader, or one whose store was just unreachable, has not watched long enough to call a host silent.
    if (this.watchingSince === 0 || Date.now() - this.watchingSince < timeoutMs) return;
    const live = new Set((await ctx.ledger.liveHosts(timeoutMs)).map((h) => h.id));
    for (const host of await ctx.ledger.hosts()) {
      if (live.has(host.id)) continue;
      if (host.state === 'up' && (await ctx.ledger.markHostLost(host.id, timeoutMs))) {
        ctx.observer.action?.('host_lost');
        ctx.logger.warn({ host: host.id, heartbeatAt: host.heartbeat_at }, `host ${host.id} lost: no heartbeat for ${ctx.cluster.hostTimeoutSeconds} s`);
      }
      for (const job of await ctx.ledger.jobsOnHost(host.id, TRANSITIONAL)) {
        const why = `host ${host.id} ${host.state === 'left' ? 'stopped' : 'lost (no heartbeat)'}`;
        if (job.vm_id) await ctx.ledger.note(job.id, `VM ${job.vm_id} lost with host ${host.id}; destroyed if the host comes back`);
        if (job.state === 'running') {
          await ctx.move(job, 'failed', `${why} while the job ran`, { error: `${why} while the job ran` });
          ctx.observer.action?.('lost_failed');
        } else {
          await carryOut(
            ctx,
            job,
            (await ctx.ledger.finalizers([job.id])).filter((d) => d.kind === 'runner'),
            why,
          );
          if (await ctx.move(job, 'queued', `re-queued: ${why} before the job started`, { error: why, placement: null })) {
            await ctx.ledger.note(job.id, 'VM and registration left behind on the lost host', { vm_id: null, runner_id: null, runner_name: null });
            ctx.observer.action?.('lost_requeued');
          }
        }
      }
    }
  }

  /**
   * Duties no host will carry out, and ended jobs whose host is gone: a VM on a
   * host that is gone went with it (if the host comes back, its orphan sweep
   * destroys it); registrations of jobs with no live host are removed here.
   */
  async releaseOffHost(): Promise<void> {
    const { ctx } = this;
    const live = (await ctx.ledger.liveHosts(ctx.hostTimeoutMs)).map((h) => h.id);
    // Only hosts marked lost or stopped lose their VMs' duties: a host merely late with a heartbeat still has them.
    const up = new Set((await ctx.ledger.hosts()).filter((h) => h.state === 'up').map((h) => h.id));
    const duties = await ctx.ledger.finalizers();
    const jobs = new Map((await ctx.ledger.jobsByIds([...new Set(duties.map((d) => d.jobId))])).map((j) => [j.id, j]));
    for (const duty of duties) {
      const job = jobs.get(duty.jobId);
      if (duty.kind === 'vm') {
        if (duty.host !== null && up.has(duty.host)) continue;
        await ctx.ledger.finalized(duty);
        if (job) await ctx.ledger.note(job.id, `VM ${duty.ref} went with host ${duty.host ?? '(none)'}`);
      } else if (job && (job.host === null || !live.includes(job.host))) {
        await carryOut(ctx, job, [duty], job.host ? `host ${job.host} is gone` : 'its job has no host');
      }
    }
    for (const job of await ctx.ledger.unreleasedFinalOffHosts(live)) {
      if (ctx.runsVms && ctx.mine(job)) continue; // this host tears its own jobs down
      if (
        await ctx.ledger.release(
          job.id,
          `released by the controller: ${job.host ? `host ${job.host} is gone` : 'it never had a host'}${job.runner_id ? `, runner ${job.runner_id} removed` : ''}`,
        )
      ) {
        ctx.observer.action?.('released');
        const released = await ctx.ledger.job(job.id);
        if (released) ctx.observer.released?.(released, await ctx.ledger.timeline(job.id));
      }
    }
  }

  /**
   * Placement: queued jobs, oldest first, onto up hosts by CPU and memory
   * (bin-packing or spreading), honouring image and host labels, with the
   * shape ingest stored. Each placement is a guarded queued → claimed change
   * with the host recorded; the host that owns it wakes and launches it.
   * Returns whether a job was placed on this process's own host.
   */
  async placeQueued(): Promise<boolean> {
    const { ctx } = this;
    const hosts = await ctx.ledger.liveHosts(ctx.hostTimeoutMs);
    const committed = await ctx.ledger.committedByHost();
    const slots: HostSlot[] = hosts.map((h) => {
      const used = committed.get(h.id) ?? { cpus: 0, memoryMib: 0 };
      return {
        id: h.id,
        cpus: h.cpus,
        memoryMib: h.memory_mib,
        usedCpus: used.cpus + h.pool_cpus,
        usedMemoryMib: used.memoryMib + h.pool_memory_mib,
        images: h.images,
        labels: h.labels,
      };
    });
    const placed = await ctx.ledger.placeQueued(500, async (jobs: Job[]) => {
      const decisions = placeJobs(
        jobs.map((job) => ({ id: job.id, shape: job.shape, requires: job.shape.requires })),
        slots,
        ctx.cluster.placement,
      );
      const choices = new Map<string, PlacementChoice>();
      for (const job of jobs) {
        const decision = decisions.get(job.id);
        if (!decision || !('host' in decision)) continue;
        const { cpus, memoryMib, image } = job.shape;
        choices.set(job.id, {
          host: decision.host,
          cpus,
          memoryMib,
          reason: `placed on host ${decision.host}: ${cpus} vCPU, ${memoryMib} MiB, image ${image}`,
        });
      }
      return choices;
    });
    for (const { id, host } of placed) {
      ctx.observer.action?.('claimed');
      ctx.observer.transition?.('claimed', id.split(':')[0] ?? '');
      ctx.logger.info({ jobId: id, host }, 'job placed');
    }
    if (placed.length === 0) return false;
    await ctx.ledger.notify('hearth_placed', [...new Set(placed.map((p) => p.host))].join(','));
    return placed.some((p) => p.host === ctx.hostId);
  }

  /**
   * `hearth-` registrations no job holds. A registration named after a job that
   * is still being set up may be one a host just made and has not recorded
   * yet, so it is left alone; busy runners are never touched.
   */
  async removeOrphanRunners(): Promise<void> {
    const { ctx } = this;
    const live = await ctx.ledger.inStates(TRANSITIONAL);
    const namesInUse = new Set(live.map((j) => j.runner_name).filter((n): n is string => Boolean(n)));
    for (const launch of ctx.launches.values()) if (launch.registration) namesInUse.add(launch.registration.runnerName);
    const settingUp = live.map((j) => runnerName(j.id, ''));
    for (const forge of ctx.forges.values()) {
      for (const runner of await forge.listRunners()) {
        if (runner.busy || namesInUse.has(runner.runnerName) || settingUp.some((prefix) => runner.runnerName.startsWith(prefix))) continue;
        ctx.logger.warn({ runner: runner.runnerName, runnerId: runner.runnerId, forge: forge.kind }, 'removing a registration no job holds');
        await forge.removeRunner(runner);
        ctx.observer.action?.('orphan_runner');
      }
    }
  }

  /** Log rotation: at most every ten minutes, lines past the retention period go. */
  async pruneLogs(): Promise<void> {
    const { ctx } = this;
    if (!ctx.logs || Date.now() - this.lastLogPrune < 600_000) return;
    this.lastLogPrune = Date.now();
    const removed = await ctx.logs.prune();
    if (removed > 0) {
      ctx.observer.action?.('logs_pruned');
      ctx.logger.info({ lines: removed }, 'deleted job log lines past the retention period');
    }
  }
}
