import type { VmShape } from './labels.ts';

/** A VM host as placement sees it: what it has, what is committed on it, what it offers. */
export interface HostSlot {
  readonly id: string;
  readonly cpus: number;
  readonly memoryMib: number;
  /** Jobs placed on it and not yet torn down, plus what its pools hold. */
  usedCpus: number;
  usedMemoryMib: number;
  readonly images: readonly string[];
  /** key=value labels: arch=x86_64, kvm=true, driver=qemu. */
  readonly labels: readonly string[];
}

export interface PlacementRequest {
  readonly id: string;
  readonly shape: VmShape;
  /** Host labels the job needs (from `hearth/arch=`, `hearth/kvm=`). */
  readonly requires: readonly string[];
}

/** binpack: fill the fullest host that fits (keeps whole hosts free for big jobs); spread: the emptiest. */
export type PlacementStrategy = 'binpack' | 'spread';

export type PlacementDecision = { readonly host: string } | { readonly wait: string };

function free(host: HostSlot): { cpus: number; memoryMib: number } {
  return { cpus: host.cpus - host.usedCpus, memoryMib: host.memoryMib - host.usedMemoryMib };
}

/** The share of a host still free after a VM of `shape` lands on it: the lower of CPU and memory. */
function headroomAfter(host: HostSlot, shape: VmShape): number {
  const f = free(host);
  return Math.min((f.cpus - shape.cpus) / host.cpus, (f.memoryMib - shape.memoryMib) / host.memoryMib);
}

/**
 * Places jobs, oldest first, onto hosts by CPU and memory, counting what each
 * placement takes before the next. A job no up host could ever take (labels,
 * image) is told why; one that only needs room waits for the next pass.
 * `hosts` is updated in place.
 */
export function placeJobs(jobs: readonly PlacementRequest[], hosts: HostSlot[], strategy: PlacementStrategy): Map<string, PlacementDecision> {
  const decisions = new Map<string, PlacementDecision>();
  for (const job of jobs) {
    const eligible = hosts.filter(
      (h) =>
        h.images.includes(job.shape.image) &&
        job.requires.every((label) => h.labels.includes(label)) &&
        h.cpus >= job.shape.cpus &&
        h.memoryMib >= job.shape.memoryMib,
    );
    if (eligible.length === 0) {
      const needs = [`image ${job.shape.image}`, `${job.shape.cpus} vCPU`, `${job.shape.memoryMib} MiB`, ...job.requires].join(', ');
      decisions.set(job.id, { wait: hosts.length === 0 ? 'no VM host is up' : `no up host offers ${needs}` });
      continue;
    }
    const fitting = eligible.filter((h) => {
      const f = free(h);
      return f.cpus >= job.shape.cpus && f.memoryMib >= job.shape.memoryMib;
    });
    if (fitting.length === 0) {
      decisions.set(job.id, { wait: 'every eligible host is full' });
      continue;
    }
    fitting.sort((a, b) => {
      const diff = headroomAfter(a, job.shape) - headroomAfter(b, job.shape);
      return (strategy === 'binpack' ? diff : -diff) || a.id.localeCompare(b.id);
    });
    const chosen = fitting[0]!;
    chosen.usedCpus += job.shape.cpus;
    chosen.usedMemoryMib += job.shape.memoryMib;
    decisions.set(job.id, { host: chosen.id });
  }
  return decisions;
}
