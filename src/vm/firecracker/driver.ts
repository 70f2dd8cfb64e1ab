import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, openSync } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { HearthPaths } from '../../config/paths.ts';
import { HearthError, isHearthError } from '../../errors.ts';
import { AgentChannel, type OutputSink } from '../../guest/channel.ts';
import { loadImage, readImageById, type Image } from '../../image/store.ts';
import { ensureVmlinux } from '../../image/vmlinux.ts';
import type { Logger } from '../../log.ts';
import { runProgram } from '../../system/run.ts';
import { execOverAgent, freshIdentity, makeSourceDisk, tail, validateVmSpec } from '../agent-vm.ts';
import type { ExecRequest, ExecResult, RestoreOptions, SnapshotInfo, Vm, VmDriver, VmRecord, VmSpec } from '../driver.ts';
import { BASE_KERNEL_ARGS } from '../qemu/args.ts';
import { isSameProcess, processStartTime, VmRegistry, type RegistryEntry } from '../registry.ts';
import { readSnapshot, snapshotDir, snapshotExists, snapshotInfo, snapshotsDir, validateSnapshotName, type SnapshotManifest } from '../snapshots.ts';
import { FirecrackerApi } from './api.ts';
import { guestNetworkArgs, setUpTap, tearDownTap, type EgressPolicy, type TapNetwork } from '../network/tap.ts';

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
}

const OPEN_EGRESS: EgressPolicy = { allow: [], hostPorts: [], dns: '1.1.1.1' };

interface LiveVm {
  readonly vm: Vm;
  readonly dir: string;
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  readonly log: Logger;
  readonly api: FirecrackerApi;
  channel?: AgentChannel;
  destroying?: Promise<void>;
}

/** Kernel command line: the agent listens on vsock; disks are found by their ext4 labels. */
export function firecrackerBootArgs(disks: { root: boolean; source: boolean }, network: readonly string[] = []): string {
  return [...BASE_KERNEL_ARGS, 'reboot=k', 'pci=off', `hearth.vsock=${AGENT_VSOCK_PORT}`, ...(disks.root ? ['hearth.root=disk'] : []), ...(disks.source ? ['hearth.src=disk'] : []), ...network].join(' ');
}

/** A copy the VM may write: a reflink where the filesystem can, else a sparse copy. */
async function writableCopy(from: string, to: string): Promise<void> {
  await runProgram('cp', ['--reflink=auto', '--sparse=always', from, to], { timeoutMs: 600_000 });
}

/**
 * Firecracker microVMs: one `firecracker` process per VM, configured over its
 * REST API socket, with the Hearth agent reached over vsock. Firecracker has
 * no copy-on-write disk format, so a rootfs image is copied per VM (a reflink
 * where the filesystem supports it). Snapshots are Firecracker's own
 * (`/snapshot/create`, and `/snapshot/load` into a fresh process).
 */
export class FirecrackerDriver implements VmDriver {
  readonly name = 'firecracker';
  readonly registry: VmRegistry;
  readonly binary: string;
  private readonly live = new Map<string, LiveVm>();

  constructor(private readonly options: FirecrackerDriverOptions) {
    this.registry = new VmRegistry(options.paths.runtime);
    this.binary = options.binary ?? 'firecracker';
  }

  private checkBinary(): void {
    const candidates = this.binary.includes('/') ? [this.binary] : (process.env.PATH ?? '').split(':').map((d) => join(d, this.binary));
    const found = candidates.some((path) => {
      try {
        accessSync(path, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    if (!found) throw new HearthError('HEARTH_ERR_VMM_MISSING', { tool: 'firecracker', path: this.binary, hint: 'install a release binary from github.com/firecracker-microvm/firecracker/releases as /usr/local/bin/firecracker (or set HEARTH_FIRECRACKER), or use the qemu driver' });
  }

  private validate(spec: VmSpec): void {
    validateVmSpec(spec);
    if (spec.cpus > 32 || (spec.cpus > 1 && spec.cpus % 2 === 1)) throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: '--cpus', reason: `${spec.cpus} vCPUs: Firecracker takes 1 or an even number up to 32`, hint: 'for example --cpus 2' });
  }

  async boot(spec: VmSpec): Promise<Vm> {
    this.validate(spec);
    this.checkBinary();
    const image = await loadImage(this.options.paths.cache, spec.image);
    return this.launch(spec, image, { kind: 'cold' });
  }

  async restore(snapshotName: string, options: RestoreOptions = {}): Promise<Vm> {
    const snapshot = await readSnapshot(this.options.paths.data, snapshotName);
    const stale = (reason: string): HearthError => new HearthError('HEARTH_ERR_SNAPSHOT_STALE', { name: snapshotName, reason });
    if (snapshot.driver !== this.name) throw stale(`it was taken by the ${snapshot.driver} driver`);
    if (options.network || snapshot.spec.network) throw stale('a networked guest keeps its address in memory, so it cannot be cloned onto another TAP device; snapshot a VM without network');
    this.checkBinary();
    let image: Image;
    try {
      image = await readImageById(this.options.paths.cache, snapshot.imageId);
    } catch {
      throw stale(`its image build ${snapshot.imageId} is no longer in the cache`);
    }
    return this.launch(snapshot.spec, image, { kind: 'snapshot', name: snapshotName }, snapshot);
  }

  private async launch(spec: VmSpec, image: Image, origin: Vm['origin'], snapshot?: SnapshotManifest & { dir: string; statePath: string }): Promise<Vm> {
    const started = performance.now();
    const id = `vm-${randomBytes(6).toString('hex')}`;
    const log = this.options.logger.child({ vmId: id });
    const dir = await this.registry.create(id);
    const entry: RegistryEntry = { id, driver: this.name, pid: 0, pidStart: '', ownerPid: process.pid, ownerStart: processStartTime(process.pid) ?? '', image: image.id, cpus: spec.cpus, memoryMib: spec.memoryMib, network: false, accel: 'kvm', createdAt: new Date().toISOString() };
    await this.registry.write(entry);
    const fail = async (reason: string, cause: unknown): Promise<never> => {
      const detail = [reason, await tail(join(dir, 'firecracker.log'), 5)].filter(Boolean).join('\n');
      await this.destroy(id);
      if (isHearthError(cause)) throw cause;
      throw new HearthError('HEARTH_ERR_VM_BOOT', { vmId: id, reason: detail, consoleLog: join(dir, 'firecracker.log') }, { cause });
    };

    const rootDisk = image.kind === 'rootfs' && image.rootfsPath ? join(dir, 'root.ext4') : undefined;
    let sourceDisk: string | undefined;
    let kernel: string;
    let network: TapNetwork | undefined;
    const egress = this.options.egress ?? OPEN_EGRESS;
    try {
      if (spec.network && !snapshot) network = await setUpTap(this.options.paths.runtime, dir, id, egress);
      kernel = await ensureVmlinux(image);
      if (rootDisk) await writableCopy(snapshot?.diskFile ? join(snapshot.dir, snapshot.diskFile) : image.rootfsPath!, rootDisk);
      if (spec.source) sourceDisk = await makeSourceDisk(spec.source, dir);
    } catch (error) {
      return fail(`preparing its kernel and disks failed: ${(error as Error).message}`, error);
    }

    const logFd = openSync(join(dir, 'firecracker.log'), 'a');
    let child: ChildProcess;
    try {
      child = spawn(this.binary, ['--api-sock', join(dir, 'api.sock'), '--id', id], { detached: true, stdio: ['ignore', logFd, logFd] });
    } finally {
      closeSync(logFd);
    }
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
    entry.pid = child.pid ?? 0;
    entry.pidStart = processStartTime(entry.pid) ?? '';
    await this.registry.write(entry);
    const api = new FirecrackerApi(join(dir, 'api.sock'));
    const vm: Vm = { id, spec, accel: 'kvm', origin, startMs: 0, state: 'booting' };
    const live: LiveVm = { vm, dir, child, exited, log, api };
    this.live.set(id, live);
    log.info({ image: image.id, cpus: spec.cpus, memoryMib: spec.memoryMib, origin: origin.kind }, 'vm starting');

    const deadline = Date.now() + (this.options.bootTimeoutMs ?? 60_000);
    const vsock = join(dir, 'vsock.sock');
    try {
      await Promise.race([api.ready(deadline), exited.then(() => Promise.reject(new Error('firecracker exited before its API socket appeared')))]);
      if (snapshot) {
        await api.put('/snapshot/load', { snapshot_path: snapshot.statePath, mem_backend: { backend_type: 'File', backend_path: join(snapshot.dir, 'memory') }, resume_vm: false, vsock_override: { uds_path: vsock } });
        // The snapshot names the source VM's disk; this clone runs on its own copy.
        if (rootDisk) await api.patch('/drives/root', { drive_id: 'root', path_on_host: rootDisk });
        await api.patch('/vm', { state: 'Resumed' });
      } else {
        await api.put('/boot-source', { kernel_image_path: kernel, initrd_path: image.initrdPath, boot_args: firecrackerBootArgs({ root: Boolean(rootDisk), source: Boolean(sourceDisk) }, network ? guestNetworkArgs(network, egress) : []) });
        await api.put('/machine-config', { vcpu_count: spec.cpus, mem_size_mib: spec.memoryMib, smt: false });
        if (rootDisk) await api.put('/drives/root', { drive_id: 'root', path_on_host: rootDisk, is_root_device: false, is_read_only: false });
        if (sourceDisk) await api.put('/drives/src', { drive_id: 'src', path_on_host: sourceDisk, is_root_device: false, is_read_only: true });
        if (network) {
          // A locally administered MAC derived from the /30, so it is unique on this host.
          const mac = `02:fc:00:00:${((network.index >> 8) & 255).toString(16).padStart(2, '0')}:${(network.index & 255).toString(16).padStart(2, '0')}`;
          await api.put('/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: network.device, guest_mac: mac });
        }
        await api.put('/vsock', { guest_cid: GUEST_CID, uds_path: vsock });
        await api.put('/actions', { action_type: 'InstanceStart' });
      }
      const channel = await AgentChannel.connectVsock(vsock, AGENT_VSOCK_PORT, deadline);
      live.channel = channel;
      await channel.hello(origin.kind === 'snapshot');
      await channel.setIdentity(freshIdentity(id));
    } catch (error) {
      return fail((error as Error).message, error);
    }
    vm.startMs = performance.now() - started;
    vm.state = 'ready';
    log.info({ startMs: Math.round(vm.startMs) }, 'vm ready');
    return vm;
  }

  private requireLive(vmId: string, action: string): LiveVm {
    const live = this.live.get(vmId);
    if (!live) throw new HearthError('HEARTH_ERR_VM_GONE', { vmId, reason: 'this process does not own a live VM with that id' });
    if (live.vm.state !== 'ready') throw new HearthError('HEARTH_ERR_VM_STATE', { vmId, action, state: live.vm.state, hint: live.vm.state === 'running' ? 'wait for the running command to finish' : 'start a new VM' });
    return live;
  }

  exec(vmId: string, request: ExecRequest, sink: OutputSink = {}): Promise<ExecResult> {
    return execOverAgent(this.requireLive(vmId, 'run a command'), request, sink, () => this.destroy(vmId));
  }

  async snapshot(vmId: string, snapshotName: string): Promise<SnapshotInfo> {
    validateSnapshotName(snapshotName);
    const live = this.requireLive(vmId, 'be snapshotted');
    if (live.vm.spec.source) throw new HearthError('HEARTH_ERR_VM_STATE', { vmId, action: 'be snapshotted', state: 'attached to a source disk', hint: 'snapshot a VM booted without --source; give the source to the clones instead' });
    const dataDir = this.options.paths.data;
    if (await snapshotExists(dataDir, snapshotName)) throw new HearthError('HEARTH_ERR_SNAPSHOT_EXISTS', { name: snapshotName });
    await mkdir(snapshotsDir(dataDir), { recursive: true });
    const staging = join(snapshotsDir(dataDir), `.${snapshotName}.${process.pid}.${Date.now()}`);
    await mkdir(staging);
    live.vm.state = 'snapshotting';
    try {
      await live.api.patch('/vm', { state: 'Paused' });
      await live.api.put('/snapshot/create', { snapshot_type: 'Full', snapshot_path: join(staging, 'vmstate'), mem_file_path: join(staging, 'memory') });
      const rootDisk = join(live.dir, 'root.ext4');
      const hasDisk = await stat(rootDisk).then(() => true, () => false);
      if (hasDisk) await writableCopy(rootDisk, join(staging, 'root.ext4'));
      const entry = await this.registry.read(vmId);
      const manifest: SnapshotManifest = {
        name: snapshotName,
        driver: this.name,
        imageId: entry?.image ?? live.vm.spec.image,
        spec: live.vm.spec,
        accel: 'kvm',
        vmmVersion: 'firecracker',
        stateFile: 'vmstate',
        ...(hasDisk ? { diskFile: 'root.ext4' } : {}),
        sizeBytes: (await stat(join(staging, 'memory'))).size,
        createdAt: new Date().toISOString(),
      };
      await writeFile(join(staging, 'snapshot.json'), JSON.stringify(manifest, null, 2) + '\n');
      await rename(staging, snapshotDir(dataDir, snapshotName));
      await live.api.patch('/vm', { state: 'Resumed' });
      live.vm.state = 'ready';
      await live.channel?.setIdentity(freshIdentity(vmId));
      return snapshotInfo(manifest);
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      await live.api.patch('/vm', { state: 'Resumed' }).catch(() => {});
      if (live.vm.state === 'snapshotting') live.vm.state = 'ready';
      if (isHearthError(error)) throw error;
      throw new HearthError('HEARTH_ERR_SNAPSHOT_FAILED', { vmId, reason: (error as Error).message, dir: snapshotsDir(dataDir) }, { cause: error });
    }
  }

  destroy(vmId: string): Promise<void> {
    const live = this.live.get(vmId);
    if (live?.destroying) return live.destroying;
    const work = (async () => {
      if (live) live.vm.state = 'destroying';
      live?.channel?.close();
      const entry = await this.registry.read(vmId);
      const pid = live?.child.pid ?? entry?.pid ?? 0;
      if (pid > 0 && (live !== undefined || (entry !== undefined && isSameProcess(entry.pid, entry.pidStart)))) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // already gone
        }
        if (live) await live.exited;
      }
      await tearDownTap(this.options.paths.runtime, this.registry.dirOf(vmId));
      await this.registry.remove(vmId);
      if (live) {
        live.vm.state = 'destroyed';
        this.live.delete(vmId);
        live.log.info('vm destroyed');
      }
    })();
    if (live) live.destroying = work;
    return work;
  }

  isAlive(vmId: string): boolean {
    const live = this.live.get(vmId);
    return live !== undefined && live.vm.state === 'ready' && live.child.exitCode === null && live.child.signalCode === null;
  }

  async destroyAll(): Promise<void> {
    await Promise.all([...this.live.keys()].map((id) => this.destroy(id)));
  }

  list(): Promise<VmRecord[]> {
    return this.registry.list();
  }
}
