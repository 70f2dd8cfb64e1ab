import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { HearthError } from '../errors.ts';
import { AgentChannelError, type AgentChannel, type OutputSink } from '../guest/channel.ts';
import type { Logger } from '../log.ts';
import { runProgram } from '../system/run.ts';
import type { ExecRequest, ExecResult, Vm, VmSpec } from './driver.ts';

/**
 * What every driver whose guests run the Hearth agent shares, whatever carries
 * the agent's stream (virtio-serial under QEMU, vsock under Firecracker).
 */
export const GUEST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function validateVmSpec(spec: VmSpec): void {
  const bad = (option: string, reason: string, hint: string): HearthError => new HearthError('HEARTH_ERR_BAD_OPTION', { option, reason, hint });
  if (!Number.isInteger(spec.cpus) || spec.cpus < 1 || spec.cpus > 64) throw bad('--cpus', `${spec.cpus} is not a whole number from 1 to 64`, 'for example --cpus 2');
  if (!Number.isInteger(spec.memoryMib) || spec.memoryMib < 128 || spec.memoryMib > 1024 * 1024) throw bad('--memory', `${spec.memoryMib} MiB is not a whole number from 128 to 1048576`, 'for example --memory 512');
}

/** A fresh identity for every VM, cold or restored: clones of one snapshot must not share it. */
export function freshIdentity(vmId: string): { unixTimeUs: bigint; hostname: string; machineId: string; seed: Buffer } {
  return { unixTimeUs: BigInt(Date.now()) * 1000n, hostname: `hearth-${vmId.slice(3)}`, machineId: randomBytes(16).toString('hex'), seed: randomBytes(64) };
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

export interface AgentVm {
  readonly vm: Vm;
  readonly dir: string;
  readonly log: Logger;
  channel?: AgentChannel;
  destroying?: Promise<void>;
}

/** Runs one command through the agent with the VM's timeout; a timed-out command costs the VM. */
export async function execOverAgent(live: AgentVm, request: ExecRequest, sink: OutputSink, destroy: () => Promise<void>): Promise<ExecResult> {
  const vmId = live.vm.id;
  const channel = live.channel;
  if (!channel) throw new HearthError('HEARTH_ERR_VM_GONE', { vmId, reason: 'no agent connection' });
  if (request.argv.length === 0) throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: 'command', reason: 'is empty', hint: 'give a command after --, e.g. hearth vm run -- uname -a' });
  live.vm.state = 'running';
  const timeoutSeconds = request.timeoutSeconds ?? 0;
  let timedOut = false;
  const timer = timeoutSeconds > 0
    ? setTimeout(() => {
        timedOut = true;
        live.log.warn({ timeoutSeconds }, 'command timed out; destroying the VM');
        void destroy();
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
      await destroy();
      throw new HearthError('HEARTH_ERR_VM_GONE', { vmId, reason: `${error.message}\n${await tail(join(live.dir, 'console.log'), 5)}`.trim() }, { cause: error });
    }
    throw new HearthError('HEARTH_ERR_AGENT_PROTOCOL', { vmId, reason: (error as Error).message }, { cause: error });
  } finally {
    clearTimeout(timer);
    if (live.vm.state === 'running') live.vm.state = 'ready';
  }
}
