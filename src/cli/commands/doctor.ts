import type { Command } from 'commander';
import type { CliContextSource } from '../context.ts';

const MARK = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' } as const;

export function registerDoctor(program: Command, context: CliContextSource): void {
  program
    .command('doctor')
    .description('check that this host can run Hearth VMs, with a fix for each problem')
    .option('--reprobe', 'boot a fresh KVM probe instead of using the verdict cached for this host boot')
    .option('--json', 'print the report as JSON')
    .action(async (options: { reprobe?: boolean; json?: boolean }) => {
      const { paths, qemu: driver, host } = await context();
      const { runDoctor } = await import('../../host/doctor.ts');
      const report = await runDoctor(paths, driver, {
        reprobe: options.reprobe ?? false,
        firecrackerBinary: host.config.firecracker.binary,
        accel: host.config.qemu.accel,
      });
      if (options.json) {
        process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      } else {
        for (const check of report.checks) {
          process.stdout.write(`${MARK[check.status]}  ${check.name.padEnd(14)} ${check.detail}\n`);
          if (check.fix && check.status !== 'ok') process.stdout.write(`      ${''.padEnd(14)} fix: ${check.fix}\n`);
        }
        process.stdout.write(
          report.canRunVms ? '\nHearth can run VMs on this host.\n' : '\nHearth cannot run VMs on this host yet: fix the FAIL lines above.\n',
        );
      }
      process.exitCode = report.canRunVms ? 0 : 1;
    });
}
