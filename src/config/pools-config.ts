import { accept, configError, defaultOf } from './engine.ts';
import { POOL_SETTINGS, type PoolSettingKey } from './schema.ts';

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

const KEYS = Object.keys(POOL_SETTINGS) as PoolSettingKey[];

/**
 * `pools:` from the YAML file (a mapping of name to settings), or HEARTH_POOLS
 * holding the same mapping as JSON, which replaces the file's pools. Each
 * setting is declared in POOL_SETTINGS (src/config/schema.ts) and checked by the
 * same engine as every other; every problem names the pool and key.
 */
export function parsePools(raw: unknown, source: string): PoolConfig[] {
  if (raw === null || raw === undefined) return [];
  if (typeof raw !== 'object' || Array.isArray(raw))
    throw configError(
      source,
      'pools',
      'must be a mapping of pool name to settings',
      'write pools: then one indented block per pool, e.g. pools: { fast: { mode: snapshot, minIdle: 2 } }',
    );
  const pools: PoolConfig[] = [];
  for (const [name, settings] of Object.entries(raw as Record<string, unknown>)) {
    const at = `pools.${name}`;
    if (!/^[a-z][a-z0-9-]{0,30}$/.test(name))
      throw configError(source, at, 'is not a pool name', 'name pools with lower-case letters, digits and -, e.g. pools.fast');
    const given = (settings ?? {}) as Record<string, unknown>;
    if (typeof given !== 'object' || Array.isArray(given))
      throw configError(source, at, 'must be a mapping of settings', `write ${at}: with indented key: value lines`);
    for (const key of Object.keys(given)) {
      if (!(KEYS as string[]).includes(key)) throw configError(source, `${at}.${key}`, 'is not a known pool setting', `valid settings: ${KEYS.join(', ')}`);
    }
    const values: Record<string, unknown> = { name };
    for (const key of KEYS) {
      const setting = POOL_SETTINGS[key];
      if (!(key in given)) {
        values[key] = defaultOf(setting, { env: {}, dataDir: '', hostname: '' });
        continue;
      }
      const result = accept(setting, given[key]);
      if ('reason' in result) throw configError(source, `${at}.${key}`, result.reason, `set ${at}.${key} to ${setting.expect}`);
      values[key] = result.value;
    }
    // POOL_SETTINGS names every setting of PoolConfig (its type says so) and each value passed its setting.
    const pool = values as unknown as PoolConfig;
    if (pool.minIdle > pool.maxSize)
      throw configError(source, `${at}.minIdle`, `is ${pool.minIdle}, more than maxSize ${pool.maxSize}`, `lower ${at}.minIdle or raise ${at}.maxSize`);
    if (pool.autoscale && pool.maxIdle < pool.minIdle)
      throw configError(
        source,
        `${at}.maxIdle`,
        `is ${pool.maxIdle}, less than minIdle ${pool.minIdle}`,
        `with autoscale, set ${at}.maxIdle to at least minIdle`,
      );
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
