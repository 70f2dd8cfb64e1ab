import { cpus, totalmem } from 'node:os';

export interface Capacity {
  readonly cpus: number;
  readonly memoryMib: number;
}

/** Host capacity for concurrent VMs: 2 vCPUs per host core (guests idle a lot), 75 % of RAM. */
export function hostCapacity(): Capacity {
  return { cpus: cpus().length * 2, memoryMib: Math.floor((totalmem() / 1024 ** 2) * 0.75) };
}

/** Whether one more VM of `shape` fits beside `used`; the first VM always fits, so one huge job still runs alone. */
export function fits(used: Capacity & { count: number }, shape: Capacity, capacity: Capacity): boolean {
  return used.count === 0 || (used.cpus + shape.cpus <= capacity.cpus && used.memoryMib + shape.memoryMib <= capacity.memoryMib);
}
