import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { hostname as osHostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { HearthPaths } from '../../config/paths.ts';
import { HearthError, isHearthError } from '../../errors.ts';
import { AgentChannel, type OutputSink } from '../../guest/channel.ts';
import { AgentConnectListener, parseAgentUrl, parseHostPort, type AgentExpectation } from '../../guest/connect-listener.ts';
import type { Logger } from '../../log.ts';
import { AgentVms, execOverAgent, validateVmSpec, type AgentVm } from '../agent-vm.ts';
import { VM_BOUNDS } from '../bounds.ts';
import type { DriverCapabilities, ExecRequest, ExecResult, SnapshotInfo, Vm, VmDriver, VmRecord, VmSpec } from '../driver.ts';
import { isSameProcess, newRegistryEntry, VmRegistry, type RegistryEntry } from '../registry.ts';
import { FlintlockClient } from './client.ts';
import { agentBootstrapMetadata } from './cloud-init.ts';
import { FlintlockError, isFlintlockError } from './errors.ts';
import type { FlintlockMicroVm, FlintlockMicroVmSpec } from './types.ts';

/** Labels on every microVM Hearth creates; list() and gc only ever touch VMs carrying both of the first two. */
export const FLINTLOCK_LABELS = {
  managedBy: 'hearth.dev/managed-by',
  /** Which Hearth instance owns it (the `owner` option, default the host name). */
  owner: 'hearth.dev/owner',
  vmId: 'hearth.dev/vm-id',
  image: 'hearth.dev/image',
} as const;

export const DEFAULT_FLINTLOCK_NAMESPACE = 'hearth';
const DEFAULT_BOOT_TIMEOUT_MS = 300_000;
const DEFAULT_DELETE_TIMEOUT_MS = 60_000;
const DEFAULT_POLL_INTERVAL_MS = 500;

export interface FlintlockDriverOptions {
  readonly paths: HearthPaths;
  readonly logger: Logger;
  /** flintlockd's gRPC endpoint, host:port. */
  readonly endpoint: string;
  /** TLS to flintlockd (system roots); plaintext otherwise, flintlockd's default. */
  readonly tls?: boolean;
  /** The Flintlock namespace Hearth's microVMs live in. */
  readonly namespace?: string;
  /**
   * This Hearth instance's name in the owner label. Hearth lists, and `vm gc`
   * destroys, only microVMs with its own owner, so instances sharing one
   * namespace need distinct owners. Default: the host name.
   */
  readonly owner?: string;
  /** Where the agent listener binds, IP:PORT (e.g. 0.0.0.0:7071). */
  readonly agentListen: string;
  /** What guests dial: tcp://IP:PORT, this host's address as the VMs see it. */
  readonly agentUrl: string;
  /** Container image (OCI reference) holding the kernel, as flintlockd pulls it. */
  readonly kernelImage: string;
  /** The kernel's path inside kernelImage; flintlockd's default when unset. */
  readonly kernelFilename?: string;
  /** Extra kernel arguments (never secrets: the host's process list shows them). */
  readonly kernelCmdline?: Readonly<Record<string, string>>;
  /** Container image holding an initrd, when the kernel needs one. */
  readonly initrdImage?: string;
  readonly initrdFilename?: string;
  /**
   * Root volume image per Hearth image name (`debian: ghcr.io/acme/hearth-debian:12`).
   * An image name that is not listed but looks like a reference (has / or :) is used as is.
   * The image must run cloud-init and carry /usr/local/sbin/hearth-agent.
   */
  readonly rootImages?: Readonly<Record<string, string>>;
  /** The guest's network interface (it needs one to reach the agent listener). */
  readonly interfaceType?: 'TAP' | 'MACVTAP';
  /** A bridge for the TAP device instead of flintlockd's configured one. */
  readonly bridgeName?: string;
  /** flintlockd's provider; its default when unset. */
  readonly provider?: string;
  /** From CreateMicroVM to the agent's HELLO (image pulls included). */
  readonly bootTimeoutMs?: number;
  /** How long destroy waits for flintlockd to finish deleting; the delete stands either way. */
  readonly deleteTimeoutMs?: number;
  readonly pollIntervalMs?: number;
}

interface FlintlockEntry extends RegistryEntry {
  /** flintlockd's uid for the microVM; empty until CreateMicroVM answered. */
  uid: string;
  readonly namespace: string;
  readonly endpoint: string;
}

/** A Flintlock VM: the shared live-VM record plus flintlockd's uid and the agent's connection back. */
interface LiveVm extends AgentVm {
  uid?: string;
  expectation?: AgentExpectation;
  socket?: Socket;
}

/** Label values kept to what label-minded tooling accepts: [A-Za-z0-9._-], at most 63. */
function labelValue(value: string): string {
  return value.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 63) || '_';
}

/**
 * MicroVMs on a flintlockd host (FireRunner's path): created over Flintlock's
 * gRPC API, brought up by cloud-init, which starts the Hearth agent from the
 * VM's user-data. Hearth cannot reach those VMs, so each agent connects back
 * to Hearth's agent listener and authenticates with a per-VM token; from then
 * on it is the same framed protocol as under QEMU and Firecracker. Flintlock
 * has no snapshot API, so there are no snapshots or restores here.
 */
export class FlintlockDriver implements VmDriver {
  readonly name = 'flintlock';
  /** No snapshots (Flintlock has no snapshot API), no host directory (the VMs run elsewhere), flintlockd's network, mapped root images. */
  readonly capabilities: DriverCapabilities;
  readonly registry: VmRegistry;
  readonly namespace: string;
  readonly owner: string;
  readonly agentUrl: string;
  readonly #options: FlintlockDriverOptions;
  readonly #live = new AgentVms<LiveVm>();
  readonly #log: Logger;
  #client: FlintlockClient | undefined;
  #listener: Promise<AgentConnectListener> | undefined;

  constructor(options: FlintlockDriverOptions) {
    if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):\d{1,5}$/.test(options.endpoint)) {
      throw new HearthError('HEARTH_ERR_BAD_OPTION', {
        option: 'flintlock endpoint',
        reason: `"${options.endpoint}" is not HOST:PORT`,
        hint: "give flintlockd's --grpc-endpoint, e.g. 10.0.0.2:9090",
      });
    }
    parseHostPort(options.agentListen, 'agent listen address');
    parseAgentUrl(options.agentUrl);
    if (!options.kernelImage)
      throw new HearthError('HEARTH_ERR_BAD_OPTION', {
        option: 'flintlock kernel image',
        reason: 'is not set',
        hint: 'give the container image holding the guest kernel, e.g. ghcr.io/liquidmetal-dev/flintlock-kernel:5.10.77',
      });
    this.#options = options;
    this.capabilities = {
      ...VM_BOUNDS,
      snapshots: false,
      sourceDirectory: false,
      networking: ['remote'],
      images: { kind: 'mapped', names: Object.keys(options.rootImages ?? {}), references: true },
      accel: ['kvm'],
    };
    this.registry = new VmRegistry(options.paths.runtime);
    this.namespace = options.namespace ?? DEFAULT_FLINTLOCK_NAMESPACE;
    this.owner = labelValue(options.owner ?? osHostname());
    this.agentUrl = options.agentUrl;
    this.#log = options.logger.child({ driver: this.name });
  }

  #clientNow(): FlintlockClient {
    this.#client ??= FlintlockClient.connect(this.#options.endpoint, {
      ...(this.#options.tls !== undefined && { tls: this.#options.tls }),
      pollIntervalMs: this.#pollMs,
    });
    return this.#client;
  }

  get #pollMs(): number {
    return this.#options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  }

  /** Started at the first boot, so a driver that only lists or collects never binds the port. */
  listener(): Promise<AgentConnectListener> {
    if (!this.#listener) {
      const listening = AgentConnectListener.listen({ listen: this.#options.agentListen, logger: this.#log });
      this.#listener = listening;
      listening.catch(() => {
        if (this.#listener === listening) this.#listener = undefined;
      });
    }
    return this.#listener;
  }

  rootImageFor(image: string): string {
    const mapped = this.#options.rootImages?.[image];
    if (mapped) return mapped;
    if (/[/:]/.test(image)) return image;
    const known = Object.keys(this.#options.rootImages ?? {});
    throw new HearthError('HEARTH_ERR_BAD_OPTION', {
      option: '--image',
      reason: `"${image}" has no Flintlock root volume image`,
      hint: `map it to a container image with cloud-init and /usr/local/sbin/hearth-agent in the flintlock driver's root images${known.length ? ` (mapped now: ${known.join(', ')})` : ''}, or give a container image reference`,
    });
  }

  async boot(spec: VmSpec): Promise<Vm> {
    validateVmSpec(spec, this.capabilities, this.name);
    if (spec.source)
      throw this.#unsupported(
        'attach a host directory',
        'its VMs run on the flintlockd host, which cannot see files on this one',
        'check the sources out inside the job (actions/checkout, git clone), or use the qemu or firecracker driver',
      );
    const rootImage = this.rootImageFor(spec.image);
    const listener = await this.listener();

    const started = performance.now();
    const id = `vm-${randomBytes(6).toString('hex')}`;
    const log = this.#log.child({ vmId: id });
    const dir = await this.registry.create(id);
    const entry: FlintlockEntry = {
      ...newRegistryEntry({ id, driver: this.name, image: spec.image, cpus: spec.cpus, memoryMib: spec.memoryMib, network: true, accel: 'kvm' }),
      uid: '',
      namespace: this.namespace,
      endpoint: this.#options.endpoint,
    };
    await this.registry.write(entry);
    const vm: Vm = { id, spec, accel: 'kvm', origin: { kind: 'cold' }, startMs: 0, state: 'booting' };
    const live: LiveVm = { vm, dir, log };
    this.#live.add(live);

    const bootTimeoutMs = this.#options.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS;
    const deadline = Date.now() + bootTimeoutMs;
    const expectation = listener.expect(id, { timeoutMs: bootTimeoutMs, advertisedUrl: this.agentUrl });
    live.expectation = expectation;
    let operation = 'CreateMicroVM';
    try {
      const created = await this.#clientNow().createMicroVm(this.#microVmSpec(id, spec, rootImage, expectation.token));
      live.uid = created.uid;
      entry.uid = created.uid;
      await this.registry.write(entry);
      log.info({ uid: created.uid, namespace: this.namespace, rootImage, cpus: spec.cpus, memoryMib: spec.memoryMib }, 'microvm created');

      operation = 'waiting for state CREATED';
      await this.#clientNow().waitForState(created.uid, 'CREATED', Math.max(1, deadline - Date.now()));
      log.info({ uid: created.uid }, 'microvm running; waiting for its agent to connect back');

      operation = 'waiting for the agent';
      const socket = await this.#agentOrFailure(live, created.uid, expectation);
      live.socket = socket;
      const channel = AgentChannel.fromSocket(socket);
      live.channel = channel;
      // A PING, so the HELLO is asked for after the channel listens (the first may have raced it).
      await withDeadline(
        channel.hello(true),
        deadline,
        () =>
          new HearthError('HEARTH_ERR_VM_BOOT', {
            vmId: id,
            reason: 'its agent connected but sent no HELLO',
            consoleLog: 'the VM console on the flintlockd host',
          }),
      );
    } catch (error) {
      await this.destroy(id).catch((cleanup: unknown) => log.warn({ error: (cleanup as Error).message }, 'cleaning up the failed boot failed'));
      throw this.#hearthError(error, id, operation);
    }
    live.expectation = undefined;
    vm.startMs = performance.now() - started;
    vm.state = 'ready';
    log.info({ startMs: Math.round(vm.startMs) }, 'vm ready');
    return vm;
  }

  #microVmSpec(id: string, spec: VmSpec, rootImage: string, token: string): FlintlockMicroVmSpec {
    const o = this.#options;
    return {
      id,
      namespace: this.namespace,
      labels: {
        [FLINTLOCK_LABELS.managedBy]: 'hearth',
        [FLINTLOCK_LABELS.owner]: this.owner,
        [FLINTLOCK_LABELS.vmId]: id,
        [FLINTLOCK_LABELS.image]: labelValue(spec.image),
      },
      vcpu: spec.cpus,
      memoryInMb: spec.memoryMib,
      kernel: { image: o.kernelImage, ...(o.kernelFilename && { filename: o.kernelFilename }), cmdline: { ...o.kernelCmdline }, addNetworkConfig: true },
      ...(o.initrdImage && { initrd: { image: o.initrdImage, ...(o.initrdFilename && { filename: o.initrdFilename }) } }),
      rootVolume: { id: 'root', isReadOnly: false, source: { containerSource: rootImage } },
      interfaces: [{ deviceId: 'eth1', type: o.interfaceType ?? 'TAP', ...(o.bridgeName && { overrides: { bridgeName: o.bridgeName } }) }],
      metadata: agentBootstrapMetadata({ agentUrl: this.agentUrl, token, hostname: `hearth-${id.slice(3)}` }),
      ...(o.provider && { provider: o.provider }),
    };
  }

  /** The agent's socket, or the reason it will never come: the microVM failed or went away meanwhile. */
  async #agentOrFailure(live: LiveVm, uid: string, expectation: AgentExpectation): Promise<Socket> {
    let watching = true;
    const watch = (async (): Promise<never> => {
      for (;;) {
        await sleep(Math.max(this.#pollMs, 250));
        if (!watching) throw new Error('no longer watching');
        let state: string;
        try {
          state = (await this.#clientNow().getMicroVm(uid)).status.state;
        } catch (error) {
          if (isFlintlockError(error, 'not-found'))
            throw new FlintlockError('not-found', {
              operation: 'GetMicroVM',
              endpoint: this.#options.endpoint,
              uid,
              details: 'the microVM disappeared while its agent was awaited',
            });
          live.log.debug({ error: (error as Error).message }, 'polling the microVM failed; still waiting for the agent');
          continue;
        }
        if (state === 'FAILED' || state === 'DELETING')
          throw new FlintlockError(state === 'FAILED' ? 'failed' : 'other', {
            operation: 'GetMicroVM',
            endpoint: this.#options.endpoint,
            uid,
            details: `the microVM went ${state} while its agent was awaited`,
          });
      }
    })();
    watch.catch(() => {});
    try {
      return await Promise.race([expectation.connected, watch]);
    } finally {
      watching = false;
    }
  }

  /** One command through the agent, as every driver runs it (execOverAgent). A command that outlives its timeout costs the VM. */
  async exec(vmId: string, request: ExecRequest, sink: OutputSink = {}): Promise<ExecResult> {
    const live = this.#live.require(vmId, 'run a command');
    // The VM's console is on the flintlockd host, not here.
    return execOverAgent(
      live,
      request,
      sink,
      () => this.destroy(vmId),
      async () => "the agent's log is in the VM (cloud-init output) on the flintlockd host",
    );
  }

  snapshot(vmId: string, snapshotName: string): Promise<SnapshotInfo> {
    return Promise.reject(
      this.#unsupported(
        `snapshot VM ${vmId} as "${snapshotName}"`,
        'Flintlock has no snapshot API (its MicroVM service creates, gets, lists and deletes)',
        'keep VMs warm with a booted pool (pools: NAME: { mode: booted }), or run snapshot pools on the firecracker driver',
      ),
    );
  }

  restore(snapshotName: string): Promise<Vm> {
    return Promise.reject(
      this.#unsupported(
        `restore snapshot "${snapshotName}"`,
        'Flintlock has no snapshot API, so there are no snapshots to restore',
        'cold-boot instead (a booted pool hides the boot time), or restore on the firecracker driver',
      ),
    );
  }

  #unsupported(action: string, reason: string, hint: string): HearthError {
    return new HearthError('HEARTH_ERR_DRIVER_UNSUPPORTED', { driver: this.name, action, reason, hint });
  }

  /**
   * Idempotent: closes the agent connection, deletes the microVM (one flintlockd
   * no longer knows counts as deleted) and waits a while for the delete to be
   * carried out, then forgets the VM. When flintlockd cannot be reached the
   * registry entry stays, so `hearth vm gc` can finish the job later.
   */
  destroy(vmId: string): Promise<void> {
    return this.#live.destroyWith(vmId, async (live) => {
      live?.expectation?.cancel(new Error(`VM ${vmId} is being destroyed`));
      live?.channel?.close();
      live?.socket?.destroy();
      const log = live?.log ?? this.#log.child({ vmId });
      const entry = (await this.registry.read(vmId)) as FlintlockEntry | undefined;
      const client = this.#clientNow();
      let uid = live?.uid || entry?.uid || undefined;
      try {
        // Created, but the answer was lost (a crash mid-call): find it by its id.
        uid ??= (await client.listMicroVms(this.namespace, vmId)).find((vm) => this.#ours(vm))?.uid;
        if (uid) {
          try {
            await client.deleteMicroVm(uid);
          } catch (error) {
            if (!isFlintlockError(error, 'not-found')) throw error;
          }
          await client
            .waitForDeletion(uid, this.#options.deleteTimeoutMs ?? DEFAULT_DELETE_TIMEOUT_MS)
            .catch((error: unknown) => log.warn({ uid, error: (error as Error).message }, 'flintlockd is still deleting the microVM'));
        }
      } catch (error) {
        throw this.#hearthError(error, vmId);
      }
      await this.registry.remove(vmId);
      log.info({ uid }, 'vm destroyed');
    });
  }

  isAlive(vmId: string): boolean {
    const live = this.#live.get(vmId);
    return live !== undefined && live.vm.state === 'ready' && live.socket !== undefined && !live.socket.destroyed;
  }

  /** Destroys every VM this process started, then lets go of the listener and the gRPC connection. */
  async destroyAll(): Promise<void> {
    const results = await Promise.allSettled(this.#live.ids().map((id) => this.destroy(id)));
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.then(
      (l) => l.close(),
      () => {},
    );
    this.#client?.close();
    this.#client = undefined;
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /**
   * This instance's microVMs as flintlockd reports them (namespace, managed-by
   * and owner labels) merged with the local registry: a VM this host's registry
   * holds is leaked when the process that booted it is gone; one flintlockd has
   * with this owner but no registry entry is leaked outright.
   */
  async list(): Promise<VmRecord[]> {
    let remote: FlintlockMicroVm[];
    try {
      remote = (await this.#clientNow().listMicroVms(this.namespace)).filter((vm) => this.#ours(vm));
    } catch (error) {
      throw this.#hearthError(error, '(all)');
    }
    const byId = new Map(remote.map((vm) => [vm.spec.id, vm]));
    const records: VmRecord[] = [];
    for (const id of await this.registry.ids()) {
      const entry = (await this.registry.read(id)) as FlintlockEntry | undefined;
      if (entry?.driver !== this.name) continue;
      const microvm = byId.get(id);
      byId.delete(id);
      records.push({
        id,
        driver: this.name,
        pid: 0,
        ownerPid: entry.ownerPid,
        image: entry.image,
        cpus: entry.cpus,
        memoryMib: entry.memoryMib,
        network: true,
        accel: 'kvm',
        createdAt: entry.createdAt,
        runtimeDir: this.registry.dirOf(id),
        alive: microvm?.status.state === 'CREATED',
        leaked: !isSameProcess(entry.ownerPid, entry.ownerStart),
      });
    }
    for (const microvm of byId.values()) {
      records.push({
        id: microvm.spec.id,
        driver: this.name,
        pid: 0,
        ownerPid: 0,
        image: microvm.spec.labels?.[FLINTLOCK_LABELS.image] ?? microvm.spec.rootVolume.source.containerSource ?? '?',
        cpus: microvm.spec.vcpu,
        memoryMib: microvm.spec.memoryInMb,
        network: true,
        accel: 'kvm',
        createdAt: microvm.createdAt?.toISOString() ?? '',
        runtimeDir: '',
        alive: microvm.status.state === 'CREATED',
        leaked: true,
      });
    }
    return records.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  #ours(vm: FlintlockMicroVm): boolean {
    return vm.spec.labels?.[FLINTLOCK_LABELS.managedBy] === 'hearth' && vm.spec.labels[FLINTLOCK_LABELS.owner] === this.owner;
  }

  /** A Flintlock failure as HEARTH_ERR_FLINTLOCK; with `bootStep`, anything else as HEARTH_ERR_VM_BOOT. */
  #hearthError(error: unknown, vmId: string, bootStep?: string): Error {
    if (isHearthError(error)) return error;
    if (error instanceof FlintlockError) {
      return new HearthError(
        'HEARTH_ERR_FLINTLOCK',
        {
          endpoint: error.endpoint,
          operation: error.operation,
          vmId,
          reason: `${error.details}${error.grpcCode ? ` (${error.grpcCode})` : ''}`,
          hint: error.fix,
        },
        { cause: error },
      );
    }
    if (bootStep === undefined) return error as Error;
    return new HearthError(
      'HEARTH_ERR_VM_BOOT',
      { vmId, reason: `${bootStep}: ${(error as Error).message}`, consoleLog: 'the VM console on the flintlockd host' },
      { cause: error },
    );
  }
}

/** The promise, or `timeout()` once the deadline passes. */
async function withDeadline<T>(promise: Promise<T>, deadline: number, timeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(timeout()), Math.max(0, deadline - Date.now()))))]);
  } finally {
    clearTimeout(timer);
  }
}
