import type { OutputSink } from '../guest/channel.ts';

/**
 * The seam every VM backend implements (QEMU now; Firecracker and Flintlock
 * later). Small on purpose: boot or restore a VM, run commands in it, snapshot
 * it, destroy it, and list what this host has. `destroy` is idempotent, and a
 * failed boot cleans up after itself, so callers can always retry.
 */
export interface VmDriver {
  readonly name: string;
  boot(spec: VmSpec): Promise<Vm>;
  restore(snapshotName: string, options?: RestoreOptions): Promise<Vm>;
  exec(vmId: string, request: ExecRequest, sink?: OutputSink): Promise<ExecResult>;
  snapshot(vmId: string, snapshotName: string): Promise<SnapshotInfo>;
  destroy(vmId: string): Promise<void>;
  list(): Promise<VmRecord[]>;
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
