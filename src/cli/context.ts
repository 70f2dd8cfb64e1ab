import { resolvePaths, type HearthPaths } from '../config/paths.ts';
import type { Logger } from '../log.ts';
import type { HostDriver } from '../vm/host-driver.ts';
import type { QemuDriver } from '../vm/qemu/driver.ts';

/** What every command needs, made once per CLI invocation. */
export interface CliContext {
  readonly paths: HearthPaths;
  readonly logger: Logger;
  /** The driver VMs run on: --driver, else HEARTH_DRIVER, else qemu. */
  readonly driver: HostDriver;
  /** QEMU itself, for what only it has (the KVM probe that `doctor` reports). */
  readonly qemu: QemuDriver;
}

/**
 * Builds the context. The logger and drivers are imported here, when a command first needs them,
 * not when the CLI starts: `hearth --help` loads neither pino nor any driver, and only
 * `--driver firecracker|flintlock` loads those drivers (Flintlock brings gRPC).
 */
export async function createCliContext(env: NodeJS.ProcessEnv = process.env, driverName?: string): Promise<CliContext> {
  const paths = resolvePaths(env);
  const [{ createLogger }, { QemuDriver }] = await Promise.all([import('../log.ts'), import('../vm/qemu/driver.ts')]);
  const logger = createLogger();
  const qemu = new QemuDriver({ paths, logger, accel: env.HEARTH_ACCEL, ...(env.HEARTH_QEMU ? { qemuBinary: env.HEARTH_QEMU } : {}) });
  const name = driverName ?? env.HEARTH_DRIVER ?? 'qemu';
  if (name === 'qemu') return { paths, logger, driver: qemu, qemu };
  const { createHostDriver, driverSettingsFromEnv } = await import('../vm/host-driver.ts');
  return { paths, logger, driver: createHostDriver(name, { paths, logger, ...driverSettingsFromEnv(env) }), qemu };
}

/** How commands reach the context: made on first use, then shared. */
export type CliContextSource = () => Promise<CliContext>;
