import type { Command } from 'commander';
import type { CliContextSource } from '../context.ts';

export function registerConfig(program: Command, context: CliContextSource): void {
  const config = program.command('config').description('inspect the configuration of `hearth serve`');

  config
    .command('check')
    .description('load and validate the serve configuration (YAML file, then HEARTH_* variables) and print the effective result, secrets redacted')
    .option('--config <path>', 'YAML file to check (default: $HEARTH_SERVE_CONFIG, else the embedded defaults)')
    .option('--json', 'print one JSON object instead of YAML')
    .action(async (options: { config?: string; json?: boolean }) => {
      const [{ loadServeConfig, redactedConfig }, { stringify }] = await Promise.all([import('../../config/serve-config.ts'), import('yaml')]);
      // A problem throws HEARTH_ERR_CONFIG naming the key; the top level prints it and exits 125.
      const loaded = loadServeConfig({ path: options.config, env: process.env, paths: (await context()).paths });
      const effective = redactedConfig(loaded.config);
      if (options.json) {
        process.stdout.write(JSON.stringify({ source: loaded.source, overrides: loaded.overrides, notes: loaded.notes, config: effective }, null, 2) + '\n');
        return;
      }
      // The header is YAML comments, so the whole output is still a config file to start from.
      const header = [
        `# source: ${loaded.source ?? '(none)'}`,
        `# environment overrides: ${loaded.overrides.length > 0 ? loaded.overrides.join(', ') : '(none)'}`,
        ...loaded.notes.map((note) => `# note: ${note}`),
        '# valid; effective configuration (secrets redacted):',
      ];
      process.stdout.write(`${header.join('\n')}\n${stringify(effective)}`);
    });
}
