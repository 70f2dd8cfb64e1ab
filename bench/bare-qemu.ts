/**
 * The reference every VM figure is divided by: a bare qemu-system-x86_64 with
 * exactly Hearth's arguments, kernel and initrd, driven by a raw socket client
 * that sends one pre-encoded EXEC frame (no registry, no logging, no identity:
 * nothing of Hearth's host side).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeExec, encodeFrame, FrameType } from '../src/guest/protocol.ts';
import type { Image } from '../src/image/store.ts';
import { qemuArgs } from '../src/vm/qemu/args.ts';

export const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

export const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};

/** Milliseconds from spawning QEMU to `marker` in the output of `command` run by the agent. */
export async function bareLaunch(options: {
  image: Image;
  accel: 'kvm' | 'tcg';
  cpus: number;
  memoryMib: number;
  network: boolean;
  workDir: string;
  command: string[];
  marker: string;
}): Promise<number> {
  const dir = await mkdtemp(join(options.workDir, 'bare-'));
  const args = qemuArgs({
    cpus: options.cpus,
    memoryMib: options.memoryMib,
    network: options.network,
    accel: options.accel,
    kernel: options.image.kernelPath,
    initrd: options.image.initrdPath,
    runtimeDir: dir,
  });
  const frame = encodeFrame(FrameType.EXEC, 1, encodeExec({ argv: options.command, env: { PATH: '/bin:/sbin:/usr/bin:/usr/sbin' }, cwd: '/', timeoutMs: 0 }));
  const started = performance.now();
  const qemu = spawn('qemu-system-x86_64', args, { stdio: 'ignore' });
  try {
    for (;;) {
      const done = await new Promise<boolean>((resolve) => {
        const socket = createConnection(join(dir, 'agent.sock'));
        socket.once('error', () => resolve(false));
        socket.once('connect', () => socket.write(frame));
        let seen = Buffer.alloc(0);
        socket.on('data', (chunk: Buffer) => {
          seen = Buffer.concat([seen, chunk]);
          if (seen.includes(options.marker)) {
            socket.destroy();
            resolve(true);
          }
        });
      });
      if (done) break;
      await sleep(5);
    }
    return performance.now() - started;
  } finally {
    qemu.kill('SIGKILL');
    await new Promise((resolve) => qemu.once('exit', resolve));
    await rm(dir, { recursive: true, force: true });
  }
}
