import type { HearthPaths } from '../config/paths.ts';
import { HearthError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { VmDriver } from './driver.ts';
import { FirecrackerDriver, type JailerOptions } from './firecracker/driver.ts';
import { FlintlockDriver, type FlintlockDriverOptions } from './flintlock/driver.ts';
import { QemuDriver } from './qemu/driver.ts';
import type { EgressPolicy } from './network/tap.ts';

/** A driver that runs VMs on this host, as the CLI, the controller and pools use it. */
export type HostDriver = VmDriver & {
  /** Ready for a command, with its VMM still running. */
  isAlive(vmId: string): boolean;
  /** Destroys every VM this process started (signal handlers, shutdown). */
  destroyAll(): Promise<void>;
};

export const HOST_DRIVERS = ['qemu', 'firecracker', 'flintlock'] as const;

/** The flintlock driver's settings (see FlintlockDriverOptions): everything but paths, logger and the boot timeout. */
export type FlintlockHostOptions = Omit<FlintlockDriverOptions, 'paths' | 'logger' | 'bootTimeoutMs'>;

export interface HostDriverOptions {
  readonly paths: HearthPaths;
  readonly logger: Logger;
  /** kvm, tcg, or undefined to probe (QEMU). */
  readonly accel?: string | undefined;
  readonly qemuBinary?: string | undefined;
  readonly firecrackerBinary?: string | undefined;
  /** Run each Firecracker VMM through the jailer. */
  readonly jailer?: JailerOptions | undefined;
  readonly bootTimeoutMs?: number;
  readonly egress?: EgressPolicy | undefined;
  /** Required for the flintlock driver: where flintlockd is, what guests dial back to, which images. */
  readonly flintlock?: FlintlockHostOptions | undefined;
}

/**
 * The driver by name: `qemu` (default, KVM or TCG), `firecracker` (KVM hosts
 * with its binary) or `flintlock` (VMs on a flintlockd host; needs `flintlock`).
 */
export function createHostDriver(name: string, options: HostDriverOptions): HostDriver {
  if (name === 'qemu')
    return new QemuDriver({
      paths: options.paths,
      logger: options.logger,
      accel: options.accel,
      ...(options.qemuBinary ? { qemuBinary: options.qemuBinary } : {}),
      ...(options.bootTimeoutMs ? { bootTimeoutMs: options.bootTimeoutMs } : {}),
      egress: options.egress,
    });
  if (name === 'firecracker')
    return new FirecrackerDriver({
      paths: options.paths,
      logger: options.logger,
      ...(options.firecrackerBinary ? { binary: options.firecrackerBinary } : {}),
      ...(options.bootTimeoutMs ? { bootTimeoutMs: options.bootTimeoutMs } : {}),
      egress: options.egress,
      jailer: options.jailer,
    });
  if (name === 'flintlock') {
    if (!options.flintlock) {
      throw new HearthError('HEARTH_ERR_BAD_OPTION', {
        option: '--driver flintlock',
        reason: "needs flintlockd's endpoint, the agent listener's address and advertised URL, and the kernel and root images",
        hint: 'set HEARTH_FLINTLOCK_ENDPOINT, HEARTH_FLINTLOCK_AGENT_URL, HEARTH_FLINTLOCK_KERNEL_IMAGE and HEARTH_FLINTLOCK_ROOT_IMAGES (docs/hosts.md lists them all)',
      });
    }
    return new FlintlockDriver({
      paths: options.paths,
      logger: options.logger,
      ...options.flintlock,
      ...(options.bootTimeoutMs ? { bootTimeoutMs: options.bootTimeoutMs } : {}),
    });
  }
  throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: '--driver', reason: `"${name}" is not a driver`, hint: `use one of ${HOST_DRIVERS.join(', ')}` });
}
