import type { OutputSink } from '../guest/channel.ts';
import type { ShapeBounds } from './bounds.ts';

/**
 * The seam every VM backend implements (QEMU now; Firecracker and Flintlock
 * later). Small on purpose: boot or restore a VM, run commands in it, snapshot
 * it, destroy it, and list what this host has. `destroy` is idempotent, and a
 * failed boot cleans up after itself, so callers can always retry.
 */
export interface VmDriver {
  readonly name: string;
  /** What it can boot and do; callers ask this instead of checking which class a driver is. */
  readonly capabilities: DriverCapabilities;
  /**
   * Drivers that choose between accelerators at run time (QEMU: KVM when a probe
   * boot proves it works, else TCG) say what they chose and why; the others run
   * on `capabilities.accel` alone.
   */
  accel?(): Promise<AccelChoice>;
  /** The VMM's version; rejects with HEARTH_ERR_TOOL_MISSING when it is not installed (a readiness check). */
  version?(): Promise<string>;
  boot(spec: VmSpec): Promise<Vm>;
  restore(snapshotName: string, options?: RestoreOptions): Promise<Vm>;
  exec(vmId: string, request: ExecRequest, sink?: OutputSink): Promise<ExecResult>;
  snapshot(vmId: string, snapshotName: string): Promise<SnapshotInfo>;
  destroy(vmId: string): Promise<void>;
  list(): Promise<VmRecord[]>;
}

/**
 * How a VM reaches the network: `none` (no device), `user` (QEMU's user-mode
 * NAT), `tap` (a TAP device per VM under the egress policy), `remote` (the
 * driver's host wires it, e.g. flintlockd's bridge).
 */
export type NetworkMode = 'none' | 'user' | 'tap' | 'remote';

/**
 * Where a driver's images come from: this host's image cache (`hearth image
 * build`), or names the driver maps to images elsewhere (Flintlock's root
 * volume images), where `references` says an OCI reference is taken as is.
 */
export type ImageSource = { readonly kind: 'cache' } | { readonly kind: 'mapped'; readonly names: readonly string[]; readonly references: boolean };

/**
 * What a driver can do, declared up front (as garm's providers declare theirs)
 * so admission, placement and the CLI can ask before they boot anything.
 */
export interface DriverCapabilities extends ShapeBounds {
  /** `cpus` and `memoryMib`: the sizes it boots, within VM_BOUNDS (bounds.ts). */
  /** snapshot() and restore() work. */
  readonly snapshots: boolean;
  /** A host directory can be attached (VmSpec.source). */
  readonly sourceDirectory: boolean;
  readonly networking: readonly NetworkMode[];
  readonly images: ImageSource;
  /** Accelerators its VMs may run under; `accel()` says which one this host uses when there is a choice. */
  readonly accel: readonly ('kvm' | 'tcg')[];
}

export interface AccelChoice {
  readonly accel: 'kvm' | 'tcg';
  readonly reason: string;
}

export interface VmSpec {
  readonly image: string;
  readonly cpus: number;
  readonly memoryMib: number;
  /** Guest networking (QEMU user-mode); off unless asked for. */
  readonly network: boolean;
  /** A host directory copied into the VM, read-only at /mnt/hearth-src (a job's working tree). */
  readonly source?: string;
}

export interface RestoreOptions {
  readonly network?: boolean;
}

/**
 * A VM's lifecycle, one state at a time:
 * - booting: QEMU started, waiting for the agent's HELLO
 * - ready: idle, accepts exec and snapshot
 * - running: a command is executing
 * - snapshotting: paused while its memory is written out
 * - destroying / destroyed: being torn down / gone, nothing left on the host
 */
export type VmState = 'booting' | 'ready' | 'running' | 'snapshotting' | 'destroying' | 'destroyed';

export interface Vm {
  readonly id: string;
  readonly spec: VmSpec;
  readonly accel: 'kvm' | 'tcg';
  readonly origin: { readonly kind: 'cold' } | { readonly kind: 'snapshot'; readonly name: string };
  /** Milliseconds from the call to the agent answering. */
  startMs: number;
  state: VmState;
}

export interface ExecRequest {
  readonly argv: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** Hard limit: when it passes, the host destroys the VM. */
  readonly timeoutSeconds?: number;
}

export interface ExecResult {
  /** Shell-style: the exit status, or 128 + signal (137 for SIGKILL). */
  readonly exitCode: number;
  readonly signal: number;
  readonly durationMs: number;
}

export interface SnapshotInfo {
  readonly name: string;
  readonly sizeBytes: number;
  readonly createdAt: string;
}

/** What the on-disk registry knows of a VM, whoever started it. */
export interface VmRecord {
  readonly id: string;
  readonly driver: string;
  readonly pid: number;
  readonly ownerPid: number;
  readonly image: string;
  readonly cpus: number;
  readonly memoryMib: number;
  readonly network: boolean;
  readonly accel: 'kvm' | 'tcg';
  readonly createdAt: string;
  readonly runtimeDir: string;
  /** running: its VMM process is alive. */
  readonly alive: boolean;
  /** leaked: the process that started it is gone; `hearth vm gc` destroys it. */
  readonly leaked: boolean;
}
