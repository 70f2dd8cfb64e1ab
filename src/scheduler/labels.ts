import { HearthError } from '../errors.ts';

/**
 * From a job's labels (GitHub `runs-on`, GitLab `tags`) to a VM shape. The one
 * parser for `hearth run` and the controller alike.
 *
 * - `hearth-4cpu-8gb`, `4cpu-8gb`, or the parts alone (`4cpu`, `8gb`, `512mb`) set vCPUs and memory;
 *   any prefix before them (`firecracker-2cpu-4gb`) is accepted.
 * - `hearth-image-NAME` picks an image; otherwise `debian`.
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
    if (value < 1 || value > 64) throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: `label "${label}"`, reason: `${value} vCPUs is outside 1-64`, hint: 'for example hearth-2cpu-4gb' });
    shape.cpus = value;
  } else {
    const mib = unit.startsWith('g') ? value * 1024 : value;
    if (mib < 128) throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: `label "${label}"`, reason: `${mib} MiB of memory is below 128`, hint: 'for example hearth-2cpu-4gb' });
    shape.memoryMib = mib;
  }
  return true;
}

export function shapeFromLabels(labels: readonly string[], defaults: VmShape = DEFAULT_SHAPE): ShapeDecision {
  const shape = { ...defaults };
  const unrecognised: string[] = [];
  for (const label of labels) {
    if (GENERIC.test(label)) continue;
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
  return { shape, unrecognised };
}
