import { chown, copyFile, link, mkdir, readFile, realpath, rename, rm, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HearthError } from '../../errors.ts';
import type { VmSpec } from '../driver.ts';

/**
 * Running Firecracker through its `jailer`: the jailer builds a chroot at
 * <chroot base>/<firecracker file name>/<vm id>/root, puts the process in a
 * cgroup, optionally joins a network namespace, drops to an unprivileged
 * uid:gid and execs Firecracker inside the chroot. Everything the VMM opens
 * (kernel, initrd, disks, snapshot files) must be inside that root, and every
 * path it is given over the API is read relative to it.
 */
export interface JailerOptions {
  /** The `jailer` binary, from the same Firecracker release as the VMM. */
  readonly binary: string;
  /** Who the VMM runs as: an unprivileged user and group kept for Firecracker. */
  readonly uid: number;
  readonly gid: number;
  /** Where jails are built (the jailer's default is /srv/jailer). */
  readonly chrootBaseDir?: string;
  /**
   * A network namespace handle (e.g. /var/run/netns/hearth) the VMM joins. Hearth
   * creates TAP devices in the host's namespace, so networked VMs are refused with it.
   */
  readonly netns?: string;
  /** The cgroup, relative to the v2 hierarchy, that VM cgroups go under (jailer default: the firecracker file name). */
  readonly parentCgroup?: string;
  /** Where the cgroup v2 hierarchy is mounted; read from /proc/mounts when unset, as the jailer does. */
  readonly cgroupMount?: string;
  /** Memory the VMM may use beyond the guest's own before its cgroup stops it, in MiB (default 64). */
  readonly memoryOverheadMib?: number;
}

export const DEFAULT_CHROOT_BASE = '/srv/jailer';
const DEFAULT_MEMORY_OVERHEAD_MIB = 64;
/** cpu.max is "<quota> <period>" in microseconds: a vCPU's worth is one full period. */
const CPU_PERIOD_US = 100_000;

/** One VM's jail: what the driver needs to fill it, and teardown to remove it. Kept as jail.json in the VM's runtime directory. */
export interface Jail {
  readonly vmId: string;
  /** <chroot base>/<exec file name>/<vm id>: removed whole on teardown. */
  readonly jailDir: string;
  /** <jailDir>/root, which the VMM sees as `/`. */
  readonly root: string;
  /** The VM's cgroup v2 directory, when a v2 hierarchy is mounted. */
  readonly cgroupDir: string | undefined;
  readonly uid: number;
  readonly gid: number;
}

const JAIL_RECORD = 'jail.json';

function bad(option: string, reason: string, hint: string): HearthError {
  return new HearthError('HEARTH_ERR_BAD_OPTION', { option, reason, hint });
}

function isUnixId(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value < 2 ** 32;
}

/** Checks the options before anything is created, naming the setting at fault. */
export function validateJailerOptions(options: JailerOptions, execFile: string): void {
  if (!isUnixId(options.uid) || !isUnixId(options.gid))
    throw bad(
      'jailer.uid/gid',
      `${options.uid}:${options.gid} is not a numeric uid:gid`,
      'give the ids of the user and group made for Firecracker, e.g. `id -u firecracker`',
    );
  if (options.uid === 0)
    throw bad(
      'jailer.uid',
      'is 0: the VMM would keep running as root, which is what the jailer is there to prevent',
      'create an unprivileged user for Firecracker (see docs/hosts.md) and give its uid',
    );
  const base = options.chrootBaseDir ?? DEFAULT_CHROOT_BASE;
  if (!isAbsolute(base)) throw bad('jailer.chrootBaseDir', `"${base}" is not an absolute path`, `for example ${DEFAULT_CHROOT_BASE}`);
  if (options.netns !== undefined && !isAbsolute(options.netns))
    throw bad('jailer.netns', `"${options.netns}" is not an absolute path`, 'give a namespace handle such as /var/run/netns/hearth (ip netns add hearth)');
  if (
    options.parentCgroup !== undefined &&
    (isAbsolute(options.parentCgroup) || options.parentCgroup.split('/').some((part) => part === '.' || part === '..' || part === ''))
  ) {
    throw bad('jailer.parentCgroup', `"${options.parentCgroup}" must be a relative cgroup path without . or .. parts`, 'for example hearth/vms');
  }
  if (!basename(execFile).includes('firecracker'))
    throw bad(
      'firecracker binary',
      `the jailer only execs a file whose name contains "firecracker", not ${basename(execFile)}`,
      'install the release binary as /usr/local/bin/firecracker',
    );
}

/** The mount point of the cgroup v2 hierarchy, from /proc/mounts, if there is one. */
export async function cgroupV2Mount(): Promise<string | undefined> {
  const mounts = await readFile('/proc/mounts', 'utf8').catch(() => '');
  for (const line of mounts.split('\n')) {
    const [, dir, type] = line.split(' ');
    if (type === 'cgroup2' && dir) return dir;
  }
  return undefined;
}

/** Where the jailer will put this VM's chroot and cgroup. */
export function planJail(options: JailerOptions, execFile: string, vmId: string, cgroupMount: string | undefined): Jail {
  const execName = basename(execFile);
  const jailDir = join(options.chrootBaseDir ?? DEFAULT_CHROOT_BASE, execName, vmId);
  const cgroupDir = cgroupMount ? join(cgroupMount, options.parentCgroup ?? execName, vmId) : undefined;
  return { vmId, jailDir, root: join(jailDir, 'root'), cgroupDir, uid: options.uid, gid: options.gid };
}

/** cgroup v2 limits from the VM's shape: its vCPUs' worth of CPU time, its memory plus the VMM's overhead. */
export function cgroupLimits(spec: Pick<VmSpec, 'cpus' | 'memoryMib'>, overheadMib = DEFAULT_MEMORY_OVERHEAD_MIB): string[] {
  return [`cpu.max=${spec.cpus * CPU_PERIOD_US} ${CPU_PERIOD_US}`, `memory.max=${(spec.memoryMib + overheadMib) * 1024 * 1024}`];
}

/** The jailer's command line; `firecrackerArgs` follow `--` and reach Firecracker, which gets `--id` from the jailer. */
export function jailerArgs(
  options: JailerOptions,
  execFile: string,
  jail: Jail,
  spec: Pick<VmSpec, 'cpus' | 'memoryMib'>,
  firecrackerArgs: readonly string[],
): string[] {
  const args = [
    '--id',
    jail.vmId,
    '--exec-file',
    execFile,
    '--uid',
    String(options.uid),
    '--gid',
    String(options.gid),
    '--chroot-base-dir',
    options.chrootBaseDir ?? DEFAULT_CHROOT_BASE,
  ];
  if (options.netns) args.push('--netns', options.netns);
  args.push('--cgroup-version', '2');
  if (options.parentCgroup) args.push('--parent-cgroup', options.parentCgroup);
  for (const limit of cgroupLimits(spec, options.memoryOverheadMib)) args.push('--cgroup', limit);
  return [...args, '--', ...firecrackerArgs];
}

/** Records the jail beside the VM (so any process can tear it down) and creates its root, owned by the VMM's user. */
export async function createJail(jail: Jail, runtimeDir: string): Promise<void> {
  await writeFile(join(runtimeDir, JAIL_RECORD), JSON.stringify(jail, null, 2) + '\n');
  await mkdir(jail.root, { recursive: true, mode: 0o700 });
  await chown(jail.root, jail.uid, jail.gid);
}

/** Gives the VMM's user a file Hearth made for this VM (a disk it writes, a source disk). */
export async function handOver(jail: Jail, path: string): Promise<void> {
  await chown(path, jail.uid, jail.gid);
}

/**
 * Makes a shared read-only file (kernel, initrd, snapshot state) visible in the
 * jail as `name`: a hard link when the file is world-readable and on the same
 * filesystem, else a copy given to the VMM's user. A hard link shares the
 * inode, so it is never chowned: that would change the shared original.
 */
export async function linkIntoJail(jail: Jail, from: string, name: string): Promise<string> {
  const source = await realpath(from);
  const target = join(jail.root, name);
  if (((await stat(source)).mode & 0o004) !== 0) {
    try {
      await link(source, target);
      return target;
    } catch {
      // another filesystem, or links not allowed here: copy instead
    }
  }
  await copyFile(source, target);
  await handOver(jail, target);
  return target;
}

/** Moves a file the VMM wrote in its jail out to `to`, across filesystems if need be. */
export async function moveOutOfJail(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    await copyFile(from, to);
    await unlink(from);
  }
}

/**
 * Removes the jail recorded in `runtimeDir`, if any: its chroot directory and its
 * cgroup. Call it once the VMM is dead (a cgroup with processes cannot go).
 */
export async function removeJail(runtimeDir: string): Promise<void> {
  let jail: Jail;
  try {
    jail = JSON.parse(await readFile(join(runtimeDir, JAIL_RECORD), 'utf8')) as Jail;
  } catch {
    return;
  }
  // The record sits in Hearth's own 0700 directory; still, remove nothing that is not this VM's jail.
  if (basename(jail.jailDir) === jail.vmId && basename(runtimeDir) === jail.vmId) await rm(jail.jailDir, { recursive: true, force: true });
  if (jail.cgroupDir && basename(jail.cgroupDir) === jail.vmId) {
    // A cgroup is removed with rmdir; it is busy for a moment while its last process is reaped.
    for (let attempt = 0; ; attempt++) {
      try {
        await rmdir(jail.cgroupDir);
        break;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== 'EBUSY' || attempt >= 50) break;
        await sleep(20);
      }
    }
  }
}
