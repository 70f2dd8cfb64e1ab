import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { HearthError } from '../errors.ts';
import { findExecutable, runProgram } from '../system/run.ts';
import { buildMinimalImage, type BuildResult } from './minimal.ts';
import { findBuiltImage, imagesDir, publishImage } from './store.ts';

const DEBIAN_FORMAT = 1;
export const DEBIAN_SUITE = 'bookworm';
export const DEBIAN_MIRROR = 'http://deb.debian.org/debian';
/** What CI jobs expect to find. More come from config (images.debian.packages). */
export const DEBIAN_PACKAGES = [
  'bash',
  'ca-certificates',
  'curl',
  'git',
  'build-essential',
  'python3',
  'nodejs',
  'procps',
  'xz-utils',
  'zstd',
  'unzip',
  'file',
];

export interface DebianImageOptions {
  readonly packages?: readonly string[];
  readonly mirror?: string;
  readonly suite?: string;
  /** image.kernelDeb: the guest kernel package to use instead of downloading one. */
  readonly kernelDeb?: string | null;
}

/** Runs debootstrap, passing its progress lines on as they come. */
function debootstrap(args: string[], log: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('debootstrap', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    let retrieved = 0;
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        tail.push(line);
        if (tail.length > 20) tail.shift();
        if (line.startsWith('I: Retrieving')) {
          retrieved++;
          if (retrieved % 50 === 0) log(`debootstrap: ${retrieved} packages retrieved`);
        } else if (/^I: (Resolving|Installing|Unpacking the|Configuring the|Base system)/.test(line)) {
          log(`debootstrap: ${line.slice(3)}`);
        }
      });
    }
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`debootstrap exited ${code}:\n${tail.join('\n')}`))));
  });
}

/**
 * The `debian` image: a Debian rootfs as an ext4 file (built with `mkfs.ext4 -d`,
 * no loop mounts), booted read-only under a per-VM qcow2 overlay, with the
 * minimal image's kernel and initramfs, whose agent switches to the disk.
 * debootstrap needs root (it chroots to configure packages).
 */
export async function buildDebianImage(cacheDir: string, options: DebianImageOptions, log: (line: string) => void = () => {}): Promise<BuildResult> {
  const minimal = (await buildMinimalImage(cacheDir, log, { kernelDeb: options.kernelDeb ?? null })).image;
  const suite = options.suite ?? DEBIAN_SUITE;
  const mirror = options.mirror ?? DEBIAN_MIRROR;
  const packages = [...new Set([...DEBIAN_PACKAGES, ...(options.packages ?? [])])].sort();
  for (const pkg of packages) {
    if (!/^[a-z0-9][a-z0-9+.-]*$/.test(pkg))
      throw new HearthError('HEARTH_ERR_BAD_OPTION', {
        option: `package "${pkg}"`,
        reason: 'is not a Debian package name',
        hint: 'use names as apt knows them, e.g. jq or libssl-dev',
      });
  }
  const inputs: Record<string, string> = { format: String(DEBIAN_FORMAT), boot: minimal.id, suite, mirror, packages: packages.join(',') };
  const id = `debian-${createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16)}`;
  const root = imagesDir(cacheDir);
  const cached = await findBuiltImage(cacheDir, 'debian', id);
  if (cached) return { image: cached, built: false };
  if (process.getuid?.() !== 0)
    throw new HearthError('HEARTH_ERR_NEEDS_ROOT', {
      what: 'building the debian image (debootstrap chroots into the new system)',
      command: 'sudo hearth image build debian',
    });
  for (const [tool, pkg] of [
    ['debootstrap', 'debootstrap'],
    ['mkfs.ext4', 'e2fsprogs'],
  ] as const) {
    if (!(await findExecutable(tool))) throw new HearthError('HEARTH_ERR_TOOL_MISSING', { tool, package: pkg });
  }

  await mkdir(root, { recursive: true });
  const staging = await mkdtemp(join(root, '.build-'));
  try {
    const tree = join(staging, 'tree');
    log(`debootstrap ${suite} from ${mirror} with ${packages.length} packages`);
    await debootstrap(['--variant=minbase', `--include=${packages.join(',')}`, suite, tree, mirror], log);
    // Caches and docs are dead weight in a CI guest.
    for (const path of ['var/cache/apt/archives', 'var/lib/apt/lists', 'usr/share/doc', 'usr/share/man', 'usr/share/info']) {
      await rm(join(tree, path), { recursive: true, force: true });
      await mkdir(join(tree, path), { recursive: true });
    }
    await writeFile(join(tree, 'etc/hostname'), 'hearth\n');
    await writeFile(join(tree, 'etc/hosts'), '127.0.0.1 localhost\n::1 localhost\n');
    await writeFile(join(tree, 'etc/resolv.conf'), '');
    await mkdir(join(tree, 'workspace'), { recursive: true });
    const { stdout } = await runProgram('du', ['-sm', tree]);
    // Sparse: the free space is what jobs can write; it costs no disk until used.
    const megabytes = Number(stdout.split('\t')[0]) + 4096;
    log(`writing rootfs.ext4 (${megabytes} MiB, sparse)`);
    await runProgram('mkfs.ext4', ['-q', '-F', '-L', 'hearth-root', '-E', 'root_owner=0:0', '-d', tree, join(staging, 'rootfs.ext4'), `${megabytes}M`], {
      timeoutMs: 600_000,
    });
    await rm(tree, { recursive: true, force: true });
    await copyFile(minimal.kernelPath, join(staging, 'vmlinuz'));
    await copyFile(minimal.initrdPath, join(staging, 'initrd.cpio'));
    const image = await publishImage(cacheDir, staging, {
      name: 'debian',
      id,
      kind: 'rootfs',
      createdAt: new Date().toISOString(),
      kernel: { ...minimal.kernel, file: 'vmlinuz' },
      initrd: 'initrd.cpio',
      rootfs: 'rootfs.ext4',
      inputs,
    });
    return { image, built: true };
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}
