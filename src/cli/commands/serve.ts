import type { Command } from 'commander';
import { HearthError } from '../../errors.ts';
import type { CliContextSource } from '../context.ts';

const ROLES = ['all', 'controller', 'host'] as const;

export function registerServe(program: Command, context: CliContextSource): void {
  program
    .command('serve')
    .description('run the runner manager: receive forge webhooks, launch a one-job runner in a fresh microVM per owned job, tear it down afterwards')
    .option(
      '--config <path>',
      'YAML config file (default: $HEARTH_SERVE_CONFIG, else embedded defaults); every key can be overridden as HEARTH_<SECTION>_<KEY>',
    )
    .option(
      '--role <role>',
      'all (one machine: webhooks, placement and VMs), controller (webhooks, API and, while leader, placement) or host (runs the VMs placed on it); overrides cluster.role',
    )
    .action(async (options: { config?: string; role?: string }) => serve(context, options));

  program
    .command('host')
    .description(
      'run a VM host of a scaled-out Hearth: register this machine in the shared PostgreSQL ledger, heartbeat, and run the VMs the controllers place on it (hearth serve --role host)',
    )
    .option(
      '--config <path>',
      'YAML config file (default: $HEARTH_SERVE_CONFIG); store.url must be the PostgreSQL the controllers use, cluster.hostId unique per host',
    )
    .action(async (options: { config?: string }) => serve(context, { ...options, role: 'host' }));
}

/** The last start-up line: where the server listens and its endpoints (the API only when api.token enables it; a note said so). */
export function listeningLine(url: string, apiEnabled: boolean): string {
  return `listening on ${url} (webhooks: ${url}/webhooks/github and /webhooks/gitlab; metrics: /metrics${apiEnabled ? '; API: /api/v1' : ''})`;
}

async function serve(context: CliContextSource, options: { config?: string; role?: string }): Promise<void> {
  if (options.role !== undefined && !(ROLES as readonly string[]).includes(options.role)) {
    throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: '--role', reason: `"${options.role}" is not a role`, hint: `use one of ${ROLES.join(', ')}` });
  }
  const [{ paths, host }, { loadServeConfig }, { createLogger, effectiveLogLevel }, { startHearthService }] = await Promise.all([
    context(),
    import('../../config/serve-config.ts'),
    import('../../log.ts'),
    import('../../server/service.ts'),
  ]);
  const loaded = loadServeConfig({ path: options.config, paths, flags: { 'cluster.role': options.role } });
  const log = effectiveLogLevel({ configured: loaded.config.log.level, interactive: process.stderr.isTTY === true });
  const logger = createLogger({ level: log.level });
  const say = (line: string): void => void process.stderr.write(`hearth: ${line}\n`);
  if (loaded.source) say(`config: ${loaded.source}`);
  if (loaded.overrides.length > 0) say(`overridden by the environment: ${loaded.overrides.join(', ')}`);
  for (const note of loaded.notes) say(note);
  if (log.reduced)
    say(
      `log: JSON log lines from ${log.level} up on this terminal (log.level ${loaded.config.log.level} applies when stderr is a log; HEARTH_LOG_LEVEL=${loaded.config.log.level} shows them here too)`,
    );
  const service = await startHearthService({ config: loaded.config, paths, logger, host });
  for (const choice of service.choices) say(choice);
  say(listeningLine(service.url, loaded.config.api.token !== null));

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
