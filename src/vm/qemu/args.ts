import { baseKernelArgs } from '../kernel-args.ts';

/**
 * The QEMU command line for one microVM, as a pure function so that tests can
 * read it and the benchmark can run a bare QEMU with exactly the same arguments.
 */
export interface QemuLaunch {
  readonly accel: 'kvm' | 'tcg';
  readonly cpus: number;
  readonly memoryMib: number;
  readonly network: boolean;
  readonly kernel: string;
  readonly initrd: string;
  readonly runtimeDir: string;
  /** Block devices in order; the agent finds them by ext4 label, not by name. */
  readonly disks?: readonly QemuDisk[];
  /** Migration stream to restore from (a snapshot's state file). */
  readonly incoming?: string;
  /** Appended to the kernel command line (the benchmark's one-shot mode uses it). */
  readonly extraKernelArgs?: readonly string[];
  /** A TAP device instead of user-mode networking (its addresses come in extraKernelArgs). */
  readonly tap?: string;
}

export interface QemuDisk {
  readonly path: string;
  readonly format: 'raw' | 'qcow2';
  readonly readOnly: boolean;
}

export const AGENT_PORT_NAME = 'hearth.agent';

export function kernelCommandLine(launch: Pick<QemuLaunch, 'accel' | 'network' | 'extraKernelArgs' | 'tap'>): string {
  // Disk roles (hearth.root=disk, hearth.src=disk) come in through extraKernelArgs from the driver.
  return [
    ...baseKernelArgs(launch.accel),
    `hearth.port=${AGENT_PORT_NAME}`,
    ...(launch.network && !launch.tap ? ['hearth.net=1'] : []),
    ...(launch.extraKernelArgs ?? []),
  ].join(' ');
}

/** QEMU option values use ',' as a separator; a literal comma is written twice. */
function optionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/** For `-incoming exec:`, which QEMU hands to /bin/sh. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

export function qemuArgs(launch: QemuLaunch): string[] {
  const dir = launch.runtimeDir;
  const args = [
    '-M',
    'microvm,x-option-roms=off,rtc=on',
    '-accel',
    launch.accel,
    ...(launch.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-m',
    String(launch.memoryMib),
    '-smp',
    String(launch.cpus),
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
    '-kernel',
    launch.kernel,
    '-initrd',
    launch.initrd,
    '-append',
    kernelCommandLine(launch),
    '-serial',
    `file:${optionValue(`${dir}/console.log`)}`,
    '-device',
    'virtio-serial-device',
    '-chardev',
    `socket,id=agent,path=${optionValue(`${dir}/agent.sock`)},server=on,wait=off`,
    '-device',
    `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`,
    '-qmp',
    `unix:${optionValue(`${dir}/qmp.sock`)},server=on,wait=off`,
    '-device',
    'virtio-rng-device',
  ];
  (launch.disks ?? []).forEach((disk, i) => {
    args.push(
      '-drive',
      `file=${optionValue(disk.path)},if=none,id=disk${i},format=${disk.format}${disk.readOnly ? ',readonly=on' : ''}`,
      '-device',
      `virtio-blk-device,drive=disk${i}`,
    );
  });
  if (launch.network)
    args.push(
      '-netdev',
      launch.tap ? `tap,id=net0,ifname=${optionValue(launch.tap)},script=no,downscript=no` : 'user,id=net0',
      '-device',
      'virtio-net-device,netdev=net0',
    );
  if (launch.incoming) args.push('-incoming', `exec:cat ${shellQuote(launch.incoming)}`);
  return args;
}
