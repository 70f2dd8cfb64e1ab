// What the fake VMM does with a request the spec accepted: one handler per
// operationId, the pre-boot/post-boot split as data, and Firecracker's state
// rules (InstanceStart needs a kernel, snapshots need a pause, load needs a
// fresh process). No HTTP here; server.ts is the transport.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ExecMessage, IdentityMessage } from '../../../src/guest/protocol.ts';
import { Faults } from './faults.ts';
import { FakeVsock } from './vsock.ts';

/** InstanceInfo.state, as GET / reports it. */
export type VmState = 'Not started' | 'Running' | 'Paused';

export const FAKE_VMM_VERSION = '1.7.0';

/** Marks a snapshot file as ours, so load can tell a real snapshot from any file. */
export const SNAPSHOT_FORMAT = 'hearth-fake-firecracker-snapshot/1';

export interface Reply {
  readonly status: number;
  readonly body?: unknown;
}

export interface VmmOptions {
  readonly id: string;
  readonly vsockAgent: boolean;
  readonly agentPort?: number;
  /** Refuse kernel, initrd, drive and memory paths that do not exist, as Firecracker does when it opens them. */
  readonly checkHostPaths: boolean;
  /** The jail's chroot when started by the jailer: every path the API names is read inside it. */
  readonly root?: string | undefined;
  /** Hears each IDENTITY the emulated agent applies. */
  readonly onIdentity?: ((identity: IdentityMessage) => void) | undefined;
  /** The emulated agent's HELLO flags (0 emulates an agent older than the IDENTITY network extension). */
  readonly agentHelloFlags?: number | undefined;
}

/** Where a path the VMM was given lies on the host: inside `root` when jailed (`..` cannot climb out of a chroot). */
export function hostPath(root: string | undefined, path: string): string {
  return root ? join(root, resolve('/', path)) : path;
}

type Json = Record<string, unknown>;
type Handler = (vmm: FakeVmm, params: Record<string, string>, body: Json) => Reply | Promise<Reply>;

/** When an operation is accepted; everything not listed is accepted at any time. */
const PHASE: Record<string, 'pre-boot' | 'post-boot'> = {
  putGuestBootSource: 'pre-boot',
  putCpuConfiguration: 'pre-boot',
  putGuestDriveByID: 'pre-boot',
  putGuestPmemByID: 'pre-boot',
  putLogger: 'pre-boot',
  putMetrics: 'pre-boot',
  putMachineConfiguration: 'pre-boot',
  patchMachineConfiguration: 'pre-boot',
  putMmdsConfig: 'pre-boot',
  putEntropyDevice: 'pre-boot',
  putSerialDevice: 'pre-boot',
  putMemoryHotplug: 'pre-boot',
  putGuestNetworkInterfaceByID: 'pre-boot',
  putGuestVsock: 'pre-boot',
  putBalloon: 'pre-boot',
  patchGuestDriveByID: 'post-boot',
  patchGuestNetworkInterfaceByID: 'post-boot',
  patchGuestPmemByID: 'post-boot',
  patchVm: 'post-boot',
  createSnapshot: 'post-boot',
  patchMemoryHotplug: 'post-boot',
  startBalloonHinting: 'post-boot',
  stopBalloonHinting: 'post-boot',
};

/** Configuring these still leaves a "fresh process" that may load a snapshot. */
const FRESH_PROCESS_OPERATIONS = new Set(['putLogger', 'putMetrics']);

const NO_CONTENT: Reply = { status: 204 };
const ok = (body: unknown): Reply => ({ status: 200, body });
const bad = (fault: string): Reply => ({ status: 400, body: { fault_message: fault } });

const MACHINE_DEFAULTS: Json = { vcpu_count: 1, mem_size_mib: 128, smt: false, track_dirty_pages: false, huge_pages: 'None' };

interface SnapshotFile {
  format: string;
  config: SavedConfig;
}

interface SavedConfig {
  machine: Json;
  drives: Json[];
  interfaces: Json[];
  vsock: Json | undefined;
  devices: Record<string, unknown>;
}

export class FakeVmm {
  state: VmState = 'Not started';
  bootSource: Json | undefined;
  machine: Json = { ...MACHINE_DEFAULTS };
  readonly drives = new Map<string, Json>();
  readonly interfaces = new Map<string, Json>();
  readonly pmem = new Map<string, Json>();
  vsockConfig: Json | undefined;
  vsock: FakeVsock | undefined;
  /** Single-instance devices and settings by their /vm/config key (balloon, logger, mmds-config, ...). */
  readonly devices: Record<string, unknown> = {};
  mmds: Json | undefined;
  /** Something beyond logger and metrics was configured, so snapshot/load is refused. */
  configured = false;
  readonly execs: ExecMessage[] = [];
  /** Every IDENTITY the emulated agent applied, in order. */
  readonly identities: IdentityMessage[] = [];
  /** The body of the PUT /snapshot/load that made this VM, network_overrides and all. */
  loadedWith: Json | undefined;

  constructor(readonly options: VmmOptions) {}

  get started(): boolean {
    return this.state !== 'Not started';
  }

  async handle(operation: string, params: Record<string, string>, body: unknown): Promise<Reply> {
    const phase = PHASE[operation];
    if (phase === 'pre-boot' && this.started) return bad(Faults.afterStart());
    if (phase === 'post-boot' && !this.started) return bad(Faults.beforeStart());
    const handler = HANDLERS[operation];
    if (!handler) return { status: 500, body: { fault_message: `the fake does not implement ${operation}` } };
    const reply = await handler(this, params, (body ?? {}) as Json);
    if (reply.status < 300 && phase === 'pre-boot' && !FRESH_PROCESS_OPERATIONS.has(operation)) this.configured = true;
    return reply;
  }

  fullConfig(): Json {
    const config: Json = {
      'machine-config': this.machine,
      drives: [...this.drives.values()],
      'network-interfaces': [...this.interfaces.values()],
      pmem: [...this.pmem.values()],
      ...this.devices,
    };
    if (this.bootSource) config['boot-source'] = this.bootSource;
    if (this.vsockConfig) config.vsock = this.vsockConfig;
    return config;
  }

  /** The host file behind a path given over the API. */
  hostPath(path: string): string {
    return hostPath(this.options.root, path);
  }

  missingHostFile(what: string, path: unknown): Reply | undefined {
    if (!this.options.checkHostPaths || typeof path !== 'string' || existsSync(this.hostPath(path))) return undefined;
    return bad(Faults.hostFileMissing(what, path));
  }

  /** Binds the vsock socket for `config`, replacing any earlier one. */
  async attachVsock(config: Json): Promise<Reply | undefined> {
    const udsPath = config.uds_path as string;
    if (this.vsock?.udsPath !== this.hostPath(udsPath)) {
      await this.vsock?.close();
      this.vsock = undefined;
      try {
        this.vsock = await FakeVsock.bind(this.hostPath(udsPath), {
          agent: this.options.vsockAgent,
          agentPort: this.options.agentPort,
          execs: this.execs,
          helloFlags: this.options.agentHelloFlags,
          onIdentity: (identity) => {
            this.identities.push(identity);
            this.options.onIdentity?.(identity);
          },
        });
      } catch (error) {
        return bad(Faults.vsockBind(udsPath, (error as NodeJS.ErrnoException).code ?? (error as Error).message));
      }
    }
    this.vsockConfig = config;
    return undefined;
  }

  saved(): SavedConfig {
    return {
      machine: this.machine,
      drives: [...this.drives.values()],
      interfaces: [...this.interfaces.values()],
      vsock: this.vsockConfig,
      devices: this.devices,
    };
  }

  async shutdown(): Promise<void> {
    await this.vsock?.close();
    this.vsock = undefined;
  }
}

/** A device configured by a single PUT and echoed in /vm/config under `key`. */
function storeDevice(key: string): Handler {
  return (vmm, _params, body) => {
    vmm.devices[key] = body;
    return NO_CONTENT;
  };
}

function readDevice(key: string, missing: string): Handler {
  return (vmm) => (vmm.devices[key] ? ok(vmm.devices[key]) : bad(missing));
}

function patchById(collection: (vmm: FakeVmm) => Map<string, Json>, idField: string, what: string): Handler {
  return (vmm, params, body) => {
    const id = params[idField] as string;
    const current = collection(vmm).get(id);
    if (!current) return bad(Faults.notConfigured(`${what} ${id}`));
    collection(vmm).set(id, { ...current, ...body });
    return NO_CONTENT;
  };
}

function mergePatch(target: Json, patch: Json): Json {
  const out: Json = { ...target };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else if (typeof value === 'object' && !Array.isArray(value) && typeof out[key] === 'object' && out[key] !== null && !Array.isArray(out[key]))
      out[key] = mergePatch(out[key] as Json, value as Json);
    else out[key] = value;
  }
  return out;
}

const HANDLERS: Record<string, Handler> = {
  describeInstance: (vmm) => ok({ id: vmm.options.id, state: vmm.state, vmm_version: FAKE_VMM_VERSION, app_name: 'Firecracker' }),
  getFirecrackerVersion: () => ok({ firecracker_version: FAKE_VMM_VERSION }),
  getMachineConfiguration: (vmm) => ok(vmm.machine),
  getExportVmConfig: (vmm) => ok(vmm.fullConfig()),

  putGuestBootSource: (vmm, _params, body) => {
    const missing = vmm.missingHostFile('The kernel file', body.kernel_image_path) ?? vmm.missingHostFile('The initrd file', body.initrd_path);
    if (missing) return missing;
    vmm.bootSource = body;
    return NO_CONTENT;
  },
  // "All parameters that are optional and are not specified are set to their default values."
  putMachineConfiguration: (vmm, _params, body) => {
    vmm.machine = { ...MACHINE_DEFAULTS, ...body };
    return NO_CONTENT;
  },
  patchMachineConfiguration: (vmm, _params, body) => {
    vmm.machine = { ...vmm.machine, ...body };
    return NO_CONTENT;
  },
  putGuestDriveByID: (vmm, params, body) => {
    const missing = body.socket === undefined ? vmm.missingHostFile('The block device backing file', body.path_on_host) : undefined;
    if (missing) return missing;
    const id = params.drive_id as string;
    const otherRoot = [...vmm.drives.values()].some((d) => d.is_root_device === true && d.drive_id !== id);
    if (body.is_root_device === true && otherRoot) return bad(Faults.duplicateRoot());
    vmm.drives.set(id, body);
    return NO_CONTENT;
  },
  patchGuestDriveByID: patchById((vmm) => vmm.drives, 'drive_id', 'drive'),
  putGuestNetworkInterfaceByID: (vmm, params, body) => {
    vmm.interfaces.set(params.iface_id as string, body);
    return NO_CONTENT;
  },
  patchGuestNetworkInterfaceByID: patchById((vmm) => vmm.interfaces, 'iface_id', 'network interface'),
  putGuestPmemByID: (vmm, params, body) => {
    const missing = vmm.missingHostFile('The pmem backing file', body.path_on_host);
    if (missing) return missing;
    vmm.pmem.set(params.id as string, body);
    return NO_CONTENT;
  },
  patchGuestPmemByID: patchById((vmm) => vmm.pmem, 'id', 'pmem device'),
  putGuestVsock: async (vmm, _params, body) => (await vmm.attachVsock(body)) ?? NO_CONTENT,

  putMmdsConfig: (vmm, _params, body) => {
    const unknown = (body.network_interfaces as string[]).find((id) => !vmm.interfaces.has(id));
    if (unknown !== undefined) return bad(Faults.mmdsInterfaces(unknown));
    vmm.devices['mmds-config'] = body;
    return NO_CONTENT;
  },
  putMmds: (vmm, _params, body) => {
    vmm.mmds = body;
    return NO_CONTENT;
  },
  patchMmds: (vmm, _params, body) => {
    vmm.mmds = mergePatch(vmm.mmds ?? {}, body);
    return NO_CONTENT;
  },
  getMmds: (vmm) => ok(vmm.mmds ?? {}),

  putLogger: storeDevice('logger'),
  putMetrics: storeDevice('metrics'),
  putEntropyDevice: storeDevice('entropy'),
  putSerialDevice: storeDevice('serial'),
  putCpuConfiguration: storeDevice('cpu-config'),
  putMemoryHotplug: storeDevice('memory-hotplug'),
  putBalloon: storeDevice('balloon'),
  describeBalloonConfig: readDevice('balloon', Faults.noBalloon()),
  patchBalloon: (vmm, _params, body) => {
    if (!vmm.devices.balloon) return bad(Faults.noBalloon());
    vmm.devices.balloon = { ...(vmm.devices.balloon as Json), ...body };
    return NO_CONTENT;
  },
  // The fake has no guest memory to report on: statistics and hinting read as not enabled.
  describeBalloonStats: () => bad(Faults.notConfigured('Balloon statistics')),
  patchBalloonStatsInterval: () => bad(Faults.notConfigured('Balloon statistics')),
  startBalloonHinting: () => bad(Faults.notConfigured('Balloon free page hinting')),
  stopBalloonHinting: () => bad(Faults.notConfigured('Balloon free page hinting')),
  describeBalloonHinting: () => bad(Faults.notConfigured('Balloon free page hinting')),
  getMemoryHotplug: readDevice('memory-hotplug', Faults.notConfigured('Memory hotplug')),
  patchMemoryHotplug: (vmm) => (vmm.devices['memory-hotplug'] ? NO_CONTENT : bad(Faults.notConfigured('Memory hotplug'))),

  createSyncAction: (vmm, _params, body) => {
    switch (body.action_type) {
      case 'InstanceStart':
        if (vmm.started) return bad(Faults.afterStart());
        if (!vmm.bootSource) return bad(Faults.missingKernel());
        vmm.state = 'Running';
        vmm.configured = true;
        vmm.vsock?.boot();
        return NO_CONTENT;
      case 'SendCtrlAltDel':
        return vmm.started ? NO_CONTENT : bad(Faults.beforeStart());
      default:
        return NO_CONTENT; // FlushMetrics
    }
  },
  patchVm: (vmm, _params, body) => {
    if (body.state === 'Paused') {
      vmm.state = 'Paused';
      vmm.vsock?.pause();
    } else {
      vmm.state = 'Running';
      vmm.vsock?.resume();
    }
    return NO_CONTENT;
  },

  createSnapshot: (vmm, _params, body) => {
    if (vmm.state !== 'Paused') return bad(Faults.snapshotNeedsPause());
    if (body.snapshot_type === 'Diff' && vmm.machine.track_dirty_pages !== true) return bad(Faults.diffNeedsDirtyPages());
    const snapshot: SnapshotFile = { format: SNAPSHOT_FORMAT, config: vmm.saved() };
    for (const [path, content] of [
      [body.snapshot_path as string, `${JSON.stringify(snapshot)}\n`],
      [body.mem_file_path as string, `fake guest memory: ${String(vmm.machine.mem_size_mib)} MiB\n`],
    ] as const) {
      try {
        writeFileSync(vmm.hostPath(path), content);
      } catch (error) {
        return bad(Faults.snapshotIo(path, (error as Error).message));
      }
    }
    return NO_CONTENT;
  },
  loadSnapshot: async (vmm, _params, body) => {
    if (vmm.started || vmm.configured) return bad(Faults.loadNotAllowed());
    const snapshotPath = body.snapshot_path as string;
    let snapshot: SnapshotFile;
    try {
      snapshot = JSON.parse(readFileSync(vmm.hostPath(snapshotPath), 'utf8')) as SnapshotFile;
    } catch (error) {
      return bad(Faults.loadFailed(`cannot read the microVM state from ${snapshotPath}: ${(error as Error).message}`));
    }
    if (snapshot.format !== SNAPSHOT_FORMAT) return bad(Faults.loadFailed(`${snapshotPath} is not a snapshot state file`));
    const backend = body.mem_backend as Json | undefined;
    const memPath = (backend?.backend_path ?? body.mem_file_path) as string;
    if (!existsSync(vmm.hostPath(memPath))) return bad(Faults.loadFailed(`cannot open the memory backend ${memPath}: No such file or directory (os error 2)`));

    const { config } = snapshot;
    const interfaces = new Map(config.interfaces.map((i) => [i.iface_id as string, i]));
    for (const override of (body.network_overrides as Json[] | undefined) ?? []) {
      const iface = interfaces.get(override.iface_id as string);
      if (!iface) return bad(Faults.loadFailed(Faults.unknownInterface(override.iface_id as string)));
      interfaces.set(override.iface_id as string, { ...iface, host_dev_name: override.host_dev_name });
    }
    const vsockOverride = body.vsock_override as Json | undefined;
    const vsockConfig = config.vsock && vsockOverride ? { ...config.vsock, uds_path: vsockOverride.uds_path } : config.vsock;
    if (vsockConfig) {
      const failed = await vmm.attachVsock(vsockConfig);
      if (failed) return failed;
    }
    // "If the VM is restored from a snapshot, the boot-source ... will be empty."
    vmm.machine = config.machine;
    for (const drive of config.drives) vmm.drives.set(drive.drive_id as string, drive);
    for (const [id, iface] of interfaces) vmm.interfaces.set(id, iface);
    Object.assign(vmm.devices, config.devices);
    vmm.configured = true;
    vmm.loadedWith = body;
    vmm.state = body.resume_vm === true ? 'Running' : 'Paused';
    vmm.vsock?.restore(vmm.state === 'Running');
    return NO_CONTENT;
  },
};

/** Operation ids with a handler, so a test can hold the fake to the whole spec. */
export const IMPLEMENTED_OPERATIONS: readonly string[] = Object.keys(HANDLERS);
