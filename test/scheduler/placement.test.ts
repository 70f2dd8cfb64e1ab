import assert from 'node:assert/strict';
import { test } from 'node:test';
import { placeJobs, type HostSlot, type PlacementRequest } from '../../src/scheduler/placement.ts';
import { shapeFromLabels } from '../../src/scheduler/labels.ts';

function host(id: string, over: Partial<HostSlot> = {}): HostSlot {
  return { id, cpus: 8, memoryMib: 16384, usedCpus: 0, usedMemoryMib: 0, images: ['debian', 'minimal'], labels: ['arch=x86_64', 'kvm=true'], ...over };
}

function job(id: string, cpus = 2, memoryMib = 4096, requires: string[] = [], image = 'debian'): PlacementRequest {
  return { id, shape: { cpus, memoryMib, image }, requires };
}

test('bin-packing fills the fullest host that fits, keeping a whole host free for a big job', () => {
  const hosts = [host('a'), host('b', { usedCpus: 4, usedMemoryMib: 8192 })];
  const decisions = placeJobs([job('1'), job('2'), job('big', 8, 16384)], hosts, 'binpack');
  assert.deepEqual(Object.fromEntries(decisions), { '1': { host: 'b' }, '2': { host: 'b' }, big: { host: 'a' } });
  assert.deepEqual(
    hosts.map((h) => [h.usedCpus, h.usedMemoryMib]),
    [
      [8, 16384],
      [8, 16384],
    ],
    'each placement counts before the next',
  );
});

test('spreading puts each job on the emptiest host', () => {
  const hosts = [host('a'), host('b'), host('c', { usedCpus: 1, usedMemoryMib: 1024 })];
  const decisions = placeJobs([job('1'), job('2'), job('3')], hosts, 'spread');
  assert.deepEqual(
    [...decisions.values()].map((d) => ('host' in d ? d.host : d.wait)),
    ['a', 'b', 'c'],
  );
});

test('honours images and host labels, and says why a job waits', () => {
  const hosts = [host('x86'), host('arm', { labels: ['arch=arm64', 'kvm=true'] }), host('tcg', { labels: ['arch=x86_64', 'kvm=false'], images: ['minimal'] })];
  const decisions = placeJobs(
    [job('arm', 1, 1024, ['arch=arm64']), job('mini-tcg', 1, 1024, ['kvm=false'], 'minimal'), job('riscv', 1, 1024, ['arch=riscv64']), job('huge', 64, 1024)],
    hosts,
    'binpack',
  );
  assert.deepEqual(decisions.get('arm'), { host: 'arm' });
  assert.deepEqual(decisions.get('mini-tcg'), { host: 'tcg' });
  assert.deepEqual(decisions.get('riscv'), { wait: 'no up host offers image debian, 1 vCPU, 1024 MiB, arch=riscv64' });
  assert.match(JSON.stringify(decisions.get('huge')), /no up host offers image debian, 64 vCPU/);
  assert.deepEqual(placeJobs([job('1')], [], 'binpack').get('1'), { wait: 'no VM host is up' });
  const full = [host('a', { usedCpus: 8 })];
  assert.deepEqual(placeJobs([job('1')], full, 'binpack').get('1'), { wait: 'every eligible host is full' });
});

test('labels ask for host properties in the key-value form', () => {
  assert.deepEqual(shapeFromLabels(['self-hosted', 'hearth/cpu=2/arch=arm64/kvm=true']).requires, ['arch=arm64', 'kvm=true']);
  assert.deepEqual(shapeFromLabels(['hearth-2cpu-4gb']).requires, []);
  assert.throws(() => shapeFromLabels(['hearth/kvm=maybe']), /kvm=maybe is not true or false/);
});
