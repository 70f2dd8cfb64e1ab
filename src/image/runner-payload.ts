import { createHash } from 'node:crypto';
import { copyFile, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { HearthError } from '../errors.ts';
import { runProgram } from '../system/run.ts';
import { writeCpio, type CpioEntry } from './cpio.ts';
import { findBuiltImage, imagesDir, publishImage, type Image } from './store.ts';

/** Where the forge runners live in the guest: the paths Hearth's serve config points at by default. */
export const GITHUB_RUNNER_DIR = 'opt/actions-runner';
export const GITLAB_RUNNER_PATH = 'usr/local/bin/gitlab-runner';

export interface RunnerPayloadOptions {
  /** The official actions-runner tarball (actions-runner-linux-x64-*.tar.gz). */
  readonly githubRunner?: string | undefined;
  /** The gitlab-runner binary (gitlab-runner-linux-amd64). */
  readonly gitlabRunner?: string | undefined;
}

interface PayloadFile {
  /** Relative to the guest's root. */
  readonly path: string;
  readonly hostPath?: string;
  readonly kind: 'dir' | 'file' | 'symlink';
  readonly mode: number;
  readonly target?: string;
}

async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function requireFile(path: string, option: string, what: string): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) throw new HearthError('HEARTH_ERR_BAD_OPTION', { option, reason: `${path} is not a file`, hint: `give the path of ${what}` });
}

/**
 * Names the image build writes into a guest filesystem. debugfs reads its
 * commands one per line with double-quoted arguments, so a control character (a
 * newline above all), a double quote or a backslash in a crafted tarball's file
 * name or link target could smuggle in a command of its own. The official
 * release tarballs use none of them: such a name is refused, not escaped.
 */
function unsafeName(name: string): boolean {
  for (const char of name) {
    const code = char.codePointAt(0) ?? 0;
    if (code < 0x20 || code === 0x7f || char === '"' || char === '\\') return true;
  }
  return false;
}

function requireSafeName(name: string, what: string, tarball: string): void {
  if (!unsafeName(name)) return;
  throw new HearthError('HEARTH_ERR_BAD_OPTION', {
    option: '--github-runner',
    reason: `${tarball} holds a ${what} ${JSON.stringify(name)} with a control character, a double quote or a backslash, which no official runner release has`,
    hint: 'give the actions-runner-linux-x64-<version>.tar.gz release tarball, unchanged',
  });
}

async function walk(root: string, dir: string, into: string, files: PayloadFile[], tarball: string): Promise<void> {
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const hostPath = join(dir, entry.name);
    const path = join(into, relative(root, hostPath));
    requireSafeName(path, 'file name', tarball);
    const info = await lstat(hostPath);
    if (entry.isSymbolicLink()) {
      const target = await readlink(hostPath);
      requireSafeName(target, 'link target', tarball);
      files.push({ path, kind: 'symlink', mode: 0o777, target });
    } else if (entry.isDirectory()) {
      files.push({ path, kind: 'dir', mode: info.mode & 0o7777 });
      await walk(root, hostPath, into, files, tarball);
    } else if (entry.isFile()) files.push({ path, hostPath, kind: 'file', mode: info.mode & 0o7777 });
  }
}

/**
 * Puts the forge runners into a copy of a built image, as a new content-addressed
 * image: the actions-runner tarball unpacked into /opt/actions-runner, the
 * gitlab-runner binary at /usr/local/bin/gitlab-runner. An initramfs image gets
 * a second cpio archive appended (the kernel unpacks both); a rootfs image gets
 * the files written into its ext4 with debugfs (no mount, no root).
 */
export async function addRunnersToImage(
  cacheDir: string,
  base: Image,
  options: RunnerPayloadOptions,
  publishAs: string,
): Promise<{ image: Image; built: boolean }> {
  const inputs: Record<string, string> = { base: base.id };
  if (options.githubRunner) {
    await requireFile(options.githubRunner, '--github-runner', 'the actions-runner-linux-x64-<version>.tar.gz from github.com/actions/runner/releases');
    inputs.githubRunner = await sha256File(options.githubRunner);
  }
  if (options.gitlabRunner) {
    await requireFile(options.gitlabRunner, '--gitlab-runner', 'the gitlab-runner-linux-amd64 binary from gitlab-runner-downloads.s3.amazonaws.com');
    inputs.gitlabRunner = await sha256File(options.gitlabRunner);
  }
  const id = `${publishAs}-${createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16)}`;
  const cached = await findBuiltImage(cacheDir, publishAs, id);
  if (cached) return { image: cached, built: false };

  const staging = await mkdtemp(join(imagesDir(cacheDir), '.build-'));
  try {
    const files: PayloadFile[] = [];
    if (options.githubRunner) {
      const unpacked = join(staging, 'github-runner');
      await mkdir(unpacked);
      await runProgram('tar', ['-xf', options.githubRunner, '-C', unpacked], { timeoutMs: 300_000 });
      const runSh = await stat(join(unpacked, 'run.sh')).catch(() => undefined);
      if (!runSh)
        throw new HearthError('HEARTH_ERR_BAD_OPTION', {
          option: '--github-runner',
          reason: `${options.githubRunner} has no run.sh at its top level`,
          hint: 'give the actions-runner-linux-x64-<version>.tar.gz release tarball, unchanged',
        });
      files.push({ path: 'opt', kind: 'dir', mode: 0o755 }, { path: GITHUB_RUNNER_DIR, kind: 'dir', mode: 0o755 });
      await walk(unpacked, unpacked, GITHUB_RUNNER_DIR, files, options.githubRunner);
    }
    if (options.gitlabRunner) {
      files.push({ path: 'usr/local', kind: 'dir', mode: 0o755 }, { path: 'usr/local/bin', kind: 'dir', mode: 0o755 });
      files.push({ path: GITLAB_RUNNER_PATH, hostPath: options.gitlabRunner, kind: 'file', mode: 0o755 });
    }
    await copyFile(base.kernelPath, join(staging, 'vmlinuz'));
    if (base.kind === 'initramfs') {
      const entries: CpioEntry[] = [];
      for (const f of files) {
        if (f.kind === 'dir') entries.push({ kind: 'dir', path: f.path, mode: f.mode });
        else if (f.kind === 'symlink') entries.push({ kind: 'symlink', path: f.path, target: f.target ?? '' });
        else entries.push({ kind: 'file', path: f.path, data: await readFile(f.hostPath ?? ''), mode: f.mode });
      }
      await writeFile(join(staging, 'initrd.cpio'), Buffer.concat([await readFile(base.initrdPath), writeCpio(entries)]));
    } else {
      if (!base.rootfsPath) throw new Error(`image ${base.id} is a rootfs image without a rootfs file`);
      await copyFile(base.initrdPath, join(staging, 'initrd.cpio'));
      await runProgram('cp', ['--sparse=always', base.rootfsPath, join(staging, 'rootfs.ext4')], { timeoutMs: 600_000 });
      // Every name passed requireSafeName: quoting needs no escapes.
      const quote = (p: string): string => `"${p}"`;
      const commands = files.map((f) =>
        f.kind === 'dir'
          ? `mkdir ${quote('/' + f.path)}`
          : f.kind === 'symlink'
            ? `symlink ${quote('/' + f.path)} ${quote(f.target ?? '')}`
            : `write ${quote(f.hostPath ?? '')} ${quote('/' + f.path)}`,
      );
      // debugfs `write` takes the host file's mode; directories get theirs set explicitly.
      for (const f of files) if (f.kind === 'dir') commands.push(`sif ${quote('/' + f.path)} mode 0${(0o040000 | f.mode).toString(8)}`);
      await writeFile(join(staging, 'debugfs.cmds'), commands.join('\n') + '\n');
      await runProgram('debugfs', ['-w', '-f', join(staging, 'debugfs.cmds'), join(staging, 'rootfs.ext4')], { timeoutMs: 600_000 });
      await rm(join(staging, 'debugfs.cmds'));
    }
    await rm(join(staging, 'github-runner'), { recursive: true, force: true });
    const image = await publishImage(cacheDir, staging, {
      name: publishAs,
      id,
      kind: base.kind,
      createdAt: new Date().toISOString(),
      kernel: { ...base.kernel, file: 'vmlinuz' },
      initrd: 'initrd.cpio',
      ...(base.kind === 'rootfs' ? { rootfs: 'rootfs.ext4' } : {}),
      inputs: { ...base.inputs, ...inputs },
    });
    return { image, built: true };
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}
