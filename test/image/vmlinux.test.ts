import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bareLaunch } from '../../bench/bare-qemu.ts';
import { resolvePaths } from '../../src/config/paths.ts';
import { loadImage } from '../../src/image/store.ts';
import { decodeLz4Legacy, ensureVmlinux } from '../../src/image/vmlinux.ts';

test('the ELF vmlinux extracted from the bzImage carries the PVH entry note and boots to the agent', async () => {
  const image = await loadImage(resolvePaths().cache, 'minimal');
  const path = await ensureVmlinux(image);
  const elf = await readFile(path);
  assert.equal(elf.subarray(0, 4).toString('latin1'), '\x7fELF');
  const notes = execFileSync('readelf', ['-n', path], { encoding: 'utf8' });
  // XEN_ELFNOTE_PHYS32_ENTRY (18): the PVH entry point Firecracker and QEMU jump to.
  assert.match(notes, /Xen\s+0x[0-9a-f]+\s+Unknown note type: \(0x00000012\)/);
  const work = await mkdtemp(join(tmpdir(), 'hearth-pvh-'));
  try {
    // QEMU boots an ELF kernel by its PVH note: proof the extraction is whole.
    const ms = await bareLaunch({
      image: { ...image, kernelPath: path },
      accel: 'tcg',
      cpus: 1,
      memoryMib: 256,
      network: false,
      workDir: work,
      command: ['echo', 'pvh-ok'],
      marker: 'pvh-ok\n',
    });
    assert.ok(ms > 0);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

test('LZ4 legacy frames decode, including overlapping matches', () => {
  // One block: literals "ab", then a match of length 6 at distance 2 ("ababab"), then literal "!".
  const block = Buffer.from([0x22, 0x61, 0x62, 0x02, 0x00, 0x10, 0x21]);
  const frame = Buffer.concat([Buffer.from([0x02, 0x21, 0x4c, 0x18]), Buffer.from([block.length, 0, 0, 0]), block]);
  assert.equal(decodeLz4Legacy(frame).toString(), 'abababab!');
});
