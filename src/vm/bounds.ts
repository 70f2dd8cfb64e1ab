/**
 * The one table of VM size bounds. Every check of a vCPU count or a memory size
 * (labels, configuration, the CLI, each driver, admission) reads it from here,
 * so a limit changes in one place and every message names the same range.
 *
 * VM_BOUNDS is what any Hearth VM may be; a driver narrows it in its
 * capabilities (Firecracker: 1 or an even count up to 32).
 */

/** vCPU counts a VM may have: min..max, and with `evenAbove1` only 1 or an even count (Firecracker). */
export interface CpuCounts {
  readonly min: number;
  readonly max: number;
  readonly evenAbove1?: boolean;
}

/** A memory size range in MiB, both ends included. */
export interface MemoryRange {
  readonly min: number;
  readonly max: number;
}

/** The sizes a VM may have: VM_BOUNDS, or a driver's narrower capabilities. */
export interface ShapeBounds {
  readonly cpus: CpuCounts;
  readonly memoryMib: MemoryRange;
}

export const VM_BOUNDS: ShapeBounds = {
  cpus: { min: 1, max: 64 },
  memoryMib: { min: 128, max: 1_048_576 },
};

/** The vCPU counts a rule allows, in words: "1 to 64", "1 or an even number up to 32". */
export function describeCpus(rule: CpuCounts): string {
  if (rule.evenAbove1) return rule.max <= 1 ? '1' : `1 or an even number up to ${rule.max}`;
  return `${rule.min} to ${rule.max}`;
}

export function describeMemory(range: MemoryRange): string {
  return `${range.min} to ${range.max} MiB`;
}

export function cpusAllowed(cpus: number, rule: CpuCounts = VM_BOUNDS.cpus): boolean {
  if (!Number.isInteger(cpus) || cpus < rule.min || cpus > rule.max) return false;
  return !rule.evenAbove1 || cpus === 1 || cpus % 2 === 0;
}

export function memoryAllowed(memoryMib: number, range: MemoryRange = VM_BOUNDS.memoryMib): boolean {
  return Number.isInteger(memoryMib) && memoryMib >= range.min && memoryMib <= range.max;
}

/** The allowed counts next to `cpus` (below and above), for a hint: 3 under Firecracker gives [2, 4]. */
export function nearestCpus(cpus: number, rule: CpuCounts = VM_BOUNDS.cpus): number[] {
  if (cpusAllowed(cpus, rule)) return [cpus];
  const below: number[] = [];
  const above: number[] = [];
  for (let n = Math.min(Math.floor(cpus), rule.max); n >= rule.min && below.length === 0; n--) if (cpusAllowed(n, rule)) below.push(n);
  for (let n = Math.max(Math.ceil(cpus), rule.min); n <= rule.max && above.length === 0; n++) if (cpusAllowed(n, rule)) above.push(n);
  return [...below, ...above];
}

/** Why `cpus` is not allowed ("3 vCPUs: firecracker takes 1 or an even number up to 32"), or undefined when it is. */
export function cpuProblem(cpus: number, rule: CpuCounts = VM_BOUNDS.cpus, who = 'Hearth'): string | undefined {
  if (cpusAllowed(cpus, rule)) return undefined;
  return `${cpus} vCPUs: ${who} takes ${describeCpus(rule)}`;
}

/** Why `memoryMib` is not allowed ("64 MiB of memory is below 128: Hearth takes 128 to 1048576 MiB"), or undefined when it is. */
export function memoryProblem(memoryMib: number, range: MemoryRange = VM_BOUNDS.memoryMib, who = 'Hearth'): string | undefined {
  if (memoryAllowed(memoryMib, range)) return undefined;
  const side = !Number.isInteger(memoryMib) ? 'is not a whole number' : memoryMib < range.min ? `is below ${range.min}` : `is above ${range.max}`;
  return `${memoryMib} MiB of memory ${side}: ${who} takes ${describeMemory(range)}`;
}

/** The nearest allowed memory size, for a hint. */
export function nearestMemory(memoryMib: number, range: MemoryRange = VM_BOUNDS.memoryMib): number {
  return Math.min(range.max, Math.max(range.min, Math.round(memoryMib)));
}

/** What is wrong with a shape under `bounds`, with the nearest sizes that would do; undefined when it fits. */
export interface ShapeProblem {
  readonly reason: string;
  /** Allowed vCPU counts next to the one asked for (when the count is the problem). */
  readonly cpus?: readonly number[];
  /** The nearest allowed memory size (when memory is the problem). */
  readonly memoryMib?: number;
}

export function shapeProblem(
  shape: { readonly cpus: number; readonly memoryMib: number },
  bounds: ShapeBounds = VM_BOUNDS,
  who = 'Hearth',
): ShapeProblem | undefined {
  const cpus = cpuProblem(shape.cpus, bounds.cpus, who);
  if (cpus) return { reason: cpus, cpus: nearestCpus(shape.cpus, bounds.cpus) };
  const memory = memoryProblem(shape.memoryMib, bounds.memoryMib, who);
  if (memory) return { reason: memory, memoryMib: nearestMemory(shape.memoryMib, bounds.memoryMib) };
  return undefined;
}
