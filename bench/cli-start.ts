/**
 * npm run bench: how long a `hearth` call takes to start, medians over BENCH_RUNS (default 9) runs of
 *
 * - `node bin/hearth.mjs --help`: the command tree alone (commander and the command modules);
 * - `node bin/hearth.mjs vm ls`: a real command (paths, pino, the QEMU driver, the VM registry),
 *
 * each against `node -e ''` (starting Node itself, which no CLI written for Node can beat) measured in
 * the same run, interleaved so drift in the machine's load hits all three alike. The goal is 300 ms
 * wall-clock for both on an idle 2-core machine. On a busy one wall-clock time mostly measures the
 * wait for a core, so the CPU time the command used (user + system, from this process's children's
 * times in /proc/self/stat) is printed too, with the ratios to the floor. The CLI runs from dist/ (npm run build, which bootstrap.sh runs), without tsx: NODE_OPTIONS
 * is cleared so a `--import tsx` inherited from the caller does not count.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { median } from './bare-qemu.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 9);
const GOAL_MS = 300;
const BIN = join(import.meta.dirname, '..', 'bin', 'hearth.mjs');

const root = await mkdtemp(join(tmpdir(), 'hearth-bench-cli-'));
// vm ls reads this run's own (empty) registry, not whatever VMs the machine has.
const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '', HEARTH_DATA_DIR: join(root, 'data'), HEARTH_RUNTIME_DIR: join(root, 'run') };

const CASES = [
  { name: "node -e ''", args: ['-e', ''] },
  { name: 'hearth --help', args: [BIN, '--help'] },
  { name: 'hearth vm ls', args: [BIN, 'vm', 'ls'] },
] as const;

/** User + system CPU time of this process's waited-for children so far, in ms (Linux clock ticks are 10 ms). */
function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // After "pid (comm) ", fields are numbered from 3 (state); cutime and cstime are fields 16 and 17.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

interface Sample {
  readonly wallMs: number;
  readonly cpuMs: number;
}

function timeOnce(args: readonly string[]): Sample {
  const cpuBefore = childrenCpuMs();
  const started = performance.now();
  const result = spawnSync(process.execPath, args, { env, encoding: 'utf8' });
  const wallMs = performance.now() - started;
  if (result.status !== 0) throw new Error(`node ${args.join(' ')} exited with ${result.status ?? result.signal}: ${result.stderr}`);
  return { wallMs, cpuMs: childrenCpuMs() - cpuBefore };
}

try {
  process.stderr.write(`bench: CLI start, ${RUNS} runs each, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'})\n`);
  const samples = CASES.map(() => [] as Sample[]);
  // One unmeasured round warms the page cache, as every call after the first finds it.
  for (const c of CASES) timeOnce(c.args);
  for (let i = 0; i < RUNS; i++) {
    CASES.forEach((c, k) => samples[k]!.push(timeOnce(c.args)));
    process.stderr.write(`  run ${i + 1}: ${CASES.map((c, k) => `${c.name} ${samples[k]!.at(-1)!.wallMs.toFixed(0)} ms`).join(', ')}\n`);
  }
  const wall = samples.map((s) => median(s.map((x) => x.wallMs)));
  // CPU time in 10 ms ticks: the mean over all runs is finer than any one run's figure.
  const cpu = samples.map((s) => s.reduce((sum, x) => sum + x.cpuMs, 0) / s.length);
  const [wallFloor, cpuFloor] = [wall[0]!, cpu[0]!];
  process.stdout.write(
    `\nHearth CLI start (${new Date().toISOString().slice(0, 10)}, ${cpus().length} CPUs, load ${loadavg()[0]!.toFixed(1)}, ${RUNS} runs)\n`,
  );
  process.stdout.write('command              wall median  x floor  CPU mean  x floor  goal (wall)\n');
  CASES.forEach((c, k) => {
    const goal = k === 0 ? '(the floor)' : `<= ${GOAL_MS} ms: ${wall[k]! <= GOAL_MS ? 'met' : 'missed (a busy machine? see the CPU time)'}`;
    const cells = [
      c.name.padEnd(20),
      `${wall[k]!.toFixed(0)} ms`.padEnd(12),
      (wall[k]! / wallFloor).toFixed(2).padEnd(8),
      `${cpu[k]!.toFixed(0)} ms`.padEnd(9),
      (cpu[k]! / cpuFloor).toFixed(2).padEnd(8),
      goal,
    ];
    process.stdout.write(`${cells.join(' ')}\n`);
  });
} finally {
  await rm(root, { recursive: true, force: true });
}
