import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parsePools, poolForJob } from '../../src/config/pools-config.ts';
import { loadServeConfig, redactedConfig } from '../../src/config/serve-config.ts';
import { isHearthError } from '../../src/errors.ts';

const paths = { cache: '/tmp/hearth-cache', data: '/tmp/hearth-data', runtime: '/tmp/hearth-run' };

test('pools from YAML get defaults, and print back as a mapping', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-pools-'));
  try {
    const file = join(dir, 'hearth.yaml');
    await writeFile(
      file,
      'pools:\n  fast:\n    labels: [hearth-fast]\n    mode: snapshot\n    minIdle: 2\n    image: minimal\n  big:\n    cpus: 8\n    memoryMib: 16384\n',
    );
    const { config } = loadServeConfig({ path: file, env: {}, paths });
    assert.deepEqual(
      config.pools.map((p) => [p.name, p.mode, p.minIdle, p.cpus]),
      [
        ['fast', 'snapshot', 2, 2],
        ['big', 'booted', 1, 8],
      ],
    );
    assert.deepEqual(Object.keys((redactedConfig(config) as { pools: object }).pools), ['fast', 'big']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('HEARTH_POOLS (JSON) replaces the pools; bad JSON names the fix', () => {
  const { config, overrides } = loadServeConfig({ env: { HEARTH_POOLS: '{"warm":{"minIdle":3,"maxSize":5}}' }, paths });
  assert.equal(config.pools[0]?.name, 'warm');
  assert.equal(config.pools[0]?.minIdle, 3);
  assert.ok(overrides.includes('HEARTH_POOLS'));
  assert.throws(
    () => loadServeConfig({ env: { HEARTH_POOLS: '{warm' }, paths }),
    (e) => isHearthError(e, 'HEARTH_ERR_CONFIG') && /JSON/.test(e.fix),
  );
});

test('bad pool settings name the pool, the key and the fix', () => {
  const fails = (raw: unknown, key: RegExp) =>
    assert.throws(
      () => parsePools(raw, 'test'),
      (e) => isHearthError(e, 'HEARTH_ERR_CONFIG') && key.test(e.message),
    );
  fails({ fast: { minidle: 2 } }, /pools\.fast\.minidle is not a known pool setting/);
  fails({ fast: { minIdle: 5, maxSize: 2 } }, /pools\.fast\.minIdle is 5, more than maxSize 2/);
  fails({ fast: { mode: 'warm' } }, /pools\.fast\.mode must be one of booted, snapshot/);
  fails({ fast: { cpus: 0 } }, /pools\.fast\.cpus is 0, outside 1 to 64/);
  fails({ fast: { labels: 'hearth' } }, /pools\.fast\.labels must be a list/);
  fails({ Fast: {} }, /pools\.Fast is not a pool name/);
  fails({ fast: { autoscale: true, minIdle: 3, maxIdle: 1 } }, /maxIdle is 1, less than minIdle 3/);
  fails([1, 2], /pools must be a mapping/);
});

test('a job goes to the pool its hearth/pool label names, else the first whose labels it carries', () => {
  const pools = parsePools({ fast: { labels: ['hearth-fast'] }, gpu: { labels: ['hearth', 'gpu'] }, plain: {} }, 'test');
  assert.equal(poolForJob(pools, ['self-hosted', 'hearth-fast'], 'default')?.name, 'fast');
  assert.equal(poolForJob(pools, ['hearth', 'GPU'], 'default')?.name, 'gpu');
  assert.equal(poolForJob(pools, ['hearth'], 'plain')?.name, 'plain');
  assert.equal(poolForJob(pools, ['hearth'], 'default'), undefined, 'no labels configured: only hearth/pool=NAME routes there');
});
