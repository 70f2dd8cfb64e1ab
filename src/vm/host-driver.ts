import type { HearthPaths } from '../config/paths.ts';
import { HearthError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { VmDriver } from './driver.ts';
import { FirecrackerDriver } from './firecracker/driver.ts';
import { QemuDriver } from './qemu/driver.ts';
import type { EgressPolicy } from './network/tap.ts';

/** A driver that runs VMs on this host, as the CLI, the controller and pools use it. */
export type HostDriver = VmDriver & {
  /** Ready for a command, with its VMM still running. */
  isAlive(vmId: string): boolean;
  /** Destroys every VM this process started (signal handlers, shutdown). */
  destroyAll(): Promise<void>;
};

export const HOST_DRIVERS = ['qemu', 'firecracker'] as const;

export interface HostDriverOptions {
  readonly paths: HearthPaths;
  readonly logger: Logger;
  /** kvm, tcg, or undefined to probe (QEMU). */
  readonly accel?: string | undefined;
  readonly qemuBinary?: string | undefined;
  readonly firecrackerBinary?: string | undefined;
  readonly bootTimeoutMs?: number;
  readonly egress?: EgressPolicy | undefined;
}

/** The driver by name: `qemu` (default, KVM or TCG) or `firecracker` (KVM hosts with its binary). */
export function createHostDriver(name: string, options: HostDriverOptions): HostDriver {
  if (name === 'qemu') return new QemuDriver({ paths: options.paths, logger: options.logger, accel: options.accel, ...(options.qemuBinary ? { qemuBinary: options.qemuBinary } : {}), ...(options.bootTimeoutMs ? { bootTimeoutMs: options.bootTimeoutMs } : {}), egress: options.egress });
  if (name === 'firecracker') return new FirecrackerDriver({ paths: options.paths, logger: options.logger, ...(options.firecrackerBinary ? { binary: options.firecrackerBinary } : {}), ...(options.bootTimeoutMs ? { bootTimeoutMs: options.bootTimeoutMs } : {}), egress: options.egress });
  if (name === 'flintlock') throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: '--driver', reason: 'flintlock runs VMs on a flintlockd host, and Hearth cannot reach its agent there yet (the client is in src/vm/flintlock/)', hint: 'use --driver qemu or --driver firecracker' });
  throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: '--driver', reason: `"${name}" is not a driver`, hint: `use one of ${HOST_DRIVERS.join(', ')}` });
}
