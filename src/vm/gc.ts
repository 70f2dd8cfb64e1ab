import type { Logger } from '../log.ts';
import type { VmDriver, VmRecord } from './driver.ts';

/**
 * Closes the gap between the registry and the world: every VM whose owning
 * process is gone is destroyed (its VMM killed if still alive, its runtime
 * directory removed). Safe to run at any time and from any process.
 */
export async function reconcileLeakedVms(driver: VmDriver, options: { all: boolean }): Promise<VmRecord[]> {
  const doomed = (await driver.list()).filter((r) => options.all || r.leaked);
  for (const record of doomed) await driver.destroy(record.id);
  return doomed;
}

/**
 * Destroys `vmId` (destroy is idempotent: a VM already gone is no error) and
 * logs a failure with the VM id, the reason it was being destroyed and the
 * logger's context (the job, the pool), instead of dropping it. True when it is gone.
 */
export async function destroyQuietly(driver: Pick<VmDriver, 'destroy'>, vmId: string, why: string, logger: Logger): Promise<boolean> {
  try {
    await driver.destroy(vmId);
    return true;
  } catch (error) {
    logger.warn({ vmId, why, err: error }, `destroying VM ${vmId} (${why}) failed; the orphan sweep destroys it if it lingers`);
    return false;
  }
}
