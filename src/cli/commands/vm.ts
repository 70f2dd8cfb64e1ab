import { Option, type Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { HearthError } from '../../errors.ts';
import type { Vm, VmSpec } from '../../vm/driver.ts';
import type { CliContextSource } from '../context.ts';
import { destroyVmsOnSignals } from '../teardown.ts';

const DEFAULT_SPEC = { image: 'minimal', cpus: 1, memoryMib: 256 } as const;

/** A parser for a whole-number option; `example` is a value the option accepts, shown in the fix. */
function positiveInt(option: string, example: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n <= 0)
      throw new HearthError('HEARTH_ERR_BAD_OPTION', { option, reason: `"${value}" is not a positive whole number`, hint: `for example ${option} ${example}` });
    return n;
  };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * `--env KEY=VALUE` sets a value; `--env KEY` copies KEY from Hearth's own
 * environment, which keeps secrets off the host's process list (argv is public).
 */
export async function parseEnv(pairs: readonly string[], files: readonly string[], from: NodeJS.ProcessEnv = process.env): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  const bad = (entry: string, where: string): HearthError =>
    new HearthError('HEARTH_ERR_BAD_OPTION', {
      option: where,
      reason: `"${entry.split('=')[0]}" is not a valid variable name`,
      hint: 'names are letters, digits and _, not starting with a digit',
    });
  const add = (entry: string, where: string): void => {
    const eq = entry.indexOf('=');
    const key = eq < 0 ? entry : entry.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw bad(entry, where);
    if (eq >= 0) {
      env[key] = entry.slice(eq + 1);
      return;
    }
    const value = from[key];
    if (value === undefined)
      throw new HearthError('HEARTH_ERR_BAD_OPTION', {
        option: `${where} ${key}`,
        reason: `${key} is not set in Hearth's environment`,
        hint: `export ${key}=... first, or pass --env ${key}=VALUE`,
      });
    env[key] = value;
  };
  for (const file of files) {
    const lines = (await readFile(file, 'utf8')).split('\n');
    lines.forEach((line, i) => {
      const trimmed = line.trim();
      if (trimmed && !trimmed.startsWith('#')) add(trimmed, `--env-file ${file}:${i + 1}`);
    });
  }
  for (const pair of pairs) add(pair, '--env');
  return env;
}

interface SpecOptions {
  cpus?: number;
  memory?: number;
  image?: string;
  network?: boolean;
}

function specFrom(options: SpecOptions): VmSpec {
  return {
    image: options.image ?? DEFAULT_SPEC.image,
    cpus: options.cpus ?? DEFAULT_SPEC.cpus,
    memoryMib: options.memory ?? DEFAULT_SPEC.memoryMib,
    network: options.network ?? false,
  };
}

function addSpecOptions(command: Command): Command {
  return command
    .addOption(new Option('--cpus <n>', `vCPUs (default ${DEFAULT_SPEC.cpus})`).argParser(positiveInt('--cpus', 2)))
    .addOption(new Option('--memory <mib>', `memory in MiB (default ${DEFAULT_SPEC.memoryMib})`).argParser(positiveInt('--memory', 512)))
    .option('--image <name>', `guest image (default ${DEFAULT_SPEC.image})`)
    .option('--network', 'give the guest user-mode networking (off by default)');
}

export function registerVm(program: Command, context: CliContextSource): void {
  const vm = program.command('vm').description('boot, run, snapshot and clean up microVMs');

  addSpecOptions(
    vm
      .command('run')
      .description("boot a fresh VM (or restore a snapshot), run one command in it with its output streamed, then destroy it; exits with the command's status")
      .argument('<command...>', 'the command and its arguments (put them after --)')
      .addOption(new Option('--from-snapshot <name>', 'restore this snapshot instead of booting'))
      .addOption(new Option('--timeout <seconds>', 'destroy the VM when the command runs longer (exit status 124)').argParser(positiveInt('--timeout', 600)))
      .option('-e, --env <KEY[=VALUE]>', 'set a variable in the guest; KEY alone copies it from this environment (keeps secrets out of ps)', collect)
      .option('--env-file <file>', 'read KEY=VALUE lines from a file', collect)
      .option('-w, --workdir <dir>', 'working directory in the guest', '/root'),
  ).action(async (argv: string[], options: SpecOptions & { fromSnapshot?: string; timeout?: number; env?: string[]; envFile?: string[]; workdir: string }) => {
    const { driver } = await context();
    const env = await parseEnv(options.env ?? [], options.envFile ?? []);
    if (options.fromSnapshot && (options.cpus !== undefined || options.memory !== undefined || options.image !== undefined)) {
      throw new HearthError('HEARTH_ERR_BAD_OPTION', {
        option: '--from-snapshot',
        reason: 'a restored VM keeps the image, vCPUs and memory it was snapshotted with',
        hint: 'drop --cpus/--memory/--image, or create a snapshot with the shape you want',
      });
    }
    const stopHandlingSignals = destroyVmsOnSignals(driver);
    let machine: Vm | undefined;
    try {
      machine = options.fromSnapshot
        ? await driver.restore(options.fromSnapshot, options.network ? { network: true } : {})
        : await driver.boot(specFrom(options));
      const result = await driver.exec(
        machine.id,
        { argv, env, cwd: options.workdir, ...(options.timeout ? { timeoutSeconds: options.timeout } : {}) },
        { stdout: (data) => process.stdout.write(data), stderr: (data) => process.stderr.write(data) },
      );
      process.exitCode = result.exitCode;
    } finally {
      if (machine) await driver.destroy(machine.id);
      stopHandlingSignals();
    }
  });

  vm.command('ls')
    .description('list VMs on this host, including ones leaked by dead processes')
    .option('--json', 'print as JSON')
    .action(async (options: { json?: boolean }) => {
      const records = await (await context()).driver.list();
      if (options.json) {
        process.stdout.write(JSON.stringify(records, null, 2) + '\n');
        return;
      }
      process.stdout.write(['ID', 'STATE', 'OWNER', 'PID', 'CPUS', 'MEMORY', 'ACCEL', 'IMAGE', 'CREATED'].join('\t') + '\n');
      for (const r of records) {
        process.stdout.write(
          [
            r.id,
            r.alive ? 'running' : 'exited',
            r.leaked ? 'leaked' : `pid ${r.ownerPid}`,
            r.pid,
            r.cpus,
            `${r.memoryMib}M`,
            r.accel,
            r.image,
            r.createdAt,
          ].join('\t') + '\n',
        );
      }
    });

  vm.command('gc')
    .description('destroy VMs whose owning process is gone (left by kill -9 or a crash)')
    .option('--all', 'destroy every VM on this host, even ones a live process owns')
    .action(async (options: { all?: boolean }) => {
      const [{ driver }, { reconcileLeakedVms }] = await Promise.all([context(), import('../../vm/gc.ts')]);
      const removed = await reconcileLeakedVms(driver, { all: options.all ?? false });
      for (const r of removed) process.stdout.write(`destroyed ${r.id} (qemu pid ${r.pid}${r.alive ? '' : ', already exited'})\n`);
      process.stdout.write(`${removed.length} VM(s) destroyed\n`);
    });

  vm.command('rm')
    .description('destroy one VM by id')
    .argument('<id>', 'VM id from hearth vm ls')
    .action(async (id: string) => {
      const { driver } = await context();
      if (!(await driver.list()).some((r) => r.id === id))
        throw new HearthError('HEARTH_ERR_VM_GONE', { vmId: id, reason: 'no such VM on this host (see hearth vm ls)' });
      await driver.destroy(id);
      process.stdout.write(`destroyed ${id}\n`);
    });

  const snapshot = vm.command('snapshot').description('save a booted, idle VM so later VMs restore from it in a fraction of a boot');

  addSpecOptions(
    snapshot.command('create').description('boot a fresh VM, wait for its agent, and save its memory and device state').argument('<name>', 'snapshot name'),
  ).action(async (name: string, options: SpecOptions) => {
    const { driver } = await context();
    const stopHandlingSignals = destroyVmsOnSignals(driver);
    let machine: Vm | undefined;
    try {
      machine = await driver.boot(specFrom(options));
      const info = await driver.snapshot(machine.id, name);
      process.stdout.write(`snapshot ${info.name}: ${(info.sizeBytes / 1024 ** 2).toFixed(1)} MiB\n`);
    } finally {
      if (machine) await driver.destroy(machine.id);
      stopHandlingSignals();
    }
  });

  snapshot
    .command('ls')
    .description('list snapshots')
    .action(async () => {
      const [{ paths }, { listSnapshots }] = await Promise.all([context(), import('../../vm/snapshots.ts')]);
      for (const s of await listSnapshots(paths.data)) {
        process.stdout.write(
          `${s.name}\t${s.spec.image}\t${s.spec.cpus} cpu\t${s.spec.memoryMib}M\t${s.accel}\t${(s.sizeBytes / 1024 ** 2).toFixed(1)} MiB\t${s.createdAt}\n`,
        );
      }
    });

  snapshot
    .command('rm')
    .description('delete a snapshot')
    .argument('<name>', 'snapshot name')
    .action(async (name: string) => {
      const [{ paths }, { removeSnapshot }] = await Promise.all([context(), import('../../vm/snapshots.ts')]);
      await removeSnapshot(paths.data, name);
      process.stdout.write(`removed snapshot ${name}\n`);
    });
}
