import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HostInfo } from '../../src/ledger/ledger.ts';
import { DriverAdmission } from '../../src/scheduler/admission.ts';
import { jobOwnership } from '../../src/scheduler/labels.ts';
import { FIRECRACKER_CAPABILITIES } from '../../src/vm/firecracker/driver.ts';
import { FAKE_CAPABILITIES } from '../support/fake-driver.ts';
import { forEachStore } from '../support/ledgers.ts';

function host(id: string, driver: string, capabilities: HostInfo['capabilities']): HostInfo {
  return { id, cpus: 8, memoryMib: 16384, diskGib: 10, drivers: [driver], images: ['debian'], labels: [], ...(capabilities ? { capabilities } : {}) };
}

forEachStore('admission with scale-out: the capabilities hosts declare when they register', (open) => {
  test('a controller refuses a shape no live host can boot, and admits it once a host that can registers', async () => {
    const ledger = await open();
    const admission = new DriverAdmission(undefined);
    const limits = {
      maxCpus: 64,
      maxMemoryMib: 16384,
      images: ['debian'],
      get drivers() {
        return admission.drivers;
      },
    };
    // No host yet: nothing to ask, so admission does not refuse (placement waits for a host).
    assert.ok('shape' in jobOwnership(['hearth-3cpu'], limits));

    await ledger.registerHost(host('fc-1', 'firecracker', FIRECRACKER_CAPABILITIES));
    await ledger.registerHost(host('fc-2', 'firecracker', FIRECRACKER_CAPABILITIES));
    // Registered before hosts declared capabilities: skipped, not guessed.
    await ledger.registerHost(host('old', 'qemu', undefined));
    admission.update(await ledger.liveHosts(60_000));
    assert.deepEqual(
      admission.drivers.map((d) => d.name),
      ['firecracker'],
      'one entry for like hosts',
    );
    assert.deepEqual(jobOwnership(['hearth-3cpu'], limits), {
      owned: true,
      refused: '3 vCPUs: firecracker takes 1 or an even number up to 32; use hearth-2cpu or hearth-4cpu',
    });

    await ledger.registerHost(host('qemu-1', 'qemu', FAKE_CAPABILITIES));
    admission.update(await ledger.liveHosts(60_000));
    assert.ok('shape' in jobOwnership(['hearth-3cpu'], limits), 'a QEMU-like host can take 3 vCPUs');

    // A host that left no longer counts.
    await ledger.markHostLeft('qemu-1');
    admission.update(await ledger.liveHosts(60_000));
    assert.ok('refused' in jobOwnership(['hearth-3cpu'], limits));
  });
});

test("this host's own driver counts before it has registered", () => {
  const admission = new DriverAdmission({ name: 'firecracker', capabilities: FIRECRACKER_CAPABILITIES });
  assert.deepEqual(
    admission.drivers.map((d) => d.name),
    ['firecracker'],
  );
  admission.update([
    { id: 'self', drivers: ['firecracker'], capabilities: FIRECRACKER_CAPABILITIES },
    { id: 'old', drivers: ['qemu'], capabilities: null },
  ]);
  assert.deepEqual(
    admission.drivers.map((d) => d.name),
    ['firecracker'],
    'itself once; a host without declared capabilities is skipped',
  );
});
