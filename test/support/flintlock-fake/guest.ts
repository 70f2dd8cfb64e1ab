// The guests behind the fake flintlockd's microVMs. It hands each CREATED
// microVM to a guest runtime, which brings up what the VM's cloud-init
// user-data asks for, so the real compiled hearth-agent starts in connect
// mode and dials the driver back: ProcessGuests plays cloud-init with host
// processes; QemuGuests boots a real QEMU microvm of the minimal image.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { writeCpio, type CpioEntry } from '../../../src/image/cpio.ts';
import type { ProtoMicroVmSpec } from '../../../src/vm/flintlock/proto.ts';
import { BASE_KERNEL_ARGS, TCG_KERNEL_ARGS } from '../../../src/vm/kernel-args.ts';

/** Boots and stops the guests behind a fake flintlockd's microVMs. */
export interface FakeGuestRuntime {
  /** The microVM reached CREATED: its guest boots. */
  boot(uid: string, spec: ProtoMicroVmSpec): Promise<void>;
  /** The microVM is being deleted (or the fake closes): its guest goes. */
  stop(uid: string): Promise<void>;
}

interface CloudConfig {
  write_files?: { path: string; content?: string; permissions?: string; encoding?: string }[];
  runcmd?: (string | string[])[];
}

interface ProcessGuest {
  readonly root: string;
  readonly children: ChildProcess[];
  stopped: boolean;
}

/**
 * cloud-init as host processes, each guest under its own directory standing
 * in for its root: absolute guest paths under /etc, /usr and /var in the
 * user-data are rewritten into it, and /usr/local/sbin/hearth-agent there is
 * the agent binary given. Processes run in their own process group, which
 * stop() kills, as deleting the microVM would.
 */
export class ProcessGuests implements FakeGuestRuntime {
  readonly #guests = new Map<string, ProcessGuest>();

  constructor(
    private readonly options: {
      /** The compiled hearth-agent. */
      readonly agentBinary: string;
      /** Where the guests' roots go, one directory per uid. */
      readonly dir: string;
    },
  ) {}

  async boot(uid: string, spec: ProtoMicroVmSpec): Promise<void> {
    const root = join(this.options.dir, uid);
    const guest: ProcessGuest = { root, children: [], stopped: false };
    this.#guests.set(uid, guest);
    await mkdir(join(root, 'usr/local/sbin'), { recursive: true });
    await mkdir(join(root, 'var/log'), { recursive: true });
    await copyFile(this.options.agentBinary, join(root, 'usr/local/sbin/hearth-agent'));
    await chmod(join(root, 'usr/local/sbin/hearth-agent'), 0o755);
    const userData = spec.metadata?.['user-data'];
    if (userData === undefined) return; // no user-data: cloud-init has nothing to do
    const text = Buffer.from(userData, 'base64').toString('utf8');
    if (!text.startsWith('#cloud-config\n')) throw new Error('user-data is not #cloud-config; cloud-init would ignore it');
    const config = (parse(text) ?? {}) as CloudConfig;
    const inRoot = (value: string): string => value.replace(/(^|[\s'"(=<>])\/(etc|usr|var)\//g, `$1${root}/$2/`);
    for (const file of config.write_files ?? []) {
      const path = inRoot(file.path);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, file.encoding === 'b64' ? Buffer.from(file.content ?? '', 'base64') : (file.content ?? ''));
      await chmod(path, Number.parseInt(file.permissions ?? '0644', 8));
    }
    // cloud-init runs runcmd once, in order, each to its end; output goes to its log.
    const console = openSync(join(root, 'var/log/cloud-init-output.log'), 'a');
    try {
      for (const command of config.runcmd ?? []) {
        const argv = Array.isArray(command) ? command.map(inRoot) : ['sh', '-c', inRoot(command)];
        const child = spawn(argv[0]!, argv.slice(1), {
          cwd: root,
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: root },
          detached: true,
          stdio: ['ignore', console, console],
        });
        guest.children.push(child);
        await new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.once('error', () => resolve());
        });
      }
    } finally {
      closeSync(console);
    }
  }

  async stop(uid: string): Promise<void> {
    const guest = this.#guests.get(uid);
    if (!guest || guest.stopped) return;
    guest.stopped = true;
    for (const child of guest.children) {
      try {
        // The group: what runcmd left in the background (the agent) goes with it.
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }

  /** Stops every guest and removes their roots. */
  async close(): Promise<void> {
    for (const uid of this.#guests.keys()) await this.stop(uid);
    await rm(this.options.dir, { recursive: true, force: true });
  }

  /** The guest's cloud-init output and agent log, as its console would show them (kept after stop). */
  async console(uid: string): Promise<string> {
    const guest = this.#guests.get(uid);
    if (!guest) return '';
    const read = (path: string): Promise<string> => readFile(join(guest.root, path), 'utf8').catch(() => '');
    return (await read('var/log/cloud-init-output.log')) + (await read('var/log/hearth-agent.log'));
  }

  /** Guests booted and not stopped. */
  get running(): string[] {
    return [...this.#guests].filter(([, guest]) => !guest.stopped).map(([uid]) => uid);
  }
}

/**
 * Each microVM as a real QEMU microvm of Hearth's `minimal` image, the way a
 * flintlockd host would boot it: the kernel command line from the spec, one
 * NIC (QEMU user-mode networking: the host's loopback is 10.0.2.2 in the
 * guest), and what cloud-init's write_files would leave on disk, added as an
 * extra initramfs archive. The minimal image has no cloud-init, so runcmd is
 * not run: the agent, PID 1, finds /etc/hearth/agent.env and connects back by
 * itself. `agentBinary` replaces the image's /init, so the agent under test
 * is the one booted.
 */
export class QemuGuests implements FakeGuestRuntime {
  readonly #guests = new Map<string, { dir: string; child: ChildProcess; exited: Promise<void> }>();

  constructor(
    private readonly options: {
      readonly kernel: string;
      readonly initrd: string;
      readonly agentBinary: string;
      readonly dir: string;
      readonly accel: 'kvm' | 'tcg';
      readonly qemuBinary?: string;
    },
  ) {}

  async boot(uid: string, spec: ProtoMicroVmSpec): Promise<void> {
    const dir = join(this.options.dir, uid);
    await mkdir(dir, { recursive: true });
    const entries: CpioEntry[] = [{ kind: 'file', path: 'init', data: await readFile(this.options.agentBinary), mode: 0o755 }];
    const userData = spec.metadata?.['user-data'];
    if (userData !== undefined) {
      const config = (parse(Buffer.from(userData, 'base64').toString('utf8')) ?? {}) as CloudConfig;
      const dirs = new Set<string>();
      for (const file of config.write_files ?? []) {
        const parts = file.path.replace(/^\/+/, '').split('/').slice(0, -1);
        for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
      }
      for (const d of [...dirs].sort()) entries.push({ kind: 'dir', path: d });
      for (const file of config.write_files ?? []) {
        entries.push({
          kind: 'file',
          path: file.path,
          data: file.encoding === 'b64' ? Buffer.from(file.content ?? '', 'base64') : Buffer.from(file.content ?? ''),
          mode: Number.parseInt(file.permissions ?? '0644', 8),
        });
      }
    }
    // The kernel unpacks concatenated archives in order; later files replace earlier ones.
    const initrd = join(dir, 'initrd.cpio');
    await writeFile(initrd, Buffer.concat([await readFile(this.options.initrd), writeCpio(entries)]));
    const cmdline = [
      ...BASE_KERNEL_ARGS,
      ...(this.options.accel === 'tcg' ? TCG_KERNEL_ARGS : []),
      'hearth.net=1',
      ...Object.entries(spec.kernel?.cmdline ?? {}).map(([key, value]) => (value === '' ? key : `${key}=${value}`)),
    ].join(' ');
    const args = [
      '-M',
      'microvm,x-option-roms=off,rtc=on',
      '-accel',
      this.options.accel,
      ...(this.options.accel === 'kvm' ? ['-cpu', 'host'] : []),
      '-m',
      String(spec.memory_in_mb),
      '-smp',
      String(spec.vcpu),
      '-nodefaults',
      '-no-user-config',
      '-nographic',
      '-no-reboot',
      '-kernel',
      this.options.kernel,
      '-initrd',
      initrd,
      '-append',
      cmdline,
      '-serial',
      `file:${join(dir, 'console.log')}`,
      '-device',
      'virtio-rng-device',
      '-netdev',
      'user,id=net0',
      '-device',
      'virtio-net-device,netdev=net0',
    ];
    const child = spawn(this.options.qemuBinary ?? 'qemu-system-x86_64', args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', () => {});
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
    this.#guests.set(uid, { dir, child, exited });
  }

  async stop(uid: string): Promise<void> {
    const guest = this.#guests.get(uid);
    if (!guest || guest.child.exitCode !== null || guest.child.signalCode !== null) return;
    try {
      if (guest.child.pid) process.kill(-guest.child.pid, 'SIGKILL');
    } catch {
      // gone already
    }
    await guest.exited;
  }

  async close(): Promise<void> {
    for (const uid of this.#guests.keys()) await this.stop(uid);
    await rm(this.options.dir, { recursive: true, force: true });
  }

  /** The guest's serial console. */
  console(uid: string): Promise<string> {
    const guest = this.#guests.get(uid);
    return guest ? readFile(join(guest.dir, 'console.log'), 'utf8').catch(() => '') : Promise.resolve('');
  }

  /** QEMU processes still running. */
  get running(): string[] {
    return [...this.#guests].filter(([, g]) => g.child.exitCode === null && g.child.signalCode === null).map(([uid]) => uid);
  }
}
