import type { DriverCapabilities } from '../vm/driver.ts';
import type { AdmittingDriver } from './labels.ts';

/** A registered host as admission reads it from the ledger. */
export interface RegisteredHost {
  readonly id: string;
  readonly drivers: readonly string[];
  /** Null for a host registered before hosts declared them. */
  readonly capabilities: DriverCapabilities | null;
}

/**
 * The drivers a job's shape is checked against at admission, before anything
 * is registered at a forge: this host's own driver when it runs VMs, and the
 * drivers the live registered hosts declared (scale-out). A shape none of them
 * can boot is refused at once (jobOwnership), not placed and failed at boot.
 */
export class DriverAdmission {
  /** Worked out when the hosts change, not on every admission (each webhook reads it). */
  #drivers: readonly AdmittingDriver[];

  constructor(private readonly local: AdmittingDriver | undefined) {
    this.#drivers = local ? [local] : [];
  }

  /** The drivers that could take a job now; empty means none is known yet and admission does not check. */
  get drivers(): readonly AdmittingDriver[] {
    return this.#drivers;
  }

  /** Takes the declared capabilities of the live hosts (a host without them is skipped: placement still matches it). */
  update(hosts: readonly RegisteredHost[]): void {
    const drivers: AdmittingDriver[] = this.local ? [this.local] : [];
    for (const host of hosts) {
      if (host.capabilities) drivers.push({ name: host.drivers[0] ?? 'unknown', capabilities: host.capabilities });
    }
    this.#drivers = uniqueDrivers(drivers);
  }
}

/** One entry per distinct driver and capabilities, so a reason is given once for many like hosts. */
function uniqueDrivers(drivers: readonly AdmittingDriver[]): AdmittingDriver[] {
  const seen = new Map<string, AdmittingDriver>();
  for (const driver of drivers) seen.set(`${driver.name} ${JSON.stringify(driver.capabilities.cpus)} ${JSON.stringify(driver.capabilities.memoryMib)}`, driver);
  return [...seen.values()];
}
