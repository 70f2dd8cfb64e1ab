import { HearthError } from '../errors.ts';
import { isPublishedName } from '../image/store.ts';
import { VM_BOUNDS } from '../vm/bounds.ts';

/**
 * A pool of VMs made ready before jobs arrive. `booted`: VMs cold-booted and
 * idling. `snapshot`: one template VM booted once and snapshotted; clones are
 * restored from it (each with a fresh identity) and kept restored-but-idle.
 */
export interface PoolConfig {
  readonly name: string;
  /** A job goes to this pool when it carries `hearth/pool=NAME`, or all of these labels. */
  readonly labels: readonly string[];
  readonly cpus: number;
  readonly memoryMib: number;
  readonly image: string;
  readonly mode: 'booted' | 'snapshot';
  readonly minIdle: number;
  readonly maxSize: number;
  /** Idle VMs older than this are recycled: a job never gets a stale guest clock or entropy pool. */
  readonly maxIdleAgeSeconds: number;
  /** snapshot mode: the template is rebuilt this often even when the image did not change. */
  readonly templateMaxAgeSeconds: number;
  /** Let minIdle follow demand (an EWMA of arrivals) between minIdle and maxIdle. */
  readonly autoscale: boolean;
  readonly maxIdle: number;
  /** The EWMA's time constant. */
  readonly demandWindowSeconds: number;
}

const DEFAULTS: Omit<PoolConfig, 'name'> = {
  labels: [],
  cpus: 2,
  memoryMib: 2048,
  image: 'debian',
  mode: 'booted',
  minIdle: 1,
  maxSize: 4,
  maxIdleAgeSeconds: 3600,
  templateMaxAgeSeconds: 86_400,
  autoscale: false,
  maxIdle: 4,
  demandWindowSeconds: 3600,
};

const KEYS = Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[];

function poolError(source: string, key: string, reason: string, hint: string): HearthError {
  return new HearthError('HEARTH_ERR_CONFIG', { source, key, reason, hint });
}

function integer(source: string, key: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw poolError(source, key, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`, `set ${key} to a whole number from ${min} to ${max}`);
  }
  return value;
}

/**
 * `pools:` from the YAML file (a mapping of name to settings), or HEARTH_POOLS
 * holding the same mapping as JSON, which replaces the file's pools. Every
 * problem names the pool and key.
 */
export function parsePools(raw: unknown, source: string): PoolConfig[] {
  if (raw === null || raw === undefined) return [];
  if (typeof raw !== 'object' || Array.isArray(raw)) throw poolError(source, 'pools', 'must be a mapping of pool name to settings', 'write pools: then one indented block per pool, e.g. pools: { fast: { mode: snapshot, minIdle: 2 } }');
  const pools: PoolConfig[] = [];
  for (const [name, settings] of Object.entries(raw as Record<string, unknown>)) {
    const at = `pools.${name}`;
    if (!/^[a-z][a-z0-9-]{0,30}$/.test(name)) throw poolError(source, at, 'is not a pool name', 'name pools with lower-case letters, digits and -, e.g. pools.fast');
    const given = (settings ?? {}) as Record<string, unknown>;
    if (typeof given !== 'object' || Array.isArray(given)) throw poolError(source, at, 'must be a mapping of settings', `write ${at}: with indented key: value lines`);
    for (const key of Object.keys(given)) {
      if (!(KEYS as string[]).includes(key)) throw poolError(source, `${at}.${key}`, 'is not a known pool setting', `valid settings: ${KEYS.join(', ')}`);
    }
    const value = <K extends keyof typeof DEFAULTS>(key: K): unknown => (key in given ? given[key] : DEFAULTS[key]);
    const labels = value('labels');
    if (!Array.isArray(labels) || !labels.every((l) => typeof l === 'string' && l.length > 0)) throw poolError(source, `${at}.labels`, 'must be a list of labels', `e.g. ${at}.labels: [hearth, fast]`);
    const mode = value('mode');
    if (mode !== 'booted' && mode !== 'snapshot') throw poolError(source, `${at}.mode`, `must be booted or snapshot, got ${JSON.stringify(mode)}`, `set ${at}.mode to snapshot (restored clones, fastest) or booted (pre-booted VMs)`);
    const image = value('image');
    if (typeof image !== 'string' || !isPublishedName(image)) throw poolError(source, `${at}.image`, `is not an image name, got ${JSON.stringify(image)}`, `set ${at}.image to a built image, e.g. debian`);
    const autoscale = value('autoscale');
    if (typeof autoscale !== 'boolean') throw poolError(source, `${at}.autoscale`, 'must be true or false', `set ${at}.autoscale to true or false`);
    const pool: PoolConfig = {
      name,
      labels: labels as string[],
      cpus: integer(source, `${at}.cpus`, value('cpus'), VM_BOUNDS.cpus.min, VM_BOUNDS.cpus.max),
      memoryMib: integer(source, `${at}.memoryMib`, value('memoryMib'), VM_BOUNDS.memoryMib.min, VM_BOUNDS.memoryMib.max),
      image,
      mode,
      minIdle: integer(source, `${at}.minIdle`, value('minIdle'), 0, 256),
      maxSize: integer(source, `${at}.maxSize`, value('maxSize'), 1, 1024),
      maxIdleAgeSeconds: integer(source, `${at}.maxIdleAgeSeconds`, value('maxIdleAgeSeconds'), 10, 30 * 86_400),
      templateMaxAgeSeconds: integer(source, `${at}.templateMaxAgeSeconds`, value('templateMaxAgeSeconds'), 60, 365 * 86_400),
      autoscale,
      maxIdle: integer(source, `${at}.maxIdle`, value('maxIdle'), 0, 256),
      demandWindowSeconds: integer(source, `${at}.demandWindowSeconds`, value('demandWindowSeconds'), 10, 7 * 86_400),
    };
    if (pool.minIdle > pool.maxSize) throw poolError(source, `${at}.minIdle`, `is ${pool.minIdle}, more than maxSize ${pool.maxSize}`, `lower ${at}.minIdle or raise ${at}.maxSize`);
    if (pool.autoscale && pool.maxIdle < pool.minIdle) throw poolError(source, `${at}.maxIdle`, `is ${pool.maxIdle}, less than minIdle ${pool.minIdle}`, `with autoscale, set ${at}.maxIdle to at least minIdle`);
    pools.push(pool);
  }
  return pools;
}

/** The pool a job goes to: named by `hearth/pool=NAME`, else the first whose labels the job all carries. */
export function poolForJob(pools: readonly PoolConfig[], labels: readonly string[], namedPool: string): PoolConfig | undefined {
  const named = pools.find((p) => p.name === namedPool);
  if (named) return named;
  const have = new Set(labels.map((l) => l.toLowerCase()));
  return pools.find((p) => p.labels.length > 0 && p.labels.every((l) => have.has(l.toLowerCase())));
}
