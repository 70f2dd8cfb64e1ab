import { resolvePaths, type HearthPaths } from '../config/paths.ts';
import { createLogger, type Logger } from '../log.ts';
import { QemuDriver } from '../vm/qemu/driver.ts';

/** What every command needs, made once per CLI invocation. */
export interface CliContext {
  readonly paths: HearthPaths;
  readonly logger: Logger;
  readonly driver: QemuDriver;
}

export function createCliContext(env: NodeJS.ProcessEnv = process.env): CliContext {
  const paths = resolvePaths(env);
  const logger = createLogger();
  const driver = new QemuDriver({ paths, logger, accel: env.HEARTH_ACCEL, ...(env.HEARTH_QEMU ? { qemuBinary: env.HEARTH_QEMU } : {}) });
  return { paths, logger, driver };
}
