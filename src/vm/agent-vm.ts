import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { HearthError } from '../errors.ts';
import { AgentChannelError, type AgentChannel, type OutputSink } from '../guest/channel.ts';
import type { IdentityMessage, IdentityNetwork } from '../guest/protocol.ts';
import type { Logger } from '../log.ts';
import { runProgram } from '../system/run.ts';
import { shapeProblem, VM_BOUNDS, type ShapeBounds } from './bounds.ts';
import type { ExecRequest, ExecResult, Vm, VmRecord, VmSpec } from './driver.ts';
import { tearDownTap } from './network/tap.ts';
import { isSameProcess, newRegistryEntry, processStartTime, type RegistryEntry, type VmRegistry } from './registry.ts';

/**
 * What every driver whose guests run the Hearth agent shares, whatever carries
 * the agent's stream (virtio-serial under QEMU, vsock under Firecracker).
 */
export const GUEST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** A spec's size against the bounds (VM_BOUNDS, or a driver's capabilities), refused with the nearest sizes that would do. */
export function validateVmSpec(spec: VmSpec, bounds: ShapeBounds = VM_BOUNDS, driver = 'Hearth'): void {
  const problem = shapeProblem(spec, bounds, driver);
  if (!problem) return;
  if (problem.cpus)
    throw new HearthError('HEARTH_ERR_BAD_OPTION', {
      option: '--cpus',
      reason: problem.reason,
      hint: `for example ${problem.cpus.map((n) => `--cpus ${n}`).join(' or ')}`,
    });
  throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: '--memory', reason: problem.reason, hint: `for example --memory ${problem.memoryMib ?? 512}` });
}

/**
 * A fresh identity for every VM, cold or restored: clones of one snapshot must
 * not share it. `network` re-addresses eth0, for a clone restored onto a TAP
 * device of its own (an agent that announces HELLO_FLAG_IDENTITY_NETWORK applies it).
 */
export function freshIdentity(vmId: string, network?: IdentityNetwork): IdentityMessage {
  return {
    unixTimeUs: BigInt(Date.now()) * 1000n,
    hostname: `hearth-${vmId.slice(3)}`,
    machineId: randomBytes(16).toString('hex'),
    seed: randomBytes(64),
    ...(network ? { network } : {}),
  };
}

export async function tail(path: string, lines = 15): Promise<string> {
  try {
    const text = (await readFile(path, 'utf8')).trimEnd();
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** A job's working tree as a read-only ext4 disk labelled hearth-src, sized with room to spare. */
export async function makeSourceDisk(source: string, dir: string): Promise<string> {
  const disk = join(dir, 'src.ext4');
  const { stdout } = await runProgram('du', ['-sb', source]);
  const megabytes = Math.ceil((Number(stdout.split('\t')[0] ?? 0) * 1.3) / 1024 ** 2) + 32;
  await runProgram('mkfs.ext4', ['-q', '-F', '-L', 'hearth-src', '-E', 'root_owner=0:0', '-d', source, disk, `${megabytes}M`], { timeoutMs: 600_000 });
  return disk;
}

/**
 * Boot step shared by every driver with a local VMM: a fresh id, its runtime
 * directory and its registry entry, written before anything runs so that a
 * process killed from here on leaves an entry `hearth vm gc` finds.
 */
export async function registerNewVm(
  registry: VmRegistry,
  logger: Logger,
  vm: Omit<Parameters<typeof newRegistryEntry>[0], 'id'>,
): Promise<{ id: string; dir: string; entry: RegistryEntry; log: Logger }> {
  const id = `vm-${randomBytes(6).toString('hex')}`;
  const dir = await registry.create(id);
  const entry = newRegistryEntry({ id, ...vm });
  await registry.write(entry);
  return { id, dir, entry, log: logger.child({ vmId: id }) };
}

export interface StartedVmm {
  readonly child: ChildProcess;
  /** Resolves when the VMM exited, or could not be spawned. */
  readonly exited: Promise<void>;
  /** Why it could not be spawned (ENOENT: the program is missing), once `exited` resolved. */
  spawnError(): NodeJS.ErrnoException | undefined;
}

/**
 * Boot step shared by every driver with a local VMM: the VMM in a process group
 * of its own (a terminal's Ctrl-C reaches Hearth, which then tears the VM down
 * in order), its output appended to `logFile`, and its pid and start time
 * recorded in the registry entry.
 */
export async function startVmm(
  registry: VmRegistry,
  entry: RegistryEntry,
  command: string,
  args: readonly string[],
  output: { readonly logFile: string; readonly stdout: boolean },
): Promise<StartedVmm> {
  const logFd = openSync(output.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, { detached: true, stdio: ['ignore', output.stdout ? logFd : 'ignore', logFd] });
  } finally {
    closeSync(logFd);
  }
  let failure: NodeJS.ErrnoException | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (error) => {
      failure = error;
      resolve();
    });
  });
  entry.pid = child.pid ?? 0;
  entry.pidStart = processStartTime(entry.pid) ?? '';
  await registry.write(entry);
  return { child, exited, spawnError: () => failure };
}

export interface AgentVm {
  readonly vm: Vm;
  readonly dir: string;
  readonly log: Logger;
  channel?: AgentChannel;
  destroying?: Promise<void>;
}

/** A VM whose VMM runs on this host as a child of this process, the leader of its own process group. */
export interface LocalVm extends AgentVm {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
}

/** Runs one command through the agent with the VM's timeout; a timed-out command costs the VM. */
export async function execOverAgent(
  live: AgentVm,
  request: ExecRequest,
  sink: OutputSink,
  destroy: () => Promise<void>,
  /** Where to look when the VM went away mid-command; by default the tail of its console log. */
  goneDetail: () => Promise<string> = () => tail(join(live.dir, 'console.log'), 5),
): Promise<ExecResult> {
  const vmId = live.vm.id;
  const channel = live.channel;
  if (!channel) throw new HearthError('HEARTH_ERR_VM_GONE', { vmId, reason: 'no agent connection' });
  if (request.argv.length === 0)
    throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: 'command', reason: 'is empty', hint: 'give a command after --, e.g. hearth vm run -- uname -a' });
  live.vm.state = 'running';
  const timeoutSeconds = request.timeoutSeconds ?? 0;
  let timedOut = false;
  const timer =
    timeoutSeconds > 0
      ? setTimeout(() => {
          timedOut = true;
          live.log.warn({ timeoutSeconds }, 'command timed out; destroying the VM');
          destroy().catch((error: unknown) => live.log.error({ err: error }, 'destroying the timed-out VM failed'));
        }, timeoutSeconds * 1000)
      : undefined;
  const started = performance.now();
  live.log.info({ argv0: request.argv[0], envKeys: Object.keys(request.env ?? {}), cwd: request.cwd }, 'exec');
  try {
    const outcome = await channel.exec(
      {
        argv: request.argv,
        env: { PATH: GUEST_PATH, HOME: '/root', LANG: 'C.UTF-8', HOSTNAME: `hearth-${vmId.slice(3)}`, ...request.env },
        cwd: request.cwd ?? '/root',
        timeoutMs: timeoutSeconds * 1000,
      },
      sink,
    );
    const result = { exitCode: outcome.exitCode, signal: outcome.signal, durationMs: performance.now() - started };
    live.log.info({ exitCode: result.exitCode, durationMs: Math.round(result.durationMs) }, 'exec finished');
    return result;
  } catch (error) {
    if (timedOut) {
      await live.destroying;
      throw new HearthError('HEARTH_ERR_EXEC_TIMEOUT', { vmId, timeoutSeconds }, { cause: error });
    }
    if (error instanceof AgentChannelError && error.kind === 'closed') {
      await destroy().catch((cleanup: unknown) => live.log.error({ err: cleanup }, 'destroying the VM failed'));
      throw new HearthError('HEARTH_ERR_VM_GONE', { vmId, reason: `${error.message}\n${await goneDetail()}`.trim() }, { cause: error });
    }
    throw new HearthError('HEARTH_ERR_AGENT_PROTOCOL', { vmId, reason: (error as Error).message }, { cause: error });
  } finally {
    clearTimeout(timer);
    if (live.vm.state === 'running') live.vm.state = 'ready';
  }
}

/**
 * The pid of a VMM whose command line has an argument containing `needle`, if
 * one runs. `programs` are the VMM's executable names; the first two arguments
 * are checked, so a stand-in run through an interpreter (`node …/firecracker`) counts.
 */
export async function findVmmByArgument(programs: readonly string[], needle: string): Promise<number | undefined> {
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const argv = (await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const isVmm = argv.slice(0, 2).some((arg) => programs.some((program) => basename(arg).startsWith(program)));
    if (isVmm && argv.some((arg) => arg.includes(needle))) return Number(name);
  }
  return undefined;
}

export interface LiveVmsOptions {
  readonly registry: VmRegistry;
  /** Hearth's runtime directory, where TAP devices are accounted for. */
  readonly runtimeDir: string;
  /** Where a teardown step that fails is reported. */
  readonly logger: Logger;
  /** Executable names of this driver's VMM processes (see findVmmByArgument). */
  readonly vmmPrograms: readonly string[];
  /** An argument only this VM's VMM has on its command line, to find one whose pid was never recorded. */
  readonly leakMarker: (vmId: string) => string;
  /** Driver-specific cleanup once the VMM is dead, before the runtime directory goes; must tolerate a VM it never set up. */
  readonly cleanUp?: (vmId: string, runtimeDir: string) => Promise<void>;
}

/**
 * The VMs one driver instance started, whatever runs them: lookup, the state
 * check before an action, and a destroy that runs once at a time per VM. Every
 * driver keeps its live VMs here (LiveVms adds the teardown of a local VMM).
 */
export class AgentVms<T extends AgentVm> {
  private readonly vms = new Map<string, T>();

  add(live: T): void {
    this.vms.set(live.vm.id, live);
  }

  get(vmId: string): T | undefined {
    return this.vms.get(vmId);
  }

  ids(): string[] {
    return [...this.vms.keys()];
  }

  /** The VM, if this process owns it and it is ready for `action`. */
  require(vmId: string, action: string): T {
    const live = this.vms.get(vmId);
    if (!live) throw new HearthError('HEARTH_ERR_VM_GONE', { vmId, reason: 'this process does not own a live VM with that id' });
    if (live.vm.state !== 'ready') {
      throw new HearthError('HEARTH_ERR_VM_STATE', {
        vmId,
        action,
        state: live.vm.state,
        hint: live.vm.state === 'running' ? 'wait for the running command to finish' : 'start a new VM',
      });
    }
    return live;
  }

  /**
   * Runs `teardown` for the VM (given its live record when this process owns
   * it): a destroy already under way is joined, not repeated. Once it succeeds
   * the VM is destroyed and forgotten; when it fails, a later destroy tries again.
   */
  destroyWith(vmId: string, teardown: (live: T | undefined) => Promise<void>): Promise<void> {
    const live = this.vms.get(vmId);
    if (live?.destroying) return live.destroying;
    if (live) live.vm.state = 'destroying';
    const work = teardown(live).then(
      () => {
        if (!live) return;
        live.vm.state = 'destroyed';
        this.vms.delete(vmId);
      },
      (error: unknown) => {
        if (live) live.destroying = undefined;
        throw error;
      },
    );
    if (live) live.destroying = work;
    return work;
  }
}

/**
 * The teardown every driver with a local VMM shares: kill the VMM's process
 * group, remove its TAP device and runtime directory. The drivers keep only
 * what is particular to their VMM (start, snapshot, restore).
 */
export class LiveVms<T extends LocalVm> extends AgentVms<T> {
  constructor(private readonly options: LiveVmsOptions) {
    super();
  }

  /** Ready for a command, with its VMM still running: a pool hands out nothing less. */
  isAlive(vmId: string): boolean {
    const live = this.get(vmId);
    return live !== undefined && live.vm.state === 'ready' && live.child.exitCode === null && live.child.signalCode === null;
  }

  /**
   * Idempotent, and works for a VM another process started (`hearth vm gc`):
   * kills the VMM's process group and waits for it, then removes what the VM
   * held on the host.
   */
  destroy(vmId: string): Promise<void> {
    return this.destroyWith(vmId, async (live) => {
      live?.channel?.close();
      const { registry } = this.options;
      const entry = await registry.read(vmId);
      let pid = live?.child.pid ?? entry?.pid ?? 0;
      let ours = live !== undefined || (entry !== undefined && isSameProcess(entry.pid, entry.pidStart));
      if (!ours) {
        // A process killed between spawning the VMM and recording its pid leaves an entry
        // without one: find the VMM by the argument only it has on its command line.
        const found = await findVmmByArgument(this.options.vmmPrograms, this.options.leakMarker(vmId));
        if (found) {
          pid = found;
          ours = true;
        }
      }
      if (pid > 0 && ours) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // already gone
        }
        if (live) await live.exited;
        for (let i = 0; i < 500 && processStartTime(pid) !== undefined; i++) await sleep(10);
      }
      const dir = registry.dirOf(vmId);
      await tearDownTap(this.options.runtimeDir, dir, live?.log ?? this.options.logger.child({ vmId }));
      await this.options.cleanUp?.(vmId, dir);
      await registry.remove(vmId);
      live?.log.info('vm destroyed');
    });
  }

  /** Destroys every VM this process started (the signal handlers call it). */
  async destroyAll(): Promise<void> {
    await Promise.all(this.ids().map((id) => this.destroy(id)));
  }

  list(): Promise<VmRecord[]> {
    return this.options.registry.list();
  }
}
