import type { Command } from 'commander';
import { loadServeConfig } from '../../config/serve-config.ts';
import { HearthError } from '../../errors.ts';
import { createLogger } from '../../log.ts';
import { startHearthService } from '../../server/service.ts';
import type { CliContext } from '../context.ts';

const ROLES = ['all', 'controller', 'host'] as const;

export function registerServe(program: Command, context: () => CliContext): void {
  program
    .command('serve')
    .description('run the runner manager: receive forge webhooks, launch a one-job runner in a fresh microVM per owned job, tear it down afterwards')
    .option('--config <path>', 'YAML config file (default: $HEARTH_SERVE_CONFIG, else embedded defaults); every key can be overridden as HEARTH_<SECTION>_<KEY>')
    .option('--role <role>', 'all (one machine: webhooks, placement and VMs), controller (webhooks, API and, while leader, placement) or host (runs the VMs placed on it); overrides cluster.role')
    .action(async (options: { config?: string; role?: string }) => serve(context, options));

  program
    .command('host')
    .description('run a VM host of a scaled-out Hearth: register this machine in the shared PostgreSQL ledger, heartbeat, and run the VMs the controllers place on it (hearth serve --role host)')
    .option('--config <path>', 'YAML config file (default: $HEARTH_SERVE_CONFIG); store.url must be the PostgreSQL the controllers use, cluster.hostId unique per host')
    .action(async (options: { config?: string }) => serve(context, { ...options, role: 'host' }));
}

async function serve(context: () => CliContext, options: { config?: string; role?: string }): Promise<void> {
  if (options.role !== undefined && !(ROLES as readonly string[]).includes(options.role)) {
    throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: '--role', reason: `"${options.role}" is not a role`, hint: `use one of ${ROLES.join(', ')}` });
  }
  const { paths, host } = context();
  const loaded = loadServeConfig({ path: options.config, env: process.env, paths, flags: { 'cluster.role': options.role } });
  const logger = createLogger({ level: loaded.config.log.level });
  const say = (line: string): void => void process.stderr.write(`hearth: ${line}\n`);
  if (loaded.source) say(`config: ${loaded.source}`);
  if (loaded.overrides.length > 0) say(`overridden by the environment: ${loaded.overrides.join(', ')}`);
  for (const note of loaded.notes) say(note);
  const service = await startHearthService({ config: loaded.config, paths, logger, host });
  for (const choice of service.choices) say(choice);
  say(`listening on ${service.url} (webhooks: ${service.url}/webhooks/github and /webhooks/gitlab; metrics: /metrics; API: /api/v1)`);

  // A second signal while tearing down exits at once; VMs left then are reaped by the next start.
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      say(`${signal}: stopping; tearing down this host's runner VMs`);
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGTERM', stop);
      process.once('SIGINT', () => process.exit(130));
      process.once('SIGTERM', () => process.exit(143));
      void service.close(`received ${signal}`).then(resolve, (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        resolve();
      });
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  say('stopped');
}
