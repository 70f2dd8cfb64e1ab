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
