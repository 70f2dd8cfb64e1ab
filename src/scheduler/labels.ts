import { HearthError } from '../errors.ts';
import { cpuProblem, memoryProblem, shapeProblem, type ShapeBounds } from '../vm/bounds.ts';

/**
 * From a job's labels (GitHub `runs-on`, GitLab `tags`) to a VM shape. The one
 * parser for `hearth run` and the controller alike.
 *
 * - `hearth-4cpu-8gb`, `4cpu-8gb`, or the parts alone (`4cpu`, `8gb`, `512mb`) set vCPUs and memory;
 *   any prefix before them (`firecracker-2cpu-4gb`) is accepted.
 * - `hearth-image-NAME` picks an image; otherwise `debian`.
 * - The key-value form `hearth/cpu=4/ram=8/image=debian/pool=default` (ram in GiB, or with a unit:
 *   `ram=512mb`) sets any of these at once.
 * - `hearth/arch=arm64` and `hearth/kvm=true` (in the same key-value form) ask for a VM host
 *   with that label; with several hosts, placement only considers hosts that have them.
 * - `hearth=<unique>` pins a runner to one job (see `jobOwnership`); it does not change the shape.
 * - The usual GitHub-hosted names (`ubuntu-latest`, `ubuntu-24.04`, `linux`, `self-hosted`, `x64`)
 *   mean "a Linux VM": they are recognised and do not change the shape.
 * - Anything else is returned in `unrecognised`, so callers can decide (the
 *   controller will ignore jobs that are not for it).
 */
export interface VmShape {
  readonly cpus: number;
  readonly memoryMib: number;
  readonly image: string;
}

export interface ShapeDecision {
  readonly shape: VmShape;
  readonly unrecognised: readonly string[];
  /** From `hearth/pool=NAME`; `default` otherwise. */
  readonly pool: string;
  /** From `hearth=<unique>`: the label that binds a runner to exactly one job. */
  readonly pin?: string;
  /** Host labels the job needs (`arch=arm64`, `kvm=true`), from `hearth/arch=` and `hearth/kvm=`. */
  readonly requires: readonly string[];
}

export const DEFAULT_SHAPE: VmShape = { cpus: 2, memoryMib: 2048, image: 'debian' };

const GENERIC = /^(self-hosted|linux|x64|amd64|hearth|ubuntu(-latest|-\d\d\.\d\d)?|debian(-latest|-\d+)?)$/i;
const SIZE_PART = /^(\d+)(cpu|cpus|vcpu|gb|g|gib|mb|m|mib)$/i;

function applyPart(part: string, shape: { cpus: number; memoryMib: number }, label: string): boolean {
  const match = SIZE_PART.exec(part);
  if (!match) return false;
  const value = Number(match[1]);
  const unit = match[2]!.toLowerCase();
  if (unit.endsWith('cpu') || unit === 'cpus') {
    const problem = cpuProblem(value);
    if (problem) throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: `label "${label}"`, reason: problem, hint: 'for example hearth-2cpu-4gb' });
    shape.cpus = value;
  } else {
    const mib = unit.startsWith('g') ? value * 1024 : value;
    const problem = memoryProblem(mib);
    if (problem) throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: `label "${label}"`, reason: problem, hint: 'for example hearth-2cpu-4gb' });
    shape.memoryMib = mib;
  }
  return true;
}

function applyKeyValues(label: string, shape: { cpus: number; memoryMib: number; image: string }, requires: string[]): string {
  let pool = 'default';
  for (const part of label.split('/').slice(1)) {
    const eq = part.indexOf('=');
    const key = part.slice(0, eq).toLowerCase();
    const value = part.slice(eq + 1);
    const bad = (reason: string): HearthError =>
      new HearthError('HEARTH_ERR_BAD_OPTION', { option: `label "${label}"`, reason, hint: 'for example hearth/cpu=4/ram=8/image=debian/pool=default' });
    if (eq <= 0) throw bad(`"${part}" is not key=value`);
    if (key === 'cpu') {
      if (!applyPart(`${value}cpu`, shape, label)) throw bad(`cpu=${value} is not a number`);
    } else if (key === 'ram' || key === 'mem' || key === 'memory') {
      if (!applyPart(/^\d+$/.test(value) ? `${value}gb` : value, shape, label)) throw bad(`${key}=${value} is not a size`);
    } else if (key === 'image') shape.image = value.toLowerCase();
    else if (key === 'pool') pool = value;
    else if (key === 'arch') requires.push(`arch=${value.toLowerCase()}`);
    else if (key === 'kvm') {
      if (value !== 'true' && value !== 'false') throw bad(`kvm=${value} is not true or false`);
      requires.push(`kvm=${value}`);
    } else throw bad(`unknown key "${key}" (known: cpu, ram, image, pool, arch, kvm)`);
  }
  return pool;
}

export function shapeFromLabels(labels: readonly string[], defaults: VmShape = DEFAULT_SHAPE): ShapeDecision {
  const shape = { ...defaults };
  const unrecognised: string[] = [];
  let pool = 'default';
  let pin: string | undefined;
  const requires: string[] = [];
  for (const label of labels) {
    if (GENERIC.test(label)) continue;
    if (label.startsWith('hearth/')) {
      pool = applyKeyValues(label, shape, requires);
      continue;
    }
    if (label.startsWith('hearth=')) {
      pin = label;
      continue;
    }
    const image = /^hearth-image-([a-z0-9-]+)$/i.exec(label);
    if (image) {
      shape.image = image[1]!.toLowerCase();
      continue;
    }
    const parts = label.split('-');
    // Size parts must be at the end: hearth-2cpu-4gb, firecracker-4cpu-8gb, 4cpu.
    let sized = 0;
    for (let i = parts.length - 1; i >= 0 && SIZE_PART.test(parts[i]!); i--) sized++;
    if (sized === 0) {
      unrecognised.push(label);
      continue;
    }
    for (const part of parts.slice(parts.length - sized)) applyPart(part, shape, label);
  }
  return { shape, unrecognised, pool, requires, ...(pin ? { pin } : {}) };
}

/** A driver as admission sees it: its name and the sizes it boots (a VmDriver is one). */
export interface AdmittingDriver {
  readonly name: string;
  readonly capabilities: ShapeBounds;
}

/** Per-shape maxima for the controller (from config), and the drivers that could run the job. */
export interface ShapeLimits {
  readonly maxCpus: number;
  readonly maxMemoryMib: number;
  /** Images the controller may boot. */
  readonly images: readonly string[];
  /**
   * The drivers of the hosts that could take a job: a shape none of them can
   * boot is refused at once, with each one's reason. Absent or empty: not
   * checked here (placement still matches hosts).
   */
  readonly drivers?: readonly AdmittingDriver[];
}

/**
 * Why no driver in `drivers` can boot `shape` ("3 vCPUs: firecracker takes 1 or
 * an even number up to 32; use hearth-2cpu or hearth-4cpu"), or undefined when
 * one can (or none is given).
 */
export function admissionProblem(shape: Pick<VmShape, 'cpus' | 'memoryMib'>, drivers: readonly AdmittingDriver[] = []): string | undefined {
  const reasons: string[] = [];
  for (const driver of drivers) {
    const problem = shapeProblem(shape, driver.capabilities, driver.name);
    if (!problem) return undefined;
    const fix = problem.cpus ? problem.cpus.map((n) => `hearth-${n}cpu`) : problem.memoryMib !== undefined ? [`hearth-${problem.memoryMib}mb`] : [];
    reasons.push(`${problem.reason}${fix.length > 0 ? `; use ${fix.join(' or ')}` : ''}`);
  }
  return reasons.length > 0 ? [...new Set(reasons)].join('; ') : undefined;
}

export type Ownership =
  | { readonly owned: false; readonly reason: string }
  | { readonly owned: true; readonly shape: VmShape; readonly pool: string; readonly requires: readonly string[]; readonly pin?: string }
  | { readonly owned: true; readonly refused: string };

/**
 * Whether a forge job is Hearth's to run: it must carry `hearth`, `hearth=<unique>`,
 * a `hearth-…`/`hearth/…` shape, or FireRunner's `firecracker-NcpuMgb`. Other jobs
 * are never launched. An owned job whose shape breaks the limits, or that no
 * driver in `limits.drivers` can boot, is refused with the reason (to be
 * logged), not silently shrunk.
 */
export function jobOwnership(labels: readonly string[], limits: ShapeLimits, defaults: VmShape = DEFAULT_SHAPE): Ownership {
  const ours = labels.some(
    (l) => l === 'hearth' || l.startsWith('hearth=') || l.startsWith('hearth-') || l.startsWith('hearth/') || /^firecracker-\d+cpu(-\d+(gb|mb))?$/i.test(l),
  );
  if (!ours) return { owned: false, reason: `no hearth label among [${labels.join(', ')}]` };
  let decision: ShapeDecision;
  try {
    decision = shapeFromLabels(labels, defaults);
  } catch (error) {
    return { owned: true, refused: (error as Error).message };
  }
  const { shape } = decision;
  if (shape.cpus > limits.maxCpus) return { owned: true, refused: `${shape.cpus} vCPUs exceeds the limit of ${limits.maxCpus}` };
  if (shape.memoryMib > limits.maxMemoryMib) return { owned: true, refused: `${shape.memoryMib} MiB exceeds the limit of ${limits.maxMemoryMib} MiB` };
  if (!limits.images.includes(shape.image)) return { owned: true, refused: `image "${shape.image}" is not one of ${limits.images.join(', ')}` };
  const unbootable = admissionProblem(shape, limits.drivers);
  if (unbootable) return { owned: true, refused: unbootable };
  return { owned: true, shape, pool: decision.pool, requires: decision.requires, ...(decision.pin ? { pin: decision.pin } : {}) };
}
