import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { HearthError } from '../errors.ts';
import { runProgram } from '../system/run.ts';

/** Debian's kernel for cloud guests: small, virtio drivers as modules, CONFIG_PVH=y. */
export const KERNEL_METAPACKAGE = 'linux-image-cloud-amd64';

export interface GuestKernel {
  /** Debian package name and version, e.g. linux-image-6.1.0-56-cloud-amd64 6.1.192-2. */
  readonly package: string;
  readonly version: string;
  /** sha256 of the .deb: the kernel's identity in image ids. */
  readonly sha256: string;
  /** Kernel release, the directory name under /lib/modules. */
  readonly release: string;
  readonly vmlinuz: string;
  readonly modulesDir: string;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Asks apt which concrete kernel package the metapackage points at. */
async function resolveKernelPackage(): Promise<string> {
  const fail = (reason: string): HearthError => new HearthError('HEARTH_ERR_KERNEL_FETCH', { package: KERNEL_METAPACKAGE, reason });
  let out: string;
  try {
    out = (await runProgram('apt-cache', ['depends', KERNEL_METAPACKAGE])).stdout;
  } catch (error) {
    throw fail((error as Error).message);
  }
  const match = /Depends: (linux-image-[^\s]+)/.exec(out);
  if (!match?.[1]) throw fail('apt does not know it (no package lists?)');
  return match[1];
}

async function downloadDeb(pkg: string, into: string): Promise<string> {
  try {
    await runProgram('apt-get', ['download', '-q', pkg], { cwd: into, timeoutMs: 600_000 });
  } catch (error) {
    throw new HearthError('HEARTH_ERR_KERNEL_FETCH', { package: pkg, reason: (error as Error).message }, { cause: error });
  }
  const deb = (await readdir(into)).find((f) => f.endsWith('.deb'));
  if (!deb) throw new HearthError('HEARTH_ERR_KERNEL_FETCH', { package: pkg, reason: 'apt-get download produced no .deb' });
  return join(into, deb);
}

/**
 * Makes the guest kernel available under the cache, fetching and unpacking
 * Debian's package if needed. `dpkg-deb -x` needs no root. The unpacked tree is
 * kept per package file, so a second call costs one directory check.
 */
export async function ensureGuestKernel(cacheDir: string, log: (line: string) => void = () => {}, kernelDeb: string | null = null): Promise<GuestKernel> {
  const kernelsDir = join(cacheDir, 'kernels');
  await mkdir(kernelsDir, { recursive: true });
  const tmp = await mkdtemp(join(kernelsDir, '.fetch-'));
  try {
    // image.kernelDeb (HEARTH_KERNEL_DEB): a package given instead of one apt-get downloads.
    let deb = kernelDeb ?? undefined;
    if (!deb) {
      const unpacked = (await readdir(kernelsDir)).filter((d) => d.startsWith('linux-image-')).sort();
      let pkg: string;
      try {
        pkg = await resolveKernelPackage();
      } catch (error) {
        // Offline or without package lists: a kernel fetched earlier still does.
        const newest = unpacked.at(-1);
        if (!newest) throw error;
        log(`apt cannot resolve ${KERNEL_METAPACKAGE}; using the cached ${newest}`);
        return await loadUnpacked(join(kernelsDir, newest));
      }
      const cached = unpacked.find((d) => d.startsWith(`${pkg}_`));
      if (cached) return await loadUnpacked(join(kernelsDir, cached));
      log(`fetching ${pkg} with apt-get download`);
      deb = await downloadDeb(pkg, tmp);
    }
    const sha256 = await sha256File(deb);
    const name = basename(deb, '.deb');
    const target = join(kernelsDir, `${name.split('_').slice(0, 2).join('_')}_${sha256.slice(0, 12)}`);
    if (await exists(target)) return await loadUnpacked(target);
    log(`unpacking ${basename(deb)}`);
    const unpack = join(tmp, 'root');
    await runProgram('dpkg-deb', ['-x', deb, unpack], { timeoutMs: 300_000 });
    const [pkg, version] = name.split('_');
    await writeFile(join(unpack, 'hearth-kernel.json'), JSON.stringify({ package: pkg, version, sha256 }, null, 2));
    await rename(unpack, target);
    return await loadUnpacked(target);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function loadUnpacked(dir: string): Promise<GuestKernel> {
  const meta = JSON.parse(await readFile(join(dir, 'hearth-kernel.json'), 'utf8')) as { package: string; version: string; sha256: string };
  const boot = await readdir(join(dir, 'boot'));
  const vmlinuz = boot.find((f) => f.startsWith('vmlinuz-'));
  if (!vmlinuz) throw new HearthError('HEARTH_ERR_KERNEL_FETCH', { package: meta.package, reason: `no vmlinuz in ${dir}/boot` });
  const release = vmlinuz.slice('vmlinuz-'.length);
  return { ...meta, release, vmlinuz: join(dir, 'boot', vmlinuz), modulesDir: join(dir, 'lib', 'modules', release) };
}
