import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { HearthError, isHearthError } from '../errors.ts';
import { RUNNER_NAME_PREFIX, type Forge, type ForgeJobStatus, type ForgeKind, type RunnerRegistration } from '../forge/forge.ts';
import type { JobRow, Ledger, TimelineEntry } from '../ledger/ledger.ts';
import type { JobLogs } from '../ledger/logs.ts';
import { isFinal, type JobState } from '../ledger/states.ts';
import type { Logger } from '../log.ts';
import { fits, type Capacity } from '../scheduler/capacity.ts';
import { jobOwnership, type ShapeLimits, type VmShape } from '../scheduler/labels.ts';
import type { Vm, VmDriver } from '../vm/driver.ts';
import { poolForJob } from '../config/pools-config.ts';
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
}

/** Each thing the reconcile loop does to close a gap between the ledger and the world. */
export type ReconcileAction = 'claimed' | 'recovered' | 'enqueued_missed' | 'released' | 'retried' | 'failed' | 'unstuck' | 'orphan_vm' | 'orphan_runner' | 'logs_pruned';

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

  start(): void {
    this.stopped = false;
    this.kick();
    this.timer = setInterval(() => this.kick(), this.settings.intervalSeconds * 1000);
    this.timer.unref();
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
    await this.settle();
    for (const [id, job] of this.active) {
      this.logger.info({ jobId: id, vmId: job.vmId }, `stopping: ${reason}`);
      if (job.vmId) await this.driver.destroy(job.vmId).catch(() => {});
    }
    await Promise.allSettled([...this.active.values()].map((j) => j.task));
    for (const pool of this.pools) await pool.close();
  }

  /** One full pass. Each step is independent: one failing (a forge down) does not stop the others. */
  async reconcile(): Promise<void> {
    const steps: [string, () => Promise<void>][] = [
      ['recover', () => this.recoverAbandoned()],
      ['sync_queued', () => this.syncQueued()],
      ['release', () => this.releaseFinished()],
      ['stuck', () => this.failStuck()],
      ['provision', () => this.provisionQueued()],
      ['pools', () => this.maintainPools()],
      ['orphans', () => this.removeOrphans()],
      ['logs', () => this.pruneLogs()],
    ];
    for (const [name, step] of steps) {
      if (this.stopped) return;
      try {
        await step();
        this.observer.reconciled?.(name, true);
      } catch (error) {
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
    for (const job of await this.ledger.inStates(TRANSITIONAL)) {
      if (this.active.has(job.id)) continue;
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
      await this.move(current, 'queued', `retrying: ${reason}`, { error: reason, attempt: true });
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

  /** Claims queued jobs, oldest first, while the host has room, and launches a runner for each. */
  private async provisionQueued(): Promise<void> {
    for (const job of await this.ledger.inStates(['queued'])) {
      if (this.stopped || this.active.has(job.id)) continue;
      const labels = JSON.parse(job.labels) as string[];
      const ownership = jobOwnership(labels, this.settings.limits, this.settings.defaultShape);
      if (!ownership.owned || 'refused' in ownership) {
        await this.move(job, 'failed', ownership.owned ? `refused: ${'refused' in ownership ? ownership.refused : ''}` : `not ours: ${ownership.reason}`);
        continue;
      }
      if (this.settings.maxConcurrent > 0 && this.active.size >= this.settings.maxConcurrent) return;
      const poolConfig = poolForJob(this.pools.map((p) => p.config), labels, ownership.pool);
      const pool = poolConfig ? this.pools.find((p) => p.config === poolConfig) : undefined;
      const shape: VmShape = pool ? { cpus: pool.config.cpus, memoryMib: pool.config.memoryMib, image: pool.config.image } : ownership.shape;
      // An idle pool VM already holds its share of the host; anything else needs room.
      if (!(pool && pool.status().idle > 0) && !fits(this.used(), shape, this.settings.capacity)) return;
      if (!(await this.move(job, 'claimed', `claimed by this controller${pool ? ` for pool ${pool.config.name}` : ''}`))) continue;
      this.observer.action?.('claimed');
      const active: ActiveJob = pool ? { shape, pool: pool.config.name } : { shape };
      this.active.set(job.id, active);
      active.task = this.launchRunner(job, shape, active, pool).finally(() => {
        this.active.delete(job.id);
        this.kick();
      });
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
      const placed = `placed: ${shape.cpus} vCPU, ${shape.memoryMib} MiB, image ${shape.image}${pool ? `, pool ${pool.config.name}` : ''}, on ${hostname()}`;
      await this.move(job, 'provisioning', placed);
      this.logs?.write(job.id, 'hearth', placed);
      const labels = JSON.parse(job.labels) as string[];
      const [vm, registration] = await Promise.allSettled([
        this.startVm(shape, pool).then(async ({ vm: booted, how, hit }) => {
          active.vmId = booted.id;
          const ready = `VM ${booted.id} ready ${how}`;
          await this.ledger.note(job.id, ready, { vm_id: booted.id, host: hostname(), ...(pool ? { pool: pool.config.name, pool_hit: hit ? 1 : 0 } : {}) }, 'vm_ready');
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
      if (after && !isFinal(after.state)) await this.settleFromForge(after, await forge.jobStatus({ repository: job.repository, forgeJobId: job.forge_job_id }), `the runner ${how}`);
    } catch (error) {
      const reason = isHearthError(error) ? error.message.split('\n')[0] ?? error.code : (error as Error).message;
      log.warn({ err: isHearthError(error) ? { code: error.code, message: reason, fix: error.fix } : error }, 'provisioning failed');
      await this.teardown(job.id, active);
      await this.retryOrFail((await this.ledger.job(job.id)) ?? job, reason ?? 'unknown error');
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

  /** VMs this host runs for no job, and `hearth-` registrations no job holds. Busy runners are never touched. */
  private async removeOrphans(): Promise<void> {
    const live = await this.ledger.inStates(TRANSITIONAL);
    const vmsInUse = new Set([...live.map((j) => j.vm_id), ...[...this.active.values()].map((a) => a.vmId)].filter((v): v is string => Boolean(v)));
    for (const vm of await this.driver.list()) {
      // Only VMs this process started: `hearth run` on the same host keeps its own.
      // Pool VMs idle by design; VMs that appear while a pool is starting some are its own.
      if (vm.ownerPid !== process.pid || vmsInUse.has(vm.id) || this.pools.some((p) => p.mayOwn(vm.id))) continue;
      const booting = [...this.active.values()].some((a) => a.vmId === undefined);
      if (booting) continue; // a VM whose job has not recorded it yet
      this.logger.warn({ vmId: vm.id }, 'destroying a VM no job holds');
      await this.driver.destroy(vm.id).catch(() => {});
      this.observer.action?.('orphan_vm');
    }
    const namesInUse = new Set(live.map((j) => j.runner_name).filter((n): n is string => Boolean(n)));
    for (const a of this.active.values()) if (a.registration) namesInUse.add(a.registration.runnerName);
    const registering = [...this.active.values()].some((a) => a.registration === undefined);
    for (const forge of this.forges.values()) {
      for (const runner of await forge.listRunners()) {
        if (runner.busy || namesInUse.has(runner.runnerName) || registering) continue;
        this.logger.warn({ runner: runner.runnerName, runnerId: runner.runnerId, forge: forge.kind }, 'removing a registration no job holds');
        await forge.removeRunner(runner);
        this.observer.action?.('orphan_runner');
      }
    }
  }
}
