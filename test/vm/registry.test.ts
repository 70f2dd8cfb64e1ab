import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { isSameProcess, processStartTime, VmRegistry } from '../../src/vm/registry.ts';

it('tells a live process from a dead one by pid and start time', async () => {
  const start = processStartTime(process.pid);
  assert.ok(start);
  assert.equal(isSameProcess(process.pid, start), true);
  assert.equal(isSameProcess(process.pid, String(Number(start) + 1)), false, 'a recycled pid must not pass');
  const child = spawn('true');
  const pid = child.pid!;
  await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(processStartTime(pid), undefined);
});

it('lists entries whose owner is gone as leaked', async () => {
  const root = await mkdtemp(join(tmpdir(), 'hearth-registry-'));
  try {
    const registry = new VmRegistry(root);
    const base = {
      driver: 'qemu',
      pid: 0,
      pidStart: '',
      image: 'minimal-x',
      cpus: 1,
      memoryMib: 256,
      network: false,
      accel: 'tcg' as const,
      createdAt: new Date().toISOString(),
    };
    await registry.create('vm-mine');
    await registry.write({ ...base, id: 'vm-mine', ownerPid: process.pid, ownerStart: processStartTime(process.pid)! });
    await registry.create('vm-orphan');
    await registry.write({ ...base, id: 'vm-orphan', ownerPid: 999_999_999, ownerStart: '1' });
    const byId = Object.fromEntries((await registry.list()).map((r) => [r.id, r]));
    assert.equal(byId['vm-mine']?.leaked, false);
    assert.equal(byId['vm-orphan']?.leaked, true);
    assert.equal(byId['vm-orphan']?.alive, false);
    await registry.remove('vm-orphan');
    assert.deepEqual(await registry.ids(), ['vm-mine']);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
