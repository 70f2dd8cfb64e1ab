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
 * Flintlock settings from HEARTH_FLINTLOCK_* variables, for the CLI; undefined
 * when none is set. Root images are NAME=REF pairs separated by commas.
 */
export function flintlockOptionsFromEnv(env: NodeJS.ProcessEnv): FlintlockHostOptions | undefined {
  const get = (key: string): string | undefined => env[`HEARTH_FLINTLOCK_${key}`] || undefined;
  const keys = ['ENDPOINT', 'NAMESPACE', 'OWNER', 'AGENT_LISTEN', 'AGENT_URL', 'KERNEL_IMAGE', 'KERNEL_FILENAME', 'INITRD_IMAGE', 'ROOT_IMAGES'];
  if (!keys.some((key) => get(key))) return undefined;
  const rootImages: Record<string, string> = {};
  for (const pair of (get('ROOT_IMAGES') ?? '').split(',').filter(Boolean)) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: 'HEARTH_FLINTLOCK_ROOT_IMAGES', reason: `"${pair}" is not NAME=IMAGE`, hint: 'for example debian=ghcr.io/acme/hearth-debian:12,minimal=ghcr.io/acme/hearth-minimal:1' });
    rootImages[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
  }
  return {
    endpoint: get('ENDPOINT') ?? 'localhost:9090',
    agentListen: get('AGENT_LISTEN') ?? '0.0.0.0:7071',
    agentUrl: get('AGENT_URL') ?? '',
    kernelImage: get('KERNEL_IMAGE') ?? '',
    rootImages,
    ...(get('NAMESPACE') && { namespace: get('NAMESPACE') }),
    ...(get('OWNER') && { owner: get('OWNER') }),
    ...(get('KERNEL_FILENAME') && { kernelFilename: get('KERNEL_FILENAME') }),
    ...(get('INITRD_IMAGE') && { initrdImage: get('INITRD_IMAGE') }),
  };
}

/** Jailer settings from HEARTH_JAILER (the binary; setting it turns the jailer on) and HEARTH_JAILER_*. */
export function jailerOptionsFromEnv(env: NodeJS.ProcessEnv): JailerOptions | undefined {
  const binary = env.HEARTH_JAILER;
  if (!binary) return undefined;
  const id = (key: string): number => {
    const value = Number(env[key]);
    if (env[key] && Number.isInteger(value) && value > 0) return value;
    throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: key, reason: `must be the numeric id of the unprivileged user or group Firecracker runs as (got "${env[key] ?? ''}")`, hint: `create one (docs/hosts.md) and set ${key}, e.g. ${key}=$(id -u firecracker)` });
  };
  return {
    binary,
    uid: id('HEARTH_JAILER_UID'),
    gid: id('HEARTH_JAILER_GID'),
    ...(env.HEARTH_JAILER_CHROOT ? { chrootBaseDir: env.HEARTH_JAILER_CHROOT } : {}),
    ...(env.HEARTH_JAILER_NETNS ? { netns: env.HEARTH_JAILER_NETNS } : {}),
  };
}

/** What the environment says about the VMM drivers: shared by the CLI and `hearth serve`. */
export function driverSettingsFromEnv(env: NodeJS.ProcessEnv): Pick<HostDriverOptions, 'firecrackerBinary' | 'jailer' | 'flintlock'> {
  return { firecrackerBinary: env.HEARTH_FIRECRACKER, jailer: jailerOptionsFromEnv(env), flintlock: flintlockOptionsFromEnv(env) };
}

/**
 * The driver by name: `qemu` (default, KVM or TCG), `firecracker` (KVM hosts
 * with its binary) or `flintlock` (VMs on a flintlockd host; needs `flintlock`).
 */
export function createHostDriver(name: string, options: HostDriverOptions): HostDriver {
  if (name === 'qemu') return new QemuDriver({ paths: options.paths, logger: options.logger, accel: options.accel, ...(options.qemuBinary ? { qemuBinary: options.qemuBinary } : {}), ...(options.bootTimeoutMs ? { bootTimeoutMs: options.bootTimeoutMs } : {}), egress: options.egress });
  if (name === 'firecracker') return new FirecrackerDriver({ paths: options.paths, logger: options.logger, ...(options.firecrackerBinary ? { binary: options.firecrackerBinary } : {}), ...(options.bootTimeoutMs ? { bootTimeoutMs: options.bootTimeoutMs } : {}), egress: options.egress, jailer: options.jailer });
  if (name === 'flintlock') {
    if (!options.flintlock) {
      throw new HearthError('HEARTH_ERR_BAD_OPTION', {
        option: '--driver flintlock',
        reason: "needs flintlockd's endpoint, the agent listener's address and advertised URL, and the kernel and root images",
        hint: 'set HEARTH_FLINTLOCK_ENDPOINT, HEARTH_FLINTLOCK_AGENT_URL, HEARTH_FLINTLOCK_KERNEL_IMAGE and HEARTH_FLINTLOCK_ROOT_IMAGES (docs/hosts.md lists them all)',
      });
    }
    return new FlintlockDriver({ paths: options.paths, logger: options.logger, ...options.flintlock, ...(options.bootTimeoutMs ? { bootTimeoutMs: options.bootTimeoutMs } : {}) });
  }
  throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: '--driver', reason: `"${name}" is not a driver`, hint: `use one of ${HOST_DRIVERS.join(', ')}` });
}
