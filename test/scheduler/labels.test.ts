import assert from 'node:assert/strict';
import { it } from 'node:test';
import { isHearthError } from '../../src/errors.ts';
import { admissionProblem, DEFAULT_SHAPE, jobOwnership, shapeFromLabels } from '../../src/scheduler/labels.ts';
import { memoryProblem, nearestCpus, VM_BOUNDS } from '../../src/vm/bounds.ts';
import { FIRECRACKER_CAPABILITIES } from '../../src/vm/firecracker/driver.ts';

it('reads vCPUs and memory from size labels with any prefix', () => {
  assert.deepEqual(shapeFromLabels(['hearth-4cpu-8gb']).shape, { ...DEFAULT_SHAPE, cpus: 4, memoryMib: 8192 });
  assert.deepEqual(shapeFromLabels(['firecracker-2cpu-4gb']).shape, { ...DEFAULT_SHAPE, cpus: 2, memoryMib: 4096 });
  assert.deepEqual(shapeFromLabels(['self-hosted', '1cpu', '512mb']).shape, { ...DEFAULT_SHAPE, cpus: 1, memoryMib: 512 });
});

it('treats GitHub-hosted names as a Linux VM and reports what it does not know', () => {
  const decision = shapeFromLabels(['ubuntu-latest', 'ubuntu-22.04', 'self-hosted', 'X64', 'gpu-a100', 'macos-14']);
  assert.deepEqual(decision.shape, DEFAULT_SHAPE);
  assert.deepEqual(decision.unrecognised, ['gpu-a100', 'macos-14']);
});

it('picks an image and refuses impossible sizes with a fix', () => {
  assert.equal(shapeFromLabels(['hearth-image-minimal']).shape.image, 'minimal');
  assert.throws(
    () => shapeFromLabels(['hearth-0cpu']),
    (e) => isHearthError(e, 'HEARTH_ERR_BAD_OPTION') && /hearth-2cpu-4gb/.test(e.fix),
  );
  assert.throws(() => shapeFromLabels(['64mb']), /below 128/);
});

it('reads the key-value form and the pin label', () => {
  const decision = shapeFromLabels(['self-hosted', 'hearth/cpu=4/ram=8/image=minimal/pool=fast', 'hearth=12345-0']);
  assert.deepEqual(decision.shape, { cpus: 4, memoryMib: 8192, image: 'minimal' });
  assert.equal(decision.pool, 'fast');
  assert.equal(decision.pin, 'hearth=12345-0');
  assert.equal(shapeFromLabels(['hearth/ram=512mb']).shape.memoryMib, 512);
  assert.throws(() => shapeFromLabels(['hearth/gpu=1']), /unknown key "gpu"/);
  assert.throws(() => shapeFromLabels(['hearth/cpu=many']), /cpu=many is not a number/);
});

it('owns only jobs with a hearth or firecracker label, and refuses shapes past the limits', () => {
  const limits = { maxCpus: 8, maxMemoryMib: 16384, images: ['debian', 'minimal'] };
  assert.deepEqual(jobOwnership(['ubuntu-latest'], limits), { owned: false, reason: 'no hearth label among [ubuntu-latest]' });
  assert.equal(jobOwnership(['self-hosted', 'gpu'], limits).owned, false);
  const owned = jobOwnership(['self-hosted', 'hearth', 'hearth-2cpu-4gb'], limits);
  assert.ok(owned.owned && 'shape' in owned);
  assert.deepEqual(owned.shape, { cpus: 2, memoryMib: 4096, image: 'debian' });
  const firecracker = jobOwnership(['firecracker-4cpu-8gb'], limits);
  assert.ok(firecracker.owned && 'shape' in firecracker && firecracker.shape.cpus === 4);
  const big = jobOwnership(['hearth-32cpu-4gb'], limits);
  assert.ok(big.owned && 'refused' in big && /32 vCPUs exceeds the limit of 8/.test(big.refused));
  const image = jobOwnership(['hearth/image=windows'], limits);
  assert.ok(image.owned && 'refused' in image && /image "windows"/.test(image.refused));
});

it('refuses a shape no admitting driver can boot, with the nearest sizes that would do', () => {
  const firecracker = { name: 'firecracker', capabilities: FIRECRACKER_CAPABILITIES };
  const qemu = { name: 'qemu', capabilities: VM_BOUNDS };
  const limits = { maxCpus: 64, maxMemoryMib: 16384, images: ['debian'], drivers: [firecracker] };
  const odd = jobOwnership(['hearth-3cpu'], limits);
  assert.deepEqual(odd, { owned: true, refused: '3 vCPUs: firecracker takes 1 or an even number up to 32; use hearth-2cpu or hearth-4cpu' });
  const many = jobOwnership(['hearth-34cpu'], limits);
  assert.ok(many.owned && 'refused' in many && /use hearth-32cpu$/.test(many.refused));
  assert.ok('shape' in jobOwnership(['hearth-4cpu'], limits), 'an even count is admitted');
  assert.ok('shape' in jobOwnership(['hearth-1cpu'], limits), 'one vCPU is admitted');
  // Any one driver that can take it is enough (a QEMU host beside the Firecracker one).
  assert.ok('shape' in jobOwnership(['hearth-3cpu'], { ...limits, drivers: [firecracker, qemu] }));
  // No driver known yet (a controller before any host registered): not checked here.
  assert.ok('shape' in jobOwnership(['hearth-3cpu'], { ...limits, drivers: [] }));
  assert.equal(admissionProblem({ cpus: 3, memoryMib: 2048 }, [qemu]), undefined);
});

it('takes every size bound from one table', () => {
  assert.throws(
    () => shapeFromLabels(['hearth-65cpu']),
    (e) => isHearthError(e, 'HEARTH_ERR_BAD_OPTION') && e.message.includes(`${VM_BOUNDS.cpus.max + 1} vCPUs: Hearth takes 1 to ${VM_BOUNDS.cpus.max}`),
  );
  assert.deepEqual(nearestCpus(3, FIRECRACKER_CAPABILITIES.cpus), [2, 4]);
  assert.deepEqual(nearestCpus(0, VM_BOUNDS.cpus), [1]);
  assert.equal(memoryProblem(64), '64 MiB of memory is below 128: Hearth takes 128 to 1048576 MiB');
  assert.equal(memoryProblem(512), undefined);
});
