/**
 * npm run bench: VM launch figures, each as a ratio against a reference
 * measured in the same run, medians over BENCH_RUNS (default 7) runs.
 *
 * - cold launch: Hearth's boot + exec until the command's output arrives, ÷ a
 *   bare qemu-system-x86_64 started with exactly the same arguments, kernel and
 *   initrd, driven by a raw socket client that sends one pre-encoded EXEC
 *   frame (no registry, no logging, no identity: nothing of Hearth's host side).
 * - snapshot restore: restore + exec until output ÷ Hearth's cold launch.
 * - host RSS of the controlling Node process per live VM.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { resolvePaths } from '../src/config/paths.ts';
import { loadImage } from '../src/image/store.ts';
import { createLogger } from '../src/log.ts';
import { QemuDriver } from '../src/vm/qemu/driver.ts';
import { bareLaunch, median } from './bare-qemu.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const SPEC = { image: 'minimal', cpus: 1, memoryMib: 256, network: false };
const COMMAND = ['echo', 'ready'];

const root = await mkdtemp(join(tmpdir(), 'hearth-bench-'));
const paths = { cache: resolvePaths().cache, data: join(root, 'data'), runtime: join(root, 'run') };
const driver = new QemuDriver({ paths, logger: createLogger({ level: 'silent' }), accel: process.env.HEARTH_ACCEL });
const { accel } = await driver.accel();
const image = await loadImage(paths.cache, 'minimal');

function bareReference(): Promise<number> {
  return bareLaunch({ accel, cpus: SPEC.cpus, memoryMib: SPEC.memoryMib, network: SPEC.network, image, workDir: root, command: COMMAND, marker: 'ready\n' });
}

async function hearthLaunch(from?: string): Promise<number> {
  const started = performance.now();
  const vm = from ? await driver.restore(from) : await driver.boot(SPEC);
  let output = '';
  await driver.exec(vm.id, { argv: COMMAND }, { stdout: (b) => (output += b.toString()) });
  const elapsed = performance.now() - started;
  if (output !== 'ready\n') throw new Error(`unexpected output ${JSON.stringify(output)}`);
  await driver.destroy(vm.id);
  return elapsed;
}

async function rssPerVm(count: number): Promise<{ hostMiB: number; qemuMiB: number }> {
  global.gc?.();
  const before = process.memoryUsage().rss;
  const vms = [];
  for (let i = 0; i < count; i++) vms.push(await driver.boot(SPEC));
  for (const vm of vms) await driver.exec(vm.id, { argv: COMMAND });
  global.gc?.();
  const after = process.memoryUsage().rss;
  let qemuRss = 0;
  for (const record of await driver.list()) {
    const status = await readFile(`/proc/${record.pid}/status`, 'utf8');
    qemuRss += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
  }
  for (const vm of vms) await driver.destroy(vm.id);
  return { hostMiB: (after - before) / count / 1024 ** 2, qemuMiB: qemuRss / count / 1024 ** 2 };
}

try {
  process.stderr.write(`bench: ${RUNS} runs each, accel ${accel}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'})\n`);
  const bare: number[] = [];
  const cold: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    // Interleaved, so drift in machine load hits both sides alike.
    bare.push(await bareReference());
    cold.push(await hearthLaunch());
    process.stderr.write(`  run ${i + 1}: bare ${bare.at(-1)!.toFixed(0)} ms, hearth ${cold.at(-1)!.toFixed(0)} ms\n`);
  }
  const seed = await driver.boot(SPEC);
  const snapshotName = `bench-${randomBytes(3).toString('hex')}`;
  await driver.snapshot(seed.id, snapshotName);
  await driver.destroy(seed.id);
  const restored: number[] = [];
  for (let i = 0; i < RUNS; i++) restored.push(await hearthLaunch(snapshotName));
  const rss = await rssPerVm(4);

  const rows = [
    ['cold launch to output', `${median(cold).toFixed(0)} ms`, `bare QEMU ${median(bare).toFixed(0)} ms`, median(cold) / median(bare), '<= 1.10'],
    [
      'snapshot restore to output',
      `${median(restored).toFixed(0)} ms`,
      `cold launch ${median(cold).toFixed(0)} ms`,
      median(restored) / median(cold),
      '<= 0.20',
    ],
  ] as const;
  process.stdout.write(`\nHearth VM benchmark (${new Date().toISOString().slice(0, 10)}, ${accel.toUpperCase()}, ${cpus().length} CPUs, medians of ${RUNS})\n`);
  process.stdout.write('figure                        hearth     reference              ratio  goal\n');
  for (const [name, value, reference, ratio, goal] of rows) {
    process.stdout.write(`${name.padEnd(29)} ${value.padEnd(10)} ${reference.padEnd(22)} ${ratio.toFixed(3).padEnd(6)} ${goal}\n`);
  }
  process.stdout.write(
    `host RSS per live VM          ${rss.hostMiB < 0.1 ? '< 0.1' : rss.hostMiB.toFixed(2)} MiB (controlling Node process; each QEMU itself: ${rss.qemuMiB.toFixed(0)} MiB RSS)\n`,
  );
} finally {
  await driver.destroyAll();
  await rm(root, { recursive: true, force: true });
}
