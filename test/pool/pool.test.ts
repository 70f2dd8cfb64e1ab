import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { PoolConfig } from '../../src/config/pools-config.ts';
import { addRunnersToImage } from '../../src/image/runner-payload.ts';
import { loadImage } from '../../src/image/store.ts';
import { createLogger } from '../../src/log.ts';
import { VmPool } from '../../src/pool/pool.ts';
import type { Vm } from '../../src/vm/driver.ts';
import { captureOutput, createTestHost, type TestHost } from '../support/env.ts';
import { waitFor } from '../support/wait.ts';

const BASE: PoolConfig = {
  name: 'p',
  labels: [],
  cpus: 1,
  memoryMib: 256,
  image: 'minimal',
  mode: 'snapshot',
  minIdle: 2,
  maxSize: 4,
  maxIdleAgeSeconds: 3600,
  templateMaxAgeSeconds: 86_400,
  autoscale: false,
  maxIdle: 2,
  demandWindowSeconds: 3600,
};

async function waitIdle(pool: VmPool, count: number): Promise<void> {
  await waitFor(
    async () => {
      if (pool.status().idle >= count) return true;
      await pool.maintain();
      return pool.status().idle >= count;
    },
    { what: `the pool to reach ${count} idle`, timeout: 90_000, interval: 100, detail: () => JSON.stringify(pool.status()) },
  );
}

async function run(host: TestHost, vm: Vm, script: string): Promise<string> {
  const out = captureOutput();
  const result = await host.driver.exec(vm.id, { argv: ['sh', '-c', script] }, out.sink);
  assert.equal(result.exitCode, 0, out.text().stderr);
  return out.text().stdout;
}

describe('VM pools with real VMs', () => {
  let host: TestHost;
  let work: string;
  before(async () => {
    host = await createTestHost();
    work = await mkdtemp(join(tmpdir(), 'hearth-pool-'));
  });
  after(async () => {
    await host.cleanup();
    await rm(work, { recursive: true, force: true });
  });
  const newPool = (config: Partial<PoolConfig>): VmPool =>
    new VmPool({ ...BASE, ...config }, host.driver, host.paths.cache, host.paths.data, false, createLogger({ level: 'silent' }), () => true);

  test('snapshot pool: a hit is an idle restored clone; two clones differ in random bytes, hostname and machine-id; the pool refills', async () => {
    const pool = newPool({ name: 'clones', maxSize: 6 });
    await waitIdle(pool, 2);
    assert.ok(pool.status().template, 'a template snapshot was built');
    const a = pool.take();
    const b = pool.take();
    assert.ok(a && b, 'two hits');
    assert.equal(a.origin.kind, 'snapshot');
    const probe =
      'head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; hostname; cat /etc/machine-id 2>/dev/null || cat /proc/sys/kernel/random/boot_id';
    const [outA, outB] = [await run(host, a, probe), await run(host, b, probe)];
    const [randomA, hostA] = outA.split('\n');
    const [randomB, hostB] = outB.split('\n');
    assert.match(randomA ?? '', /^[0-9a-f]{32}$/);
    assert.notEqual(randomA, randomB, 'clones of one snapshot must not share RNG output');
    assert.notEqual(hostA, hostB);
    assert.equal(pool.status().busy, 2);
    assert.equal(pool.take(), undefined, 'a miss when none is idle');
    assert.deepEqual({ hits: pool.status().hits, misses: pool.status().misses }, { hits: 2, misses: 1 });
    const fallback = await pool.startForJob();
    assert.equal(fallback.origin.kind, 'snapshot', 'a miss restores from the template instead of booting');
    await waitIdle(pool, 2);
    for (const vm of [a, b, fallback]) await host.driver.destroy(vm.id);
    await pool.maintain();
    assert.equal(pool.status().busy, 0);
    await pool.close();
    assert.equal((await host.driver.list()).length, 0, 'close destroys the idle VMs');
  });

  test('booted pool: pre-booted VMs are handed out and never reused; idle VMs past their age are recycled', async () => {
    const pool = newPool({ name: 'booted', mode: 'booted', minIdle: 1, maxIdleAgeSeconds: 10 });
    await waitIdle(pool, 1);
    const first = pool.status();
    assert.equal(first.template, null);
    await pool.maintain(Date.now() + 11_000); // as if 11 s had passed: the idle VM is too old
    const vm = pool.take();
    assert.equal(vm, undefined, 'the old idle VM was recycled, not handed out');
    await waitIdle(pool, 1);
    const fresh = pool.take();
    assert.ok(fresh);
    assert.equal(fresh.origin.kind, 'cold');
    await host.driver.destroy(fresh.id);
    await pool.close();
  });

  test('an idle VM whose VMM died fails its health check: destroyed and replaced, never handed out', async () => {
    const pool = newPool({ name: 'health', mode: 'booted', minIdle: 1 });
    await waitIdle(pool, 1);
    const [record] = await host.driver.list();
    assert.ok(record);
    process.kill(record.pid, 'SIGKILL');
    await waitFor(() => !host.driver.isAlive(record.id), { what: `the driver to see ${record.id} dead`, timeout: 10_000, interval: 20 });
    assert.equal(pool.take(), undefined, 'the dead VM is not handed out');
    await waitIdle(pool, 1);
    const vm = pool.take();
    assert.ok(vm && vm.id !== record.id);
    await host.driver.destroy(vm.id);
    await pool.close();
    assert.equal((await host.driver.list()).length, 0);
  });

  test(
    'a snapshot pool of a disk image: clones see the disk as the template left it, and write only their own',
    { skip: process.getuid?.() !== 0 && 'the debian image is built only as root' },
    async () => {
      const pool = newPool({ name: 'disk', image: 'debian', memoryMib: 512, minIdle: 2, maxSize: 4 });
      await waitIdle(pool, 2);
      const [a, b] = [pool.take(), pool.take()];
      assert.ok(a && b);
      assert.match(await run(host, a, 'git --version'), /^git version/);
      await run(host, a, 'echo from-a > /root/mine; sync');
      assert.equal((await run(host, b, 'cat /root/mine 2>/dev/null || echo absent')).trim(), 'absent', 'a clone does not see another clone write');
      for (const vm of [a, b]) await host.driver.destroy(vm.id);
      await pool.close();
    },
  );

  test('a changed image rebuilds the template, and old clones are not handed out', async () => {
    const name = 'pool-test-image';
    const makeImage = async (content: string) => {
      await writeFile(join(work, 'gitlab-runner'), content);
      return (await addRunnersToImage(host.paths.cache, await loadImage(host.paths.cache, 'minimal'), { gitlabRunner: join(work, 'gitlab-runner') }, name))
        .image;
    };
    const v1 = await makeImage('#!/bin/sh\necho v1\n');
    const pool = newPool({ name: 'rebuild', image: name, minIdle: 1 });
    await waitIdle(pool, 1);
    assert.equal(pool.status().template?.imageId, v1.id);
    const v2 = await makeImage('#!/bin/sh\necho v2\n');
    await pool.maintain();
    assert.equal(pool.status().template?.imageId, v2.id, 'template rebuilt for the new image');
    await waitIdle(pool, 1);
    const vm = pool.take();
    assert.ok(vm);
    assert.equal((await run(host, vm, '/usr/local/bin/gitlab-runner')).trim(), 'v2');
    await host.driver.destroy(vm.id);
    await pool.close();
  });
});
