import type { PoolConfig } from '../config/pools-config.ts';
import { isHearthError } from '../errors.ts';
import { loadImage } from '../image/store.ts';
import type { Logger } from '../log.ts';
import type { Capacity } from '../scheduler/capacity.ts';
import type { Vm } from '../vm/driver.ts';
import { destroyQuietly } from '../vm/gc.ts';
import type { HostDriver } from '../vm/host-driver.ts';
import { readSnapshot, removeSnapshot } from '../vm/snapshots.ts';
import { DemandEstimator } from './demand.ts';

export interface PoolObserver {
  assigned?(pool: string, hit: boolean): void;
  started?(pool: string, how: 'boot' | 'restore', seconds: number): void;
  failed?(pool: string, reason: string): void;
}

export interface PoolStatus {
  readonly name: string;
  readonly mode: PoolConfig['mode'];
  readonly idle: number;
  readonly starting: number;
  readonly busy: number;
  readonly targetIdle: number;
  readonly hits: number;
  readonly misses: number;
  readonly template: { readonly snapshot: string; readonly imageId: string; readonly createdAt: string } | null;
}

interface IdleVm {
  readonly vm: Vm;
  readonly readyAt: number;
}

/**
 * VMs made ready before jobs arrive. A job takes an idle VM at once or, with
 * none idle, starts its own (restore from the template, or boot) without waiting
 * for the refill. Every VM serves one job and is destroyed by its job; the pool
 * only ever hands out VMs it saw become ready, each with its own fresh identity
 * (the driver sets hostname, machine-id and reseeds the RNG on boot and restore).
 */
export class VmPool {
  private readonly idle: IdleVm[] = [];
  private readonly busy = new Set<Vm>();
  private starting = 0;
  private hits = 0;
  private misses = 0;
  private template: { snapshot: string; imageId: string; createdAt: string } | null = null;
  private templateBuild: Promise<void> | undefined;
  private readonly demand: DemandEstimator;
  /** Seconds a replacement VM took to become ready, smoothed. */
  private startSeconds = 3;
  private closed = false;

  constructor(
    readonly config: PoolConfig,
    private readonly driver: HostDriver,
    private readonly cacheDir: string,
    private readonly dataDir: string,
    private readonly network: boolean,
    private readonly logger: Logger,
    /** Whether one more VM of this shape fits the host beside everything running. */
    private readonly room: (shape: Capacity) => boolean,
    private readonly observer: PoolObserver = {},
  ) {
    this.demand = new DemandEstimator(config.demandWindowSeconds);
  }

  get shape(): Capacity {
    return { cpus: this.config.cpus, memoryMib: this.config.memoryMib };
  }

  /** VMs of this pool that exist and hold no job: they count against host capacity. */
  get reserved(): Capacity & { count: number } {
    const count = this.idle.length + this.starting;
    return { cpus: count * this.config.cpus, memoryMib: count * this.config.memoryMib, count };
  }

  private get templateName(): string {
    return `pool-${this.config.name}`;
  }

  targetIdle(now: number = Date.now()): number {
    if (!this.config.autoscale) return this.config.minIdle;
    return this.demand.idleTarget(this.startSeconds, this.config.minIdle, this.config.maxIdle, now);
  }

  /** An idle VM for a job, at once (a hit), or undefined (a miss: the caller starts its own). */
  take(): Vm | undefined {
    this.demand.record();
    while (this.idle.length > 0) {
      const entry = this.idle.shift()!;
      if (!this.driver.isAlive(entry.vm.id)) {
        // Died while idle (its VMM crashed or was killed): destroyed, never handed out.
        this.logger.warn({ pool: this.config.name, vmId: entry.vm.id }, 'idle pool VM failed its health check; destroying it');
        this.observer.failed?.(this.config.name, 'failed its health check while idle');
        void this.destroyQuietly(entry.vm.id, 'it failed its health check while idle');
        continue;
      }
      this.busy.add(entry.vm);
      this.hits += 1;
      this.observer.assigned?.(this.config.name, true);
      return entry.vm;
    }
    this.misses += 1;
    this.observer.assigned?.(this.config.name, false);
    return undefined;
  }

  /** A VM of this pool's shape started for one job now: restored from the template when there is one. */
  async startForJob(): Promise<Vm> {
    const vm = await this.startVm();
    this.busy.add(vm);
    return vm;
  }

  private async startVm(): Promise<Vm> {
    const started = performance.now();
    let vm: Vm;
    let how: 'boot' | 'restore' = 'boot';
    if (this.config.mode === 'snapshot' && this.template) {
      try {
        vm = await this.driver.restore(this.template.snapshot, { network: this.network });
        how = 'restore';
      } catch (error) {
        // A template that no longer restores (QEMU upgraded, image gone) is rebuilt; this VM boots.
        if (isHearthError(error) && /SNAPSHOT/.test(error.code)) this.template = null;
        this.logger.warn({ pool: this.config.name, err: (error as Error).message.split('\n')[0] }, 'template restore failed; booting instead');
        vm = await this.boot();
      }
    } else {
      vm = await this.boot();
    }
    const seconds = (performance.now() - started) / 1000;
    this.startSeconds = this.startSeconds * 0.7 + seconds * 0.3;
    this.observer.started?.(this.config.name, how, seconds);
    return vm;
  }

  private boot(): Promise<Vm> {
    return this.driver.boot({ image: this.config.image, cpus: this.config.cpus, memoryMib: this.config.memoryMib, network: this.network });
  }

  /**
   * One maintenance pass (the controller runs it every reconcile and after each
   * assignment): forget VMs their jobs destroyed, recycle idle VMs past their age,
   * rebuild a stale template, and start VMs up to the idle target within maxSize
   * and host capacity. Refills run in the background; this never waits for them.
   */
  async maintain(now: number = Date.now()): Promise<void> {
    if (this.closed) return;
    for (const vm of this.busy) if (vm.state === 'destroyed') this.busy.delete(vm);
    for (let i = this.idle.length - 1; i >= 0; i -= 1) {
      const entry = this.idle[i]!;
      const tooOld = now - entry.readyAt > this.config.maxIdleAgeSeconds * 1000;
      if (!this.driver.isAlive(entry.vm.id) || tooOld) {
        this.idle.splice(i, 1);
        this.logger.info(
          { pool: this.config.name, vmId: entry.vm.id, reason: tooOld ? 'idle past maxIdleAgeSeconds' : 'failed its health check' },
          'recycling an idle pool VM',
        );
        await this.destroyQuietly(entry.vm.id, 'recycled');
      }
    }
    if (this.config.mode === 'snapshot') {
      this.templateBuild ??= this.ensureTemplate(now).finally(() => {
        this.templateBuild = undefined;
      });
      await this.templateBuild;
    }
    const target = this.targetIdle(now);
    while (
      !this.closed &&
      this.idle.length + this.starting < target &&
      this.idle.length + this.starting + this.busy.size < this.config.maxSize &&
      this.room(this.shape)
    ) {
      this.starting += 1;
      void this.startVm()
        .then(async (vm) => {
          if (this.closed) await this.destroyQuietly(vm.id, 'the pool closed while it started');
          else this.idle.push({ vm, readyAt: Date.now() });
        })
        .catch((error: unknown) => {
          this.observer.failed?.(this.config.name, (error as Error).message);
          this.logger.warn({ pool: this.config.name, err: (error as Error).message.split('\n')[0] }, 'pool VM failed to start; the next pass retries');
        })
        .finally(() => {
          this.starting -= 1;
        });
    }
  }

  /** The template exists, was taken from the image as it is now, and is younger than templateMaxAgeSeconds. */
  private async ensureTemplate(now: number): Promise<void> {
    const image = await loadImage(this.cacheDir, this.config.image);
    const current =
      this.template ??
      (await readSnapshot(this.dataDir, this.templateName).then(
        (m) => ({ snapshot: m.name, imageId: m.imageId, createdAt: m.createdAt }),
        () => null,
      ));
    const fresh = current && current.imageId === image.id && now - Date.parse(current.createdAt) < this.config.templateMaxAgeSeconds * 1000;
    if (fresh) {
      this.template = current;
      return;
    }
    const reason = !current
      ? 'no template yet'
      : current.imageId !== image.id
        ? `image changed (${current.imageId} -> ${image.id})`
        : 'template past templateMaxAgeSeconds';
    this.logger.info({ pool: this.config.name, reason }, 'building the pool template snapshot');
    const vm = await this.boot();
    try {
      this.template = null;
      await removeSnapshot(this.dataDir, this.templateName).catch((error: unknown) =>
        this.logger.debug({ pool: this.config.name, err: error }, 'no old template snapshot to remove'),
      );
      await this.driver.snapshot(vm.id, this.templateName);
    } finally {
      await this.destroyQuietly(vm.id, 'the template VM is done');
    }
    const manifest = await readSnapshot(this.dataDir, this.templateName);
    this.template = { snapshot: manifest.name, imageId: manifest.imageId, createdAt: manifest.createdAt };
    // Idle clones of the old template are recycled: a job must get the image as it is now.
    for (const entry of this.idle.splice(0)) await this.destroyQuietly(entry.vm.id, 'a clone of the old template');
  }

  /** Whether this pool knows the VM (idle or handed out), or may be starting one it cannot name yet. */
  mayOwn(vmId: string): boolean {
    return this.starting > 0 || this.templateBuild !== undefined || this.idle.some((e) => e.vm.id === vmId) || [...this.busy].some((vm) => vm.id === vmId);
  }

  status(now: number = Date.now()): PoolStatus {
    return {
      name: this.config.name,
      mode: this.config.mode,
      idle: this.idle.length,
      starting: this.starting,
      busy: this.busy.size,
      targetIdle: this.targetIdle(now),
      hits: this.hits,
      misses: this.misses,
      template: this.template,
    };
  }

  /** Destroys the idle VMs (on shutdown); VMs held by jobs are their jobs' to destroy. */
  async close(): Promise<void> {
    this.closed = true;
    await this.templateBuild?.catch((error: unknown) =>
      this.logger.debug({ pool: this.config.name, err: error }, 'the template build in progress failed as the pool closed'),
    );
    for (const entry of this.idle.splice(0)) await this.destroyQuietly(entry.vm.id, 'the pool closed');
  }

  /** Destroys a pool VM; a failure is logged with the pool and VM (the orphan sweep destroys what lingers). */
  private async destroyQuietly(vmId: string, why: string): Promise<void> {
    await destroyQuietly(this.driver, vmId, why, this.logger.child({ pool: this.config.name }));
  }
}
