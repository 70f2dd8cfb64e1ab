import { driverSettings, loadHostConfig, type LoadedHostConfig } from '../config/host-config.ts';
import type { HearthPaths } from '../config/paths.ts';
import { createLogger, type Logger } from '../log.ts';
import { createHostDriver, type HostDriver } from '../vm/host-driver.ts';
import { QemuDriver } from '../vm/qemu/driver.ts';

/** What every command needs, made once per CLI invocation. */
export interface CliContext {
  /** This machine's settings (directories, drivers), resolved once from the environment and flags. */
  readonly host: LoadedHostConfig;
  readonly paths: HearthPaths;
  readonly logger: Logger;
  /** The driver VMs run on: --driver, else HEARTH_DRIVER, else qemu. */
  readonly driver: HostDriver;
  /** QEMU itself, for what only it has (the KVM probe that `doctor` reports). */
  readonly qemu: QemuDriver;
}

export function createCliContext(env: NodeJS.ProcessEnv = process.env, driverName?: string): CliContext {
  const host = loadHostConfig({ env, flags: { 'cli.driver': driverName } });
  const { paths, qemu: qemuSettings, cli } = host.config;
  const logger = createLogger();
  const settings = driverSettings(host);
  const qemu = new QemuDriver({ paths, logger, accel: qemuSettings.accel === 'auto' ? undefined : qemuSettings.accel, ...(settings.qemuBinary ? { qemuBinary: settings.qemuBinary } : {}) });
  const driver = cli.driver === 'qemu' ? qemu : createHostDriver(cli.driver, { paths, logger, ...settings });
  return { host, paths, logger, driver, qemu };
}
