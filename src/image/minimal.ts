import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HearthError } from '../errors.ts';
import { runProgram } from '../system/run.ts';
import { buildGuestAgent } from './agent.ts';
import { writeCpio, type CpioEntry } from './cpio.ts';
import { ensureGuestKernel, sha256File } from './kernel.ts';
import { resolveModuleOrder } from './modules.ts';
import { findBuiltImage, imagesDir, publishImage, type Image } from './store.ts';

/** Bumped whenever the layout below changes, so old builds are not reused. */
const MINIMAL_FORMAT = 1;

/** What the guest needs: virtio-mmio transport, disk, console port, network and vsock. */
export const GUEST_MODULES = ['virtio_mmio', 'virtio_blk', 'virtio_console', 'virtio_net', 'vmw_vsock_virtio_transport', 'virtio_rng'];

const BUSYBOX = '/bin/busybox';

/** A static ELF has no PT_INTERP program header. */
export function isStaticElf(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) return false;
  const phoff = Number(elf.readBigUInt64LE(32));
  const phentsize = elf.readUInt16LE(54);
  const phnum = elf.readUInt16LE(56);
  for (let i = 0; i < phnum; i++) {
    const offset = phoff + i * phentsize;
    if (offset + 4 > elf.length) return false;
    if (elf.readUInt32LE(offset) === 3) return false; // PT_INTERP
  }
  return true;
}

export interface BuildResult {
  readonly image: Image;
  /** false when an identical build was already cached. */
  readonly built: boolean;
}

export async function buildMinimalImage(
  cacheDir: string,
  log: (line: string) => void = () => {},
  options: { readonly kernelDeb?: string | null } = {},
): Promise<BuildResult> {
  const kernel = await ensureGuestKernel(cacheDir, log, options.kernelDeb ?? null);
  let busybox: Buffer;
  try {
    busybox = await readFile(BUSYBOX);
  } catch {
    throw new HearthError('HEARTH_ERR_TOOL_MISSING', { tool: 'busybox', package: 'busybox-static' });
  }
  if (!isStaticElf(busybox)) throw new HearthError('HEARTH_ERR_BUSYBOX_NOT_STATIC', { path: BUSYBOX });
  const agent = await buildGuestAgent(cacheDir);
  const modules = await resolveModuleOrder(kernel.modulesDir, GUEST_MODULES);

  const inputs: Record<string, string> = {
    format: String(MINIMAL_FORMAT),
    kernel: kernel.sha256,
    busybox: createHash('sha256').update(busybox).digest('hex'),
    agent: agent.sha256,
    modules: modules.map((m) => m.name).join(','),
  };
  const id = `minimal-${createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16)}`;
  const root = imagesDir(cacheDir);
  await mkdir(root, { recursive: true });
  const cached = await findBuiltImage(cacheDir, 'minimal', id);
  if (cached) return { image: cached, built: false };

  log(`assembling initramfs ${id} (${modules.length} kernel modules)`);
  const entries: CpioEntry[] = [];
  for (const d of [
    'bin',
    'sbin',
    'usr',
    'usr/bin',
    'usr/sbin',
    'dev',
    'proc',
    'sys',
    'tmp',
    'run',
    'etc',
    'etc/hearth',
    'root',
    'lib',
    'lib/modules',
    `lib/modules/${kernel.release}`,
  ]) {
    entries.push({ kind: 'dir', path: d, mode: d === 'tmp' ? 0o1777 : d === 'root' ? 0o700 : 0o755 });
  }
  entries.push({ kind: 'chardev', path: 'dev/console', major: 5, minor: 1, mode: 0o600 });
  entries.push({ kind: 'chardev', path: 'dev/null', major: 1, minor: 3, mode: 0o666 });
  entries.push({ kind: 'file', path: 'init', data: await readFile(agent.path), mode: 0o755 });
  entries.push({ kind: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 });
  const applets = (await runProgram(BUSYBOX, ['--list-full'])).stdout.split('\n').filter((a) => a && a !== 'bin/busybox' && a !== 'linuxrc');
  for (const applet of applets.sort()) entries.push({ kind: 'symlink', path: applet, target: '/bin/busybox' });
  const moduleList: string[] = [];
  for (const m of modules) {
    const path = `lib/modules/${kernel.release}/${m.name}.ko`;
    entries.push({ kind: 'file', path, data: await readFile(join(kernel.modulesDir, m.path)) });
    moduleList.push(`/${path}`);
  }
  entries.push({ kind: 'file', path: 'etc/hearth/modules', data: Buffer.from(moduleList.join('\n') + '\n') });
  entries.push({ kind: 'file', path: 'etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') });
  entries.push({ kind: 'file', path: 'etc/group', data: Buffer.from('root:x:0:\ntty:x:5:\n') });
  entries.push({ kind: 'file', path: 'etc/hostname', data: Buffer.from('hearth\n') });

  const staging = await mkdtemp(join(root, '.build-'));
  try {
    await copyFile(kernel.vmlinuz, join(staging, 'vmlinuz'));
    await writeFile(join(staging, 'initrd.cpio'), writeCpio(entries));
    const image = await publishImage(cacheDir, staging, {
      name: 'minimal',
      id,
      kind: 'initramfs',
      createdAt: new Date().toISOString(),
      kernel: { file: 'vmlinuz', package: kernel.package, version: kernel.version, release: kernel.release },
      initrd: 'initrd.cpio',
      inputs: { ...inputs, initrdSha256: await sha256File(join(staging, 'initrd.cpio')) },
    });
    return { image, built: true };
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}
