import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { it } from 'node:test';
import { resolvePaths } from '../../src/config/paths.ts';
import { ensureGuestKernel } from '../../src/image/kernel.ts';
import { buildMinimalImage, isStaticElf } from '../../src/image/minimal.ts';
import { modinfoDepends, resolveModuleOrder } from '../../src/image/modules.ts';

const cache = resolvePaths().cache;

it('a rebuild with the same inputs is a no-op that names the same image', async () => {
  const first = await buildMinimalImage(cache);
  const second = await buildMinimalImage(cache);
  assert.equal(second.built, false);
  assert.equal(second.image.id, first.image.id);
  assert.match(second.image.id, /^minimal-[0-9a-f]{16}$/);
});

it('the initramfs carries the agent as /init, a static busybox and the guest modules in load order', async () => {
  const { image } = await buildMinimalImage(cache);
  const listing = execFileSync('cpio', ['-t', '--quiet'], { input: await readFile(image.initrdPath), maxBuffer: 1 << 26 })
    .toString()
    .split('\n');
  for (const path of ['init', 'bin/busybox', 'bin/sh', 'etc/hearth/modules', 'dev/console'])
    assert.ok(listing.includes(path), `${path} missing from the initramfs`);
  const modules = execFileSync('cpio', ['-i', '--quiet', '--to-stdout', 'etc/hearth/modules'], { input: await readFile(image.initrdPath), maxBuffer: 1 << 26 })
    .toString()
    .trim()
    .split('\n');
  const names = modules.map((m) => m.split('/').pop()?.replace(/\.ko$/, ''));
  for (const wanted of ['virtio_mmio', 'virtio_blk', 'virtio_console', 'virtio_net', 'vmw_vsock_virtio_transport'])
    assert.ok(names.includes(wanted), `${wanted} not loaded`);
  assert.ok(names.indexOf('virtio') < names.indexOf('virtio_mmio'), 'virtio must load before virtio_mmio');
  assert.ok(names.indexOf('vsock') < names.indexOf('vmw_vsock_virtio_transport'), 'vsock must load before its transport');
});

it('reads module dependencies from .modinfo as depmod would', async () => {
  const kernel = await ensureGuestKernel(cache);
  const order = await resolveModuleOrder(kernel.modulesDir, ['virtio_net']);
  const net = order.find((m) => m.name === 'virtio_net');
  assert.ok(net);
  const deps = modinfoDepends(await readFile(`${kernel.modulesDir}/${net.path}`));
  assert.ok(deps.includes('net_failover'), `virtio_net depends on ${deps.join(',')}`);
  assert.equal(order.at(-1)?.name, 'virtio_net');
  await assert.rejects(resolveModuleOrder(kernel.modulesDir, ['no_such_module']), /no_such_module/);
});

it('tells a static ELF from a dynamic one', async () => {
  assert.equal(isStaticElf(await readFile('/bin/busybox')), true);
  assert.equal(isStaticElf(await readFile(process.execPath)), false);
  assert.equal(isStaticElf(Buffer.from('#!/bin/sh\n')), false);
});
