import { copyFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { HearthPaths } from '../../config/paths.ts';
import { HearthError, isHearthError } from '../../errors.ts';
import { AgentChannel, type OutputSink } from '../../guest/channel.ts';
import { loadImage, readImageById, type Image } from '../../image/store.ts';
import type { Logger } from '../../log.ts';
import { runProgram } from '../../system/run.ts';
import { VM_BOUNDS } from '../bounds.ts';
import type { DriverCapabilities, ExecRequest, ExecResult, RestoreOptions, SnapshotInfo, Vm, VmDriver, VmRecord, VmSpec } from '../driver.ts';
import { VmRegistry } from '../registry.ts';
import { validateSnapshotName } from '../snapshots.ts';
import { loadSnapshotForRestore, takeSnapshot, type SnapshotVmm } from '../snapshot-steps.ts';
import { decideAccel, kvmProbeFailure, type Accel, type AccelDecision } from './accel.ts';
import { qemuArgs, shellQuote, type QemuDisk } from './args.ts';
import { diskRoleArgs } from '../kernel-args.ts';
import { execOverAgent, freshIdentity, GUEST_PATH, LiveVms, makeSourceDisk, registerNewVm, startVmm, tail, validateVmSpec, type LocalVm } from '../agent-vm.ts';

export { GUEST_PATH, validateVmSpec };
import { QmpClient } from './qmp.ts';
import { guestNetworkArgs, setUpTap, tearDownTap, type EgressPolicy } from '../network/tap.ts';

const KVM_PROBE_TIMEOUT_MS = 8_000;
/**
 * A TCG guest with several vCPUs on a busy host now and then stalls in early
 * boot (soft lockups before init, seen in CI) while the same boot normally takes
 * 2-4 s. A stalled guest never recovers, so the boot budget is split into
 * attempts and a stalled attempt is replaced by a fresh VM.
 */
const COLD_BOOT_ATTEMPTS = 2;

/** The guest never answered: a fresh attempt may succeed where this one stalled. */
class BootStalledError extends Error {}

export interface QemuDriverOptions {
  readonly paths: HearthPaths;
  readonly logger: Logger;
  readonly qemuBinary?: string;
  /** 'kvm', 'tcg', or undefined to probe (HEARTH_ACCEL sets it from the environment). */
  readonly accel?: string | undefined;
  readonly bootTimeoutMs?: number;
  /** Networked VMs get a TAP device under this egress policy instead of user-mode NAT (needs root). */
  readonly egress?: EgressPolicy | undefined;
}

type LiveVm = LocalVm;

interface LaunchPlan {
  readonly spec: VmSpec;
  readonly image: Image;
  readonly accel: Accel;
  readonly origin: Vm['origin'];
  readonly incoming?: string;
  /** The root disk as the snapshot froze it: the clone's overlay is layered on it. */
  readonly snapshotDisk?: string;
  readonly bootTimeoutMs?: number;
}

/**
 * Per-VM disks, all inside the VM's runtime directory so destroy removes them:
 * a qcow2 overlay over a rootfs image (copy-on-write: starting a VM copies
 * nothing, and no two VMs share writes), and a disk holding a copy of `source`.
 */
async function prepareDisks(image: Image, spec: VmSpec, dir: string, snapshotDisk?: string): Promise<{ disks: QemuDisk[]; kernelArgs: string[] }> {
  const disks: QemuDisk[] = [];
  const rootfs = image.kind === 'rootfs' ? image.rootfsPath : undefined;
  if (rootfs) {
    const overlay = join(dir, 'root.qcow2');
    // A clone writes to its own overlay on top of the disk as its snapshot froze it
    // (itself an overlay of the read-only image): clones share both, and change neither.
    const backing = snapshotDisk ? ['-F', 'qcow2', '-b', snapshotDisk] : ['-F', 'raw', '-b', rootfs];
    await runProgram('qemu-img', ['create', '-q', '-f', 'qcow2', ...backing, overlay]);
    disks.push({ path: overlay, format: 'qcow2', readOnly: false });
  }
  if (spec.source) disks.push({ path: await makeSourceDisk(spec.source, dir), format: 'raw', readOnly: true });
  return { disks, kernelArgs: diskRoleArgs({ root: Boolean(rootfs), source: Boolean(spec.source) }) };
}

/**
 * QEMU `-M microvm` VMs. Each VM is one QEMU process in its own process group
 * with a runtime directory holding its agent and QMP sockets, console log and
 * registry entry; destroying it kills the group and removes the directory.
 */
export class QemuDriver implements VmDriver {
  readonly name = 'qemu';
  readonly capabilities: DriverCapabilities;
  readonly registry: VmRegistry;
  private readonly live: LiveVms<LiveVm>;
  readonly qemuBinary: string;
  private accelDecision: Promise<AccelDecision> | undefined;
  private vmmVersion: Promise<string> | undefined;

  constructor(private readonly options: QemuDriverOptions) {
    this.registry = new VmRegistry(options.paths.runtime);
    this.qemuBinary = options.qemuBinary ?? 'qemu-system-x86_64';
    const accel: readonly Accel[] = options.accel === 'kvm' || options.accel === 'tcg' ? [options.accel] : ['kvm', 'tcg'];
    // Networked VMs get user-mode NAT, or a TAP device each under an egress policy.
    this.capabilities = {
      ...VM_BOUNDS,
      snapshots: true,
      sourceDirectory: true,
      networking: ['none', options.egress ? 'tap' : 'user'],
      images: { kind: 'cache' },
      accel,
    };
    // QEMU's command line names the VM's QMP socket, inside its runtime directory.
    this.live = new LiveVms({
      registry: this.registry,
      runtimeDir: options.paths.runtime,
      logger: options.logger,
      vmmPrograms: ['qemu-system'],
      leakMarker: (vmId) => join(this.registry.dirOf(vmId), 'qmp.sock'),
    });
  }

  /** KVM when a probe boot proves it works, TCG otherwise; decided once per process. */
  accel(fresh = false): Promise<AccelDecision> {
    if (!this.accelDecision || fresh) {
      this.accelDecision = decideAccel({
        cacheDir: this.options.paths.cache,
        override: this.options.accel,
        fresh,
        probe: () => this.probeKvm(),
      });
    }
    return this.accelDecision;
  }

  private async probeKvm(): Promise<{ usable: boolean; reason: string }> {
    const image = await loadImage(this.options.paths.cache, 'minimal');
    const started = performance.now();
    try {
      const vm = await this.launch({
        spec: { image: 'minimal', cpus: 1, memoryMib: 256, network: false },
        image,
        accel: 'kvm',
        origin: { kind: 'cold' },
        bootTimeoutMs: KVM_PROBE_TIMEOUT_MS,
      });
      await this.destroy(vm.id);
      return { usable: true, reason: `a KVM guest answered in ${Math.round(performance.now() - started)} ms` };
    } catch (error) {
      const reason = isHearthError(error) ? String(error.context.reason) : (error as Error).message;
      return { usable: false, reason: kvmProbeFailure(performance.now() - started, KVM_PROBE_TIMEOUT_MS, reason.split('\n')[0] ?? '') };
    }
  }

  version(): Promise<string> {
    this.vmmVersion ??= runProgram(this.qemuBinary, ['--version']).then(
      (r) => r.stdout.split('\n')[0]?.trim() ?? 'unknown',
      (error: unknown) => {
        throw new HearthError('HEARTH_ERR_TOOL_MISSING', { tool: this.qemuBinary, package: 'qemu-system-x86' }, { cause: error });
      },
    );
    return this.vmmVersion;
  }

  async boot(spec: VmSpec): Promise<Vm> {
    validateVmSpec(spec, this.capabilities, this.name);
    const image = await loadImage(this.options.paths.cache, spec.image);
    const { accel } = await this.accel();
    const budgetMs = this.options.bootTimeoutMs ?? 60_000;
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.launch({ spec, image, accel, origin: { kind: 'cold' }, bootTimeoutMs: Math.ceil(budgetMs / COLD_BOOT_ATTEMPTS) });
      } catch (error) {
        const stalled = isHearthError(error) && error.code === 'HEARTH_ERR_VM_BOOT' && error.cause instanceof BootStalledError;
        if (!stalled || attempt >= COLD_BOOT_ATTEMPTS) throw error;
        this.options.logger.warn({ attempt, err: (error as Error).message.split('\n')[0] }, 'guest stalled during boot; booting a fresh VM');
      }
    }
  }

  async restore(snapshotName: string, options: RestoreOptions = {}): Promise<Vm> {
    const { snapshot, image } = await loadSnapshotForRestore({
      dataDir: this.options.paths.data,
      cacheDir: this.options.paths.cache,
      driver: this.name,
      name: snapshotName,
      check: (s) =>
        options.network !== undefined && options.network !== s.spec.network
          ? `it was taken ${s.spec.network ? 'with' : 'without'} a network device; the device set of a restore cannot change`
          : undefined,
    });
    const stale = (reason: string): HearthError => new HearthError('HEARTH_ERR_SNAPSHOT_STALE', { name: snapshotName, reason });
    const version = await this.version();
    if (version !== snapshot.vmmVersion) throw stale(`it was taken with ${snapshot.vmmVersion}, this host has ${version}`);
    if (snapshot.accel === 'kvm' && (await this.accel()).accel !== 'kvm') throw stale('it was taken under KVM, which this host cannot use now');
    return this.launch({
      spec: snapshot.spec,
      image,
      accel: snapshot.accel,
      origin: { kind: 'snapshot', name: snapshotName },
      incoming: snapshot.statePath,
      ...(snapshot.diskFile ? { snapshotDisk: join(snapshot.dir, snapshot.diskFile) } : {}),
    });
  }

  private async launch(plan: LaunchPlan): Promise<Vm> {
    const started = performance.now();
    const { id, dir, entry, log } = await registerNewVm(this.registry, this.options.logger, {
      driver: this.name,
      image: plan.image.id,
      cpus: plan.spec.cpus,
      memoryMib: plan.spec.memoryMib,
      network: plan.spec.network,
      accel: plan.accel,
    });

    let disks: { disks: QemuDisk[]; kernelArgs: string[] };
    let tap: string | undefined;
    try {
      disks = await prepareDisks(plan.image, plan.spec, dir, plan.snapshotDisk);
      if (plan.spec.network && this.options.egress) {
        if (plan.incoming) throw new Error('a snapshot cannot be restored onto a TAP network: the guest address is in its memory');
        const network = await setUpTap(this.options.paths.runtime, dir, id, this.options.egress);
        tap = network.device;
        disks.kernelArgs.push(...guestNetworkArgs(network, this.options.egress));
      }
    } catch (error) {
      await tearDownTap(this.options.paths.runtime, dir, log);
      await this.registry.remove(id);
      if (isHearthError(error)) throw error;
      throw new HearthError(
        'HEARTH_ERR_VM_BOOT',
        { vmId: id, reason: `preparing its disks and network failed: ${(error as Error).message}`, consoleLog: join(dir, 'console.log') },
        { cause: error },
      );
    }
    const args = qemuArgs({
      ...plan.spec,
      accel: plan.accel,
      kernel: plan.image.kernelPath,
      initrd: plan.image.initrdPath,
      runtimeDir: dir,
      incoming: plan.incoming,
      disks: disks.disks,
      extraKernelArgs: disks.kernelArgs,
      ...(tap ? { tap } : {}),
    });
    const { child, exited, spawnError } = await startVmm(this.registry, entry, this.qemuBinary, args, { logFile: join(dir, 'qemu.log'), stdout: false });

    const vm: Vm = { id, spec: plan.spec, accel: plan.accel, origin: plan.origin, startMs: 0, state: 'booting' };
    const live: LiveVm = { vm, dir, child, exited, log };
    this.live.add(live);
    log.info(
      { accel: plan.accel, image: plan.image.id, cpus: plan.spec.cpus, memoryMib: plan.spec.memoryMib, network: plan.spec.network, origin: plan.origin.kind },
      'vm starting',
    );

    const timeoutMs = plan.bootTimeoutMs ?? this.options.bootTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const failure = new Promise<never>((_, reject) => {
      exited.then(
        () => reject(new Error(`QEMU exited during boot (${child.exitCode ?? child.signalCode ?? 'spawn failed'})`)),
        () => {},
      );
      timer = setTimeout(() => reject(new BootStalledError(`the guest agent did not answer within ${timeoutMs / 1000} s`)), timeoutMs);
    });
    failure.catch(() => {});
    try {
      const channel = await Promise.race([AgentChannel.connect(join(dir, 'agent.sock'), deadline), failure]);
      live.channel = channel;
      await Promise.race([channel.hello(plan.origin.kind === 'snapshot'), failure]);
      await Promise.race([channel.setIdentity(freshIdentity(id)), failure]);
    } catch (error) {
      const detail = [(error as Error).message, await tail(join(dir, 'qemu.log'), 5), await tail(join(dir, 'console.log'))].filter(Boolean).join('\n');
      await this.destroy(id);
      const failedSpawn = spawnError();
      if (failedSpawn?.code === 'ENOENT')
        throw new HearthError('HEARTH_ERR_TOOL_MISSING', { tool: this.qemuBinary, package: 'qemu-system-x86' }, { cause: failedSpawn });
      throw new HearthError('HEARTH_ERR_VM_BOOT', { vmId: id, reason: detail, consoleLog: join(dir, 'console.log') }, { cause: error });
    } finally {
      clearTimeout(timer);
    }
    vm.startMs = performance.now() - started;
    vm.state = 'ready';
    log.info({ startMs: Math.round(vm.startMs) }, 'vm ready');
    return vm;
  }

  async exec(vmId: string, request: ExecRequest, sink: OutputSink = {}): Promise<ExecResult> {
    const live = this.live.require(vmId, 'run a command');
    return execOverAgent(live, request, sink, () => this.destroy(vmId));
  }

  /** QEMU's part of the shared snapshot steps (snapshot-steps.ts): a migration to a file, the overlay frozen beside it, `cont`. */
  async snapshot(vmId: string, snapshotName: string): Promise<SnapshotInfo> {
    validateSnapshotName(snapshotName);
    const live = this.live.require(vmId, 'be snapshotted');
    const imageId = (await this.registry.read(vmId))?.image;
    const kind = imageId ? (await readImageById(this.options.paths.cache, imageId).catch(() => undefined))?.kind : undefined;
    let qmp: QmpClient | undefined;
    const vmm: SnapshotVmm = {
      refuse: async () => {
        if (live.vm.spec.network && this.options.egress)
          return { state: 'on a TAP network', hint: 'snapshot a VM without network, or run pools in booted mode when runners.egress is set' };
        if (kind === undefined)
          return { state: 'attached to a source disk', hint: 'snapshot a VM booted without --source; give the source to the clones instead' };
        return undefined;
      },
      save: async (staging) => {
        qmp = await QmpClient.connect(join(live.dir, 'qmp.sock'));
        // No `stop` first: a VM saved while paused would restore paused. Migration
        // pauses the source itself once the remaining dirty memory is small.
        // QEMU throttles migration by default; a local file can take it as fast as it comes.
        await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 64 * 1024 * 1024 * 1024 });
        await qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(join(staging, 'state'))}` });
        for (;;) {
          const status = await qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
          if (status.status === 'completed') break;
          if (status.status === 'failed' || status.status === 'cancelled')
            throw new Error(`migration ${status.status}: ${status['error-desc'] ?? 'no detail'}`);
          await sleep(10);
        }
        // Migration has paused the guest and flushed its disks: the overlay now matches the
        // saved memory exactly. Frozen beside it, before the source runs on and writes again.
        const hasDisk = kind === 'rootfs';
        if (hasDisk) await copyFile(join(live.dir, 'root.qcow2'), join(staging, 'root.qcow2'));
        return {
          stateFile: 'state',
          ...(hasDisk ? { diskFile: 'root.qcow2' } : {}),
          sizeBytes: (await stat(join(staging, 'state'))).size,
          accel: live.vm.accel,
          vmmVersion: await this.version(),
        };
      },
      resume: async () => {
        await qmp?.execute('cont');
      },
    };
    try {
      return await takeSnapshot({ dataDir: this.options.paths.data, driver: this.name, imageId: imageId ?? live.vm.spec.image, live, name: snapshotName, vmm });
    } finally {
      qmp?.close();
    }
  }

  /** Idempotent: kills the VM's process group, waits for it, and removes its runtime directory. */
  destroy(vmId: string): Promise<void> {
    return this.live.destroy(vmId);
  }

  /** Ready for a command, with its VMM still running: a pool hands out nothing less. */
  isAlive(vmId: string): boolean {
    return this.live.isAlive(vmId);
  }

  /** Destroys every VM this process started (the signal handlers call it). */
  destroyAll(): Promise<void> {
    return this.live.destroyAll();
  }

  list(): Promise<VmRecord[]> {
    return this.live.list();
  }
}
