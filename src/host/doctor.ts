import { access, constants, mkdir, readFile, statfs } from 'node:fs/promises';
import type { HearthPaths } from '../config/paths.ts';
import { isHearthError } from '../errors.ts';
import { loadImage, IMAGE_NAMES } from '../image/store.ts';
import { findExecutable, runProgram } from '../system/run.ts';
import type { QemuDriver } from '../vm/qemu/driver.ts';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  readonly name: string;
  readonly status: CheckStatus;
  readonly detail: string;
  /** What to do about a warn or fail. */
  readonly fix?: string;
}

export interface DoctorReport {
  readonly checks: Check[];
  /** false when Hearth cannot run VMs here. */
  readonly canRunVms: boolean;
}

const GiB = 1024 ** 3;

async function memAvailableBytes(): Promise<number> {
  const meminfo = await readFile('/proc/meminfo', 'utf8');
  const kib = /MemAvailable:\s+(\d+) kB/.exec(meminfo)?.[1];
  return Number(kib ?? 0) * 1024;
}

async function checkQemu(binary: string): Promise<Check> {
  const qemu = binary.includes('/') ? binary : await findExecutable(binary);
  const missing: Check = { name: 'qemu', status: 'fail', detail: `${binary} not found`, fix: 'apt-get install -y --no-install-recommends qemu-system-x86' };
  if (!qemu) return missing;
  try {
    await access(qemu, constants.X_OK);
  } catch {
    return missing;
  }
  const version = (await runProgram(qemu, ['--version'])).stdout.split('\n')[0] ?? '';
  return { name: 'qemu', status: 'ok', detail: `${qemu}: ${version}` };
}

async function checkTool(name: string, binary: string, pkg: string, why: string): Promise<Check> {
  const path = await findExecutable(binary);
  return path
    ? { name, status: 'ok', detail: path }
    : { name, status: 'fail', detail: `${binary} not found (${why})`, fix: `apt-get install -y --no-install-recommends ${pkg}` };
}

/** `firecracker --version` / `jailer --version` print e.g. "Firecracker v1.7.0" on their first line. */
async function versionOf(path: string): Promise<string> {
  try {
    return (await runProgram(path, ['--version'], { timeoutMs: 5000 })).stdout.split('\n')[0]?.trim() || 'version unknown';
  } catch {
    return 'does not run (--version failed)';
  }
}

async function checkFirecracker(binary: string): Promise<Check[]> {
  const path = binary.includes('/') ? binary : await findExecutable(binary);
  if (!path)
    return [
      {
        name: 'firecracker',
        status: 'warn',
        detail: 'not installed; only the QEMU driver is available',
        fix: 'optional: install a firecracker release binary on bare-metal hosts with KVM that want the Firecracker driver (--driver firecracker)',
      },
    ];
  const kvm = await access('/dev/kvm', constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  const checks: Check[] = [
    kvm
      ? { name: 'firecracker', status: 'ok', detail: `${path} (${await versionOf(path)})` }
      : {
          name: 'firecracker',
          status: 'warn',
          detail: `${path} (${await versionOf(path)}), but /dev/kvm is not usable: Firecracker needs KVM`,
          fix: 'run on a host with KVM and add this user to the kvm group, or use the qemu driver',
        },
  ];
  const jailer = await findExecutable('jailer');
  checks.push(
    jailer
      ? { name: 'jailer', status: 'ok', detail: `${jailer} (${await versionOf(jailer)})` }
      : {
          name: 'jailer',
          status: 'warn',
          detail: 'not installed; Firecracker VMs run without its chroot and cgroup limits',
          fix: 'optional: install the jailer from the same Firecracker release',
        },
  );
  return checks;
}

async function checkDisk(paths: HearthPaths): Promise<Check> {
  await mkdir(paths.cache, { recursive: true });
  const fs = await statfs(paths.cache);
  const free = fs.bavail * fs.bsize;
  const detail = `${(free / GiB).toFixed(1)} GiB free under ${paths.cache}`;
  if (free < 0.5 * GiB)
    return {
      name: 'disk',
      status: 'fail',
      detail,
      fix: 'free disk space, or point HEARTH_CACHE_DIR at a larger disk (images need ~200 MiB, each snapshot ~100 MiB)',
    };
  if (free < 2 * GiB) return { name: 'disk', status: 'warn', detail, fix: 'free disk space: snapshots take ~100 MiB each' };
  return { name: 'disk', status: 'ok', detail };
}

async function checkMemory(): Promise<Check> {
  const free = await memAvailableBytes();
  const detail = `${(free / GiB).toFixed(1)} GiB available`;
  if (free < 256 * 1024 ** 2) return { name: 'memory', status: 'fail', detail, fix: 'free memory: the smallest VM needs 128 MiB plus QEMU' };
  if (free < GiB) return { name: 'memory', status: 'warn', detail, fix: 'free memory: only a few small VMs fit' };
  return { name: 'memory', status: 'ok', detail };
}

/** What decides whether KVM can work here, for the accelerator check's fix. */
export interface KvmFacts {
  /** HEARTH_ACCEL, when it forces an accelerator. */
  readonly override?: string | undefined;
  /** The state of /dev/kvm for this user. */
  readonly device: 'usable' | 'absent' | 'denied';
  /** Whether /proc/cpuinfo shows the vmx (Intel) or svm (AMD) flag. */
  readonly cpuFlag: boolean;
}

export async function kvmFacts(options: { device?: string; cpuinfo?: string; override?: string | undefined } = {}): Promise<KvmFacts> {
  const device = options.device ?? '/dev/kvm';
  let state: KvmFacts['device'] = 'usable';
  try {
    await access(device, constants.R_OK | constants.W_OK);
  } catch (error) {
    state = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'absent' : 'denied';
  }
  const cpuinfo = await readFile(options.cpuinfo ?? '/proc/cpuinfo', 'utf8').catch((error: unknown) => {
    process.stderr.write(`hearth: doctor: cannot read ${options.cpuinfo ?? '/proc/cpuinfo'} (${(error as Error).message}); assuming no vmx/svm flag\n`);
    return '';
  });
  return { override: options.override, device: state, cpuFlag: /^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo) };
}

/** What to do when VMs run under TCG: the missing piece named, not just "a host with usable /dev/kvm". */
export function kvmFix(facts: KvmFacts): string {
  const tail = 're-test with hearth doctor --reprobe';
  if (facts.override === 'tcg') return 'HEARTH_ACCEL=tcg forces TCG: unset it to use KVM where it works';
  if (facts.device === 'denied') return `this user may not open /dev/kvm: add it to group kvm (sudo usermod -aG kvm "$USER", then log in again); ${tail}`;
  if (!facts.cpuFlag) {
    const where = facts.device === 'absent' ? 'there is no /dev/kvm and ' : '';
    return `${where}/proc/cpuinfo shows no vmx/svm flag: this is likely a VM whose host does not offer nested virtualisation (enable it there, e.g. kvm_intel nested=1 or the cloud's nested-virtualisation option), or a CPU with virtualisation off in the firmware; ${tail}`;
  }
  if (facts.device === 'absent')
    return `the CPU supports virtualisation but there is no /dev/kvm: load the module (sudo modprobe kvm_intel or kvm_amd); ${tail}`;
  return `/dev/kvm is usable and the CPU has vmx/svm, yet the KVM guest failed (see the line above): check dmesg for kvm errors; ${tail}`;
}

/** Collects every check; `reprobe` boots a fresh KVM probe instead of trusting this boot's cached verdict. */
export async function runDoctor(
  paths: HearthPaths,
  driver: QemuDriver,
  options: { reprobe?: boolean; firecrackerBinary?: string | null; accel?: 'auto' | 'kvm' | 'tcg' } = {},
): Promise<DoctorReport> {
  const checks: Check[] = [];
  const qemu = await checkQemu(driver.qemuBinary);
  checks.push(qemu);
  checks.push(await checkTool('busybox', 'busybox', 'busybox-static', 'the guest userland; needed to build images'));
  checks.push(await checkTool('cc', 'cc', 'gcc libc6-dev', 'compiles the guest agent; needed to build images'));
  checks.push(await checkTool('dpkg-deb', 'dpkg-deb', 'dpkg', 'unpacks the guest kernel package'));
  checks.push(...(await checkFirecracker(options.firecrackerBinary ?? 'firecracker')));
  checks.push(await checkDisk(paths));
  checks.push(await checkMemory());

  let imagesReady = true;
  for (const name of IMAGE_NAMES) {
    try {
      const image = await loadImage(paths.cache, name);
      checks.push({ name: `image ${name}`, status: 'ok', detail: `${image.id} (kernel ${image.kernel.package} ${image.kernel.version})` });
    } catch (error) {
      // minimal is what every VM needs; debian only `hearth run`.
      if (name === 'minimal') imagesReady = false;
      checks.push({
        name: `image ${name}`,
        status: name === 'minimal' ? 'fail' : 'warn',
        detail: isHearthError(error) ? error.message : (error as Error).message,
        fix: `hearth image build ${name}`,
      });
    }
  }

  if (qemu.status === 'ok' && imagesReady) {
    const decision = await driver.accel(options.reprobe ?? false);
    checks.push({
      name: 'accelerator',
      status: decision.accel === 'kvm' ? 'ok' : 'warn',
      detail: `${decision.accel.toUpperCase()}: ${decision.reason}`,
      ...(decision.accel === 'tcg'
        ? {
            fix: `VMs run under TCG (software emulation, slower). For KVM: ${kvmFix(await kvmFacts({ override: options.accel === 'auto' ? undefined : options.accel }))}`,
          }
        : {}),
    });
  } else {
    checks.push({
      name: 'accelerator',
      status: 'warn',
      detail: 'not probed: needs QEMU and the minimal image',
      fix: 'fix the failures above, then run hearth doctor again',
    });
  }
  const canRunVms = qemu.status === 'ok' && imagesReady && !checks.some((c) => (c.name === 'disk' || c.name === 'memory') && c.status === 'fail');
  return { checks, canRunVms };
}
