import type { LoadedHostConfig } from '../config/host-config.ts';
import type { HearthPaths } from '../config/paths.ts';
import type { Logger } from '../log.ts';
import type { HostDriver } from '../vm/host-driver.ts';
import type { QemuDriver } from '../vm/qemu/driver.ts';

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

/**
 * Builds the context. The settings engine, the logger and drivers are imported here, when a command
 * first needs them, not when the CLI starts: `hearth --help` loads neither pino nor any driver, and
 * only `--driver firecracker|flintlock` loads those drivers (Flintlock brings gRPC).
 */
export async function createCliContext(driverName?: string): Promise<CliContext> {
  const [{ driverSettings, loadHostConfig }, { createLogger }, { QemuDriver }] = await Promise.all([
    import('../config/host-config.ts'),
    import('../log.ts'),
    import('../vm/qemu/driver.ts'),
  ]);
  const host = loadHostConfig({ flags: { 'cli.driver': driverName } });
  const { paths, qemu: qemuSettings, cli } = host.config;
  const logger = createLogger();
  const settings = driverSettings(host);
  const qemu = new QemuDriver({
    paths,
    logger,
    accel: qemuSettings.accel === 'auto' ? undefined : qemuSettings.accel,
    ...(settings.qemuBinary ? { qemuBinary: settings.qemuBinary } : {}),
  });
  if (cli.driver === 'qemu') return { host, paths, logger, driver: qemu, qemu };
  const { createHostDriver } = await import('../vm/host-driver.ts');
  return { host, paths, logger, driver: createHostDriver(cli.driver, { paths, logger, ...settings }), qemu };
}

/** How commands reach the context: made on first use, then shared. */
export type CliContextSource = () => Promise<CliContext>;
