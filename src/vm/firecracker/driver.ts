import { accessSync, constants } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { HearthPaths } from '../../config/paths.ts';
import { HearthError, isHearthError } from '../../errors.ts';
import { AgentChannel, type OutputSink } from '../../guest/channel.ts';
import { HELLO_FLAG_IDENTITY_NETWORK, type IdentityNetwork } from '../../guest/protocol.ts';
import { loadImage, type Image } from '../../image/store.ts';
import { ensureVmlinux } from '../../image/vmlinux.ts';
import type { Logger } from '../../log.ts';
import { runProgram } from '../../system/run.ts';
import { execOverAgent, freshIdentity, LiveVms, makeSourceDisk, registerNewVm, startVmm, tail, validateVmSpec, type LocalVm } from '../agent-vm.ts';
import { VM_BOUNDS } from '../bounds.ts';
import type { DriverCapabilities, ExecRequest, ExecResult, RestoreOptions, SnapshotInfo, Vm, VmDriver, VmRecord, VmSpec } from '../driver.ts';
import { BASE_KERNEL_ARGS, diskRoleArgs } from '../kernel-args.ts';
import { VmRegistry } from '../registry.ts';
import { validateSnapshotName } from '../snapshots.ts';
import { loadSnapshotForRestore, takeSnapshot, type LoadedSnapshot, type SnapshotVmm } from '../snapshot-steps.ts';
import { FirecrackerApi } from './api.ts';
import {
  cgroupV2Mount,
  createJail,
  handOver,
  jailerArgs,
  linkIntoJail,
  moveOutOfJail,
  planJail,
  removeJail,
  validateJailerOptions,
  type Jail,
  type JailerOptions,
} from './jailer.ts';
import { checkJobMetadata, mmdsContents, type JobMetadata } from './mmds.ts';
import { guestNetworkArgs, setUpTap, type EgressPolicy, type TapNetwork } from '../network/tap.ts';

export type { JailerOptions } from './jailer.ts';

/** The guest port the agent listens on over vsock, and the guest's context id. */
export const AGENT_VSOCK_PORT = 1024;
const GUEST_CID = 3;

export interface FirecrackerDriverOptions {
  readonly paths: HearthPaths;
  readonly logger: Logger;
  /** The `firecracker` binary (HEARTH_FIRECRACKER sets it). */
  readonly binary?: string;
  readonly bootTimeoutMs?: number;
  /** Networked VMs get a TAP device under this policy; without one, egress is open (still NAT'ed and isolated). */
  readonly egress?: EgressPolicy | undefined;
  /** Start each VMM through the jailer: chroot, cgroup v2 limits, an unprivileged uid:gid. Needs root. */
  readonly jailer?: JailerOptions | undefined;
}

/**
 * A VM to boot on Firecracker. `metadata` is served to a networked guest by
 * MMDS (version 2) under /hearth/job. Every process in the guest can read MMDS,
 * so it carries job facts only, never a secret; names and values that look like
 * credentials are refused.
 */
export interface FirecrackerVmSpec extends VmSpec {
  readonly metadata?: JobMetadata;
}

/** A clone of a networked snapshot may be given its own job metadata for MMDS (the store is not in the snapshot). */
export interface FirecrackerRestoreOptions extends RestoreOptions {
  readonly metadata?: JobMetadata;
}

/**
 * Firecracker's machine configuration takes 1 to 32 vCPUs, 1 or an even count
 * (its API: MachineConfiguration.vcpu_count); KVM only; every networked VM has a
 * TAP device; snapshots are its own (/snapshot/create, /snapshot/load).
 */
export const FIRECRACKER_CAPABILITIES: DriverCapabilities = {
  cpus: { min: 1, max: 32, evenAbove1: true },
  memoryMib: VM_BOUNDS.memoryMib,
  snapshots: true,
  sourceDirectory: true,
  networking: ['none', 'tap'],
  images: { kind: 'cache' },
  accel: ['kvm'],
};

const OPEN_EGRESS: EgressPolicy = { allow: [], hostPorts: [], dns: '1.1.1.1' };

/**
 * Where a VM's files live. Unjailed, that is its runtime directory and the VMM
 * is given host paths; jailed, it is the chroot, and the VMM is given paths
 * inside it.
 */
interface VmFiles {
  readonly dir: string;
  /** How the VMM names the file `name` in `dir`. */
  vmmPath(name: string): string;
}

interface LiveVm extends LocalVm {
  readonly api: FirecrackerApi;
  readonly files: VmFiles;
  readonly jail: Jail | undefined;
}

/** How a guest on `network` addresses eth0: what the kernel command line says at boot, and IDENTITY tells a clone. */
export function identityNetwork(network: TapNetwork, policy: EgressPolicy): IdentityNetwork {
  return { address: `${network.guestIp}/${network.prefix}`, gateway: network.hostIp, dns: policy.dns };
}

/** Kernel command line: the agent listens on vsock; disks are found by their ext4 labels. */
export function firecrackerBootArgs(disks: { root: boolean; source: boolean }, network: readonly string[] = []): string {
  return [...BASE_KERNEL_ARGS, 'reboot=k', 'pci=off', `hearth.vsock=${AGENT_VSOCK_PORT}`, ...diskRoleArgs(disks), ...network].join(' ');
}

/** A copy the VM may write: a reflink where the filesystem can, else a sparse copy. */
async function writableCopy(from: string, to: string): Promise<void> {
  await runProgram('cp', ['--reflink=auto', '--sparse=always', from, to], { timeoutMs: 600_000 });
}

/** The executable `binary` names (a path, or a name looked up on PATH), if there is one. */
function resolveExecutable(binary: string): string | undefined {
  const candidates = binary.includes('/')
    ? [binary]
    : (process.env.PATH ?? '')
        .split(':')
        .filter(Boolean)
        .map((d) => join(d, binary));
  return candidates.find((path) => {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * Firecracker microVMs: one `firecracker` process per VM, configured over its
 * REST API socket, with the Hearth agent reached over vsock. Firecracker has
 * no copy-on-write disk format, so a rootfs image is copied per VM (a reflink
 * where the filesystem supports it). Snapshots are Firecracker's own
 * (`/snapshot/create`, and `/snapshot/load` into a fresh process). With
 * `jailer` set, each VMM runs through Firecracker's jailer (see jailer.ts).
 */
export class FirecrackerDriver implements VmDriver {
  readonly name = 'firecracker';
  readonly capabilities: DriverCapabilities = FIRECRACKER_CAPABILITIES;
  readonly registry: VmRegistry;
  readonly binary: string;
  private readonly live: LiveVms<LiveVm>;

  constructor(private readonly options: FirecrackerDriverOptions) {
    this.registry = new VmRegistry(options.paths.runtime);
    this.binary = options.binary ?? 'firecracker';
    // Firecracker runs with `--id <vm id>` (the jailer passes it on), which no other process has on its command line.
    this.live = new LiveVms({
      registry: this.registry,
      runtimeDir: options.paths.runtime,
      logger: options.logger,
      vmmPrograms: ['firecracker', 'jailer'],
      leakMarker: (vmId) => vmId,
      cleanUp: (_vmId, dir) => removeJail(dir),
    });
  }

  /** The firecracker binary's path, after checking that it (and the jailer, when used) can run here. */
  private checkBinaries(spec: VmSpec): string {
    const firecracker = resolveExecutable(this.binary);
    if (!firecracker)
      throw new HearthError('HEARTH_ERR_VMM_MISSING', {
        tool: 'firecracker',
        path: this.binary,
        hint: 'install a release binary from github.com/firecracker-microvm/firecracker/releases as /usr/local/bin/firecracker (or set HEARTH_FIRECRACKER), or use the qemu driver',
      });
    const jailer = this.options.jailer;
    if (jailer) {
      validateJailerOptions(jailer, firecracker);
      if (!resolveExecutable(jailer.binary))
        throw new HearthError('HEARTH_ERR_VMM_MISSING', {
          tool: 'jailer',
          path: jailer.binary,
          hint: 'install the jailer from the same Firecracker release as the VMM, as /usr/local/bin/jailer (docs/hosts.md)',
        });
      if (process.getuid?.() !== 0)
        throw new HearthError('HEARTH_ERR_NEEDS_ROOT', {
          what: 'running Firecracker through the jailer (chroot, cgroups, switching to its uid)',
          command: 'sudo hearth …, or run hearth serve as root',
        });
      if (jailer.netns && spec.network) {
        throw new HearthError('HEARTH_ERR_BAD_OPTION', {
          option: 'jailer.netns',
          reason: "a networked VM's TAP device is made in the host's network namespace, where a VMM inside the namespace cannot open it",
          hint: 'boot the VM without network, or leave jailer.netns unset',
        });
      }
    }
    return firecracker;
  }

  async boot(spec: FirecrackerVmSpec): Promise<Vm> {
    const { metadata, ...vmSpec } = spec;
    validateVmSpec(vmSpec, this.capabilities, this.name);
    const firecracker = this.checkBinaries(vmSpec);
    // Checked before anything starts, so refused metadata costs nothing.
    if (metadata) checkJobMetadata(metadata);
    const image = await loadImage(this.options.paths.cache, vmSpec.image);
    return this.launch({ spec: vmSpec, image, origin: { kind: 'cold' }, firecracker, metadata });
  }

  /**
   * A clone in a fresh VMM process. A networked snapshot's clone gets a TAP
   * device (and /30) of its own, named to Firecracker by `network_overrides`,
   * and its agent moves eth0 to the new address when it is given its identity.
   */
  async restore(snapshotName: string, options: FirecrackerRestoreOptions = {}): Promise<Vm> {
    if (options.metadata) checkJobMetadata(options.metadata);
    const { snapshot, image } = await loadSnapshotForRestore({
      dataDir: this.options.paths.data,
      cacheDir: this.options.paths.cache,
      driver: this.name,
      name: snapshotName,
      check: (s) =>
        options.network && !s.spec.network
          ? 'it was taken without a network interface, and Firecracker cannot add one to a restored VM; snapshot a VM booted with network'
          : undefined,
    });
    const firecracker = this.checkBinaries(snapshot.spec);
    return this.launch({ spec: snapshot.spec, image, origin: { kind: 'snapshot', name: snapshotName }, firecracker, snapshot, metadata: options.metadata });
  }

  private async launch(plan: {
    spec: VmSpec;
    image: Image;
    origin: Vm['origin'];
    firecracker: string;
    snapshot?: LoadedSnapshot;
    metadata?: JobMetadata | undefined;
  }): Promise<Vm> {
    const { spec, image, origin, snapshot } = plan;
    const started = performance.now();
    const { id, dir, entry, log } = await registerNewVm(this.registry, this.options.logger, {
      driver: this.name,
      image: image.id,
      cpus: spec.cpus,
      memoryMib: spec.memoryMib,
      network: spec.network,
      accel: 'kvm',
    });
    const fail = async (reason: string, cause: unknown): Promise<never> => {
      const detail = [reason, await tail(join(dir, 'firecracker.log'), 5)].filter(Boolean).join('\n');
      await this.destroy(id);
      if (isHearthError(cause)) throw cause;
      throw new HearthError('HEARTH_ERR_VM_BOOT', { vmId: id, reason: detail, consoleLog: join(dir, 'firecracker.log') }, { cause });
    };

    const jailer = this.options.jailer;
    let jail: Jail | undefined;
    let files: VmFiles = { dir, vmmPath: (name) => join(dir, name) };
    const hasRoot = image.kind === 'rootfs' && image.rootfsPath !== undefined;
    let sourceName: string | undefined;
    let kernel: string;
    let initrd: string;
    let network: TapNetwork | undefined;
    const egress = this.options.egress ?? OPEN_EGRESS;
    try {
      if (jailer) {
        jail = planJail(jailer, plan.firecracker, id, jailer.cgroupMount ?? (await cgroupV2Mount()));
        await createJail(jail, dir);
        files = { dir: jail.root, vmmPath: (name) => `/${name}` };
      }
      if (spec.network) network = await setUpTap(this.options.paths.runtime, dir, id, egress);
      kernel = await ensureVmlinux(image);
      initrd = image.initrdPath;
      if (jail) {
        // The jailed VMM sees only its chroot: the shared kernel and initrd are linked in.
        await linkIntoJail(jail, kernel, 'vmlinux');
        await linkIntoJail(jail, initrd, 'initrd.img');
        kernel = files.vmmPath('vmlinux');
        initrd = files.vmmPath('initrd.img');
      }
      if (hasRoot) {
        const rootDisk = join(files.dir, 'root.ext4');
        await writableCopy(snapshot?.diskFile ? join(snapshot.dir, snapshot.diskFile) : image.rootfsPath!, rootDisk);
        if (jail) await handOver(jail, rootDisk);
      }
      if (spec.source) {
        const sourceDisk = await makeSourceDisk(spec.source, files.dir);
        if (jail) await handOver(jail, sourceDisk);
        sourceName = basename(sourceDisk);
      }
      if (snapshot && jail) {
        // Names of their own: a snapshot of this clone must never write through a link into the one it came from.
        await linkIntoJail(jail, snapshot.statePath, 'restore.vmstate');
        await linkIntoJail(jail, join(snapshot.dir, 'memory'), 'restore.memory');
      }
    } catch (error) {
      return fail(`preparing its ${jail ? 'jail, ' : ''}kernel and disks failed: ${(error as Error).message}`, error);
    }

    const [command, args] =
      jail && jailer
        ? [jailer.binary, jailerArgs(jailer, plan.firecracker, jail, spec, ['--api-sock', files.vmmPath('api.sock')])]
        : [this.binary, ['--api-sock', join(dir, 'api.sock'), '--id', id]];
    const { child, exited } = await startVmm(this.registry, entry, command, args, { logFile: join(dir, 'firecracker.log'), stdout: true });
    const api = new FirecrackerApi(join(files.dir, 'api.sock'));
    const vm: Vm = { id, spec, accel: 'kvm', origin, startMs: 0, state: 'booting' };
    const live: LiveVm = { vm, dir, child, exited, log, api, files, jail };
    this.live.add(live);
    log.info({ image: image.id, cpus: spec.cpus, memoryMib: spec.memoryMib, origin: origin.kind, jailed: jail !== undefined }, 'vm starting');

    const deadline = Date.now() + (this.options.bootTimeoutMs ?? 60_000);
    const vsock = files.vmmPath('vsock.sock');
    const rootDisk = hasRoot ? files.vmmPath('root.ext4') : undefined;
    try {
      await Promise.race([
        api.ready(deadline),
        exited.then(() => Promise.reject(new Error(`${jail ? 'the jailer' : 'firecracker'} exited before the API socket appeared`))),
      ]);
      if (snapshot) {
        const state = jail ? files.vmmPath('restore.vmstate') : snapshot.statePath;
        const memory = jail ? files.vmmPath('restore.memory') : join(snapshot.dir, 'memory');
        // The snapshot names the source VM's TAP device and vsock socket; this clone has its own.
        const overrides = network ? { network_overrides: [{ iface_id: 'eth0', host_dev_name: network.device }] } : {};
        await api.put('/snapshot/load', {
          snapshot_path: state,
          mem_backend: { backend_type: 'File', backend_path: memory },
          resume_vm: false,
          ...overrides,
          vsock_override: { uds_path: vsock },
        });
        // The snapshot names the source VM's disk; this clone runs on its own copy.
        if (rootDisk) await api.patch('/drives/root', { drive_id: 'root', path_on_host: rootDisk });
        // The MMDS configuration (V2, on eth0) is part of the snapshot and /mmds/config is pre-boot only,
        // so it stays as restored; the data store is not in the snapshot: this clone's is put now.
        if (network) await api.put('/mmds', mmdsContents(id, plan.metadata ?? {}));
        await api.patch('/vm', { state: 'Resumed' });
      } else {
        await api.put('/boot-source', {
          kernel_image_path: kernel,
          initrd_path: initrd,
          boot_args: firecrackerBootArgs({ root: hasRoot, source: sourceName !== undefined }, network ? guestNetworkArgs(network, egress) : []),
        });
        await api.put('/machine-config', { vcpu_count: spec.cpus, mem_size_mib: spec.memoryMib, smt: false });
        if (rootDisk) await api.put('/drives/root', { drive_id: 'root', path_on_host: rootDisk, is_root_device: false, is_read_only: false });
        if (sourceName) await api.put('/drives/src', { drive_id: 'src', path_on_host: files.vmmPath(sourceName), is_root_device: false, is_read_only: true });
        if (network) {
          // A locally administered MAC derived from the /30, so it is unique on this host.
          const mac = `02:fc:00:00:${((network.index >> 8) & 255).toString(16).padStart(2, '0')}:${(network.index & 255).toString(16).padStart(2, '0')}`;
          await api.put('/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: network.device, guest_mac: mac });
          // MMDS answers the guest at 169.254.169.254 through eth0; V2 makes it ask for a session token first.
          await api.put('/mmds/config', { version: 'V2', network_interfaces: ['eth0'] });
          await api.put('/mmds', mmdsContents(id, plan.metadata ?? {}));
        } else if (plan.metadata) {
          log.debug('no network interface, so no MMDS: the job metadata is not served');
        }
        await api.put('/vsock', { guest_cid: GUEST_CID, uds_path: vsock });
        await api.put('/actions', { action_type: 'InstanceStart' });
      }
      const channel = await AgentChannel.connectVsock(join(files.dir, 'vsock.sock'), AGENT_VSOCK_PORT, deadline);
      live.channel = channel;
      const hello = await channel.hello(origin.kind === 'snapshot');
      // A clone still has the snapshot's address on eth0: its agent must move it onto this VM's /30.
      const readdress = snapshot && network ? identityNetwork(network, egress) : undefined;
      if (readdress && (hello.flags & HELLO_FLAG_IDENTITY_NETWORK) === 0) {
        throw new HearthError('HEARTH_ERR_SNAPSHOT_STALE', {
          name: origin.kind === 'snapshot' ? origin.name : '',
          reason: `its guest agent (${hello.agent}) cannot change the clone's network address; rebuild the image (hearth image build) and take the snapshot again`,
        });
      }
      await channel.setIdentity(freshIdentity(id, readdress));
    } catch (error) {
      return fail((error as Error).message, error);
    }
    vm.startMs = performance.now() - started;
    vm.state = 'ready';
    log.info({ startMs: Math.round(vm.startMs) }, 'vm ready');
    return vm;
  }

  exec(vmId: string, request: ExecRequest, sink: OutputSink = {}): Promise<ExecResult> {
    return execOverAgent(this.live.require(vmId, 'run a command'), request, sink, () => this.destroy(vmId));
  }

  /** Firecracker's part of the shared snapshot steps (snapshot-steps.ts): pause, /snapshot/create, the root disk copied beside it, resume. */
  async snapshot(vmId: string, snapshotName: string): Promise<SnapshotInfo> {
    validateSnapshotName(snapshotName);
    const live = this.live.require(vmId, 'be snapshotted');
    const vmm: SnapshotVmm = {
      save: async (staging) => {
        await live.api.patch('/vm', { state: 'Paused' });
        if (live.jail) {
          // A jailed VMM writes only inside its chroot: the files are moved out to the snapshot.
          const names = { vmstate: 'snapshot.vmstate', memory: 'snapshot.memory' };
          await live.api.put('/snapshot/create', {
            snapshot_type: 'Full',
            snapshot_path: live.files.vmmPath(names.vmstate),
            mem_file_path: live.files.vmmPath(names.memory),
          });
          await moveOutOfJail(join(live.files.dir, names.vmstate), join(staging, 'vmstate'));
          await moveOutOfJail(join(live.files.dir, names.memory), join(staging, 'memory'));
        } else {
          await live.api.put('/snapshot/create', { snapshot_type: 'Full', snapshot_path: join(staging, 'vmstate'), mem_file_path: join(staging, 'memory') });
        }
        const rootDisk = join(live.files.dir, 'root.ext4');
        const hasDisk = await stat(rootDisk).then(
          () => true,
          () => false,
        );
        if (hasDisk) await writableCopy(rootDisk, join(staging, 'root.ext4'));
        return {
          stateFile: 'vmstate',
          ...(hasDisk ? { diskFile: 'root.ext4' } : {}),
          sizeBytes: (await stat(join(staging, 'memory'))).size,
          accel: 'kvm',
          vmmVersion: 'firecracker',
        };
      },
      resume: async () => {
        await live.api.patch('/vm', { state: 'Resumed' });
      },
    };
    const imageId = (await this.registry.read(vmId))?.image ?? live.vm.spec.image;
    return takeSnapshot({ dataDir: this.options.paths.data, driver: this.name, imageId, live, name: snapshotName, vmm });
  }

  /** Idempotent: kills the VMM's process group and removes everything the VM held on the host. */
  destroy(vmId: string): Promise<void> {
    return this.live.destroy(vmId);
  }

  isAlive(vmId: string): boolean {
    return this.live.isAlive(vmId);
  }

  destroyAll(): Promise<void> {
    return this.live.destroyAll();
  }

  list(): Promise<VmRecord[]> {
    return this.live.list();
  }
}
