import { resolvePaths, type HearthPaths } from '../config/paths.ts';
import { createLogger, type Logger } from '../log.ts';
import { createHostDriver, driverSettingsFromEnv, type HostDriver } from '../vm/host-driver.ts';
import { QemuDriver } from '../vm/qemu/driver.ts';

/** What every command needs, made once per CLI invocation. */
export interface CliContext {
  readonly paths: HearthPaths;
  readonly logger: Logger;
  /** The driver VMs run on: --driver, else HEARTH_DRIVER, else qemu. */
  readonly driver: HostDriver;
  /** QEMU itself, for what only it has (the KVM probe that `doctor` reports). */
  readonly qemu: QemuDriver;
}

export function createCliContext(env: NodeJS.ProcessEnv = process.env, driverName?: string): CliContext {
  const paths = resolvePaths(env);
  const logger = createLogger();
  const qemu = new QemuDriver({ paths, logger, accel: env.HEARTH_ACCEL, ...(env.HEARTH_QEMU ? { qemuBinary: env.HEARTH_QEMU } : {}) });
  const name = driverName ?? env.HEARTH_DRIVER ?? 'qemu';
  const driver = name === 'qemu' ? qemu : createHostDriver(name, { paths, logger, ...driverSettingsFromEnv(env) });
  return { paths, logger, driver, qemu };
}
