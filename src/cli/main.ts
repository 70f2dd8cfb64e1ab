import { Command, CommanderError } from 'commander';
import { createCliContext, type CliContext } from './context.ts';
import { registerConfig } from './commands/config.ts';
import { registerDoctor } from './commands/doctor.ts';
import { registerImage } from './commands/image.ts';
import { registerObserve } from './commands/observe.ts';
import { registerRun } from './commands/run.ts';
import { registerServe } from './commands/serve.ts';
import { registerVm } from './commands/vm.ts';
import { EXIT_HEARTH_ERROR, reportError } from './errors.ts';

/**
 * The command tree. Start-up cost matters here (every `hearth` call pays it): this file and the
 * command modules import only commander and light helpers at the top; what a command runs (drivers,
 * the server, the workflow runner, YAML, pino) is imported inside its action. bench/cli-start.ts
 * measures the result.
 */
export function buildProgram(): Command {
  let context: Promise<CliContext> | undefined;
  const program = new Command('hearth')
    .description('Ephemeral CI runners in microVMs: one job, one fresh VM, gone afterwards')
    .version('0.1.0')
    .option('--driver <name>', 'where VMs run: qemu (default; KVM or TCG) or firecracker (also HEARTH_DRIVER)')
    .showHelpAfterError()
    .exitOverride();
  const lazyContext = (): Promise<CliContext> => (context ??= createCliContext((program.opts() as { driver?: string }).driver));
  registerDoctor(program, lazyContext);
  registerImage(program, lazyContext);
  registerVm(program, lazyContext);
  registerRun(program, lazyContext);
  registerServe(program, lazyContext);
  registerConfig(program, lazyContext);
  registerObserve(program, lazyContext);
  return program;
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // commander already printed help or the usage error
    process.exitCode = error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : error.exitCode === 0 ? 0 : EXIT_HEARTH_ERROR;
  } else {
    process.exitCode = reportError(error);
  }
}
