import assert from 'node:assert/strict';
import { it } from 'node:test';
import { isHearthError } from '../../src/errors.ts';
import { DEFAULT_SHAPE, shapeFromLabels } from '../../src/scheduler/labels.ts';

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
  assert.throws(() => shapeFromLabels(['hearth-0cpu']), (e) => isHearthError(e, 'HEARTH_ERR_BAD_OPTION') && /hearth-2cpu-4gb/.test(e.fix));
  assert.throws(() => shapeFromLabels(['64mb']), /below 128/);
});
