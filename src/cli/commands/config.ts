import type { Command } from 'commander';
import type { Source } from '../../config/engine.ts';
import type { CliContextSource } from '../context.ts';

/** YAML of `value` with a comment after each value that did not come from its default, saying where it came from. */
async function annotated(value: unknown, sources: ReadonlyMap<string, Source>): Promise<string> {
  const [{ Document, isNode }, { describeSource }] = await Promise.all([import('yaml'), import('../../config/engine.ts')]);
  const document = new Document(value);
  for (const [key, source] of sources) {
    if (source.from === 'default') continue;
    const node: unknown = document.getIn(key.split('.'), true);
    if (isNode(node)) node.comment = ` ${describeSource(source)}`;
  }
  return document.toString();
}

export function registerConfig(program: Command, context: CliContextSource): void {
  const config = program.command('config').description('inspect the configuration: `hearth serve`, this host (directories, drivers) and image builds');

  config
    .command('check')
    .description(
      'load and validate every setting (the serve YAML file and HEARTH_* variables, pools, the driver variables, the image config) and print the effective result, where each value came from, secrets redacted',
    )
    .option('--config <path>', 'YAML file to check (default: $HEARTH_SERVE_CONFIG, else the embedded defaults)')
    .option('--json', 'print one JSON object instead of YAML')
    .action(async (options: { config?: string; json?: boolean }) => {
      const [{ loadImagesConfig }, { describeSources, loadServeConfig, redactedConfig }] = await Promise.all([
        import('../../config/config.ts'),
        import('../../config/serve-config.ts'),
      ]);
      // A problem throws HEARTH_ERR_CONFIG naming the key; the top level prints it and exits 125.
      const { host, paths } = await context();
      const loaded = loadServeConfig({ path: options.config ?? host.config.cli.serveConfig ?? undefined, paths });
      const images = loadImagesConfig({ path: host.config.cli.imagesConfig });
      const effective = redactedConfig(loaded.config);
      if (options.json) {
        const output = {
          source: loaded.source,
          overrides: loaded.overrides,
          notes: loaded.notes,
          config: effective,
          sources: describeSources(loaded),
          host: { config: host.config, sources: describeSources(host) },
          images: {
            file: images.source,
            config: images.config,
            sources: describeSources(images),
          },
        };
        process.stdout.write(JSON.stringify(output, null, 2) + '\n');
        return;
      }
      // The header is YAML comments, so the first document is still a serve config file to start from.
      const header = [
        `# source: ${loaded.source ?? '(none)'}`,
        `# environment overrides: ${loaded.overrides.length > 0 ? loaded.overrides.join(', ') : '(none)'}`,
        ...loaded.notes.map((note) => `# note: ${note}`),
        '# valid; effective configuration (secrets redacted; a comment names where a value other than the default came from):',
      ];
      const hostHeader = [
        '---',
        `# this host: environment variables and flags (not keys of the serve file)${host.overrides.length > 0 ? `; set: ${host.overrides.join(', ')}` : ''}`,
      ];
      const imagesHeader = ['---', `# image builds: ${images.source ?? `no file at ${images.path}, defaults`}`];
      process.stdout.write(
        [
          header.join('\n'),
          await annotated(effective, loaded.sources),
          hostHeader.join('\n'),
          await annotated(host.config, host.sources),
          imagesHeader.join('\n'),
          await annotated(images.config, images.sources),
        ].join('\n'),
      );
    });
}
