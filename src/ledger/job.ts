import type { ForgeKind } from '../forge/forge.ts';
import { DEFAULT_SHAPE, shapeFromLabels, type VmShape } from '../scheduler/labels.ts';
import type { DriverCapabilities } from '../vm/driver.ts';
import type { LedgerSchema } from './schema.ts';

/**
 * What a job needs, computed once at ingest from its labels (and the pool they
 * route it to) and stored with it: placement and the host read this, never
 * the labels again.
 */
export interface JobShape extends VmShape {
  /** The warm or snapshot pool that serves the job (its shape is then the pool's), or null. */
  readonly pool: string | null;
  /** Host labels the job needs (`arch=arm64`, `kvm=true`). */
  readonly requires: readonly string[];
}

export type JobRow = LedgerSchema['jobs'];

/** A job as the ledger hands it out: labels as a list, the forge as its kind, the shape as one object. */
export interface Job extends Omit<JobRow, 'forge' | 'labels' | 'shape'> {
  readonly forge: ForgeKind;
  readonly labels: readonly string[];
  readonly shape: JobShape;
}

export type HostRow = LedgerSchema['hosts'];

/** A VM host as the ledger hands it out: its lists as lists. */
export interface Host extends Omit<HostRow, 'drivers' | 'images' | 'labels' | 'capabilities'> {
  readonly drivers: readonly string[];
  readonly images: readonly string[];
  readonly labels: readonly string[];
  /** What its driver can boot, for admission; null for a host registered before hosts declared it. */
  readonly capabilities: DriverCapabilities | null;
}

function stringList(text: string, what: string): string[] {
  const value: unknown = JSON.parse(text);
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new Error(`ledger: ${what} is not a list of strings: ${text.slice(0, 200)}`);
  return value;
}

function forgeKind(value: string, id: string): ForgeKind {
  if (value === 'github' || value === 'gitlab') return value;
  throw new Error(`ledger: job ${id} names an unknown forge "${value}"`);
}

function decodeShape(text: string | null, id: string): JobShape {
  if (text === null) throw new Error(`ledger: job ${id} has no stored shape (migration 0005 computes one for every job)`);
  const value = JSON.parse(text) as Partial<JobShape>;
  if (typeof value.cpus !== 'number' || typeof value.memoryMib !== 'number' || typeof value.image !== 'string')
    throw new Error(`ledger: job ${id} has a malformed shape: ${text.slice(0, 200)}`);
  return {
    cpus: value.cpus,
    memoryMib: value.memoryMib,
    image: value.image,
    pool: typeof value.pool === 'string' ? value.pool : null,
    requires: Array.isArray(value.requires) ? value.requires.filter((r): r is string => typeof r === 'string') : [],
  };
}

export function encodeShape(shape: JobShape): string {
  return JSON.stringify({ cpus: shape.cpus, memoryMib: shape.memoryMib, image: shape.image, pool: shape.pool, requires: shape.requires });
}

/** The one place a stored job row becomes a typed job. */
export function toJob(row: JobRow): Job {
  const { forge, labels, shape, ...rest } = row;
  return { ...rest, forge: forgeKind(forge, row.id), labels: stringList(labels, `labels of job ${row.id}`), shape: decodeShape(shape, row.id) };
}

function decodeCapabilities(text: string | null, id: string): DriverCapabilities | null {
  if (text === null) return null;
  const value: unknown = JSON.parse(text);
  if (value === null || typeof value !== 'object' || !('cpus' in value) || !('memoryMib' in value))
    throw new Error(`ledger: host ${id} has malformed capabilities: ${text.slice(0, 200)}`);
  return value as DriverCapabilities;
}

export function toHost(row: HostRow): Host {
  return {
    ...row,
    capabilities: decodeCapabilities(row.capabilities, row.id),
    drivers: stringList(row.drivers, `drivers of host ${row.id}`),
    images: stringList(row.images, `images of host ${row.id}`),
    labels: stringList(row.labels, `labels of host ${row.id}`),
  };
}

/**
 * The shape of a job recorded before shapes were stored (migration 0005): from
 * its labels with the default shape; labels that no longer parse get the default.
 */
export function legacyShape(labelsJson: string): JobShape {
  try {
    const decision = shapeFromLabels(stringList(labelsJson, 'labels'));
    return { ...decision.shape, pool: decision.pool === 'default' ? null : decision.pool, requires: decision.requires };
  } catch {
    // Labels a newer parser refuses: the job was accepted then, so it keeps the default shape.
    return { ...DEFAULT_SHAPE, pool: null, requires: [] };
  }
}
