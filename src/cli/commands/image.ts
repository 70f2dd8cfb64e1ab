import type { Command } from 'commander';
import { readdir } from 'node:fs/promises';
import { HearthError } from '../../errors.ts';
import { loadConfig } from '../../config/config.ts';
import { buildDebianImage } from '../../image/debian.ts';
import { buildMinimalImage } from '../../image/minimal.ts';
import { IMAGE_NAMES, imagesDir, isImageName, loadImage } from '../../image/store.ts';
import type { CliContext } from '../context.ts';

export function registerImage(program: Command, context: () => CliContext): void {
  const image = program.command('image').description('build and list guest images');

  image
    .command('build')
    .description('build a guest image (cached by its inputs: an unchanged rebuild is a no-op)')
    .argument('[name]', `image to build: ${IMAGE_NAMES.join(', ')}`, 'minimal')
    .option('--package <name>', 'debian: an extra Debian package (repeatable; also images.debian.packages in the config file)', (v: string, prev: string[] = []) => [...prev, v])
    .action(async (name: string, options: { package?: string[] }) => {
      if (!isImageName(name)) throw new HearthError('HEARTH_ERR_IMAGE_UNKNOWN', { image: name, known: IMAGE_NAMES.join(', ') });
      const { paths } = context();
      const started = Date.now();
      const log = (line: string): void => void process.stderr.write(`hearth: ${line}\n`);
      const debianConfig = (await loadConfig()).images?.debian ?? {};
      const result =
        name === 'debian'
          ? await buildDebianImage(paths.cache, { ...debianConfig, packages: [...(debianConfig.packages ?? []), ...(options.package ?? [])] }, log)
          : await buildMinimalImage(paths.cache, log);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      process.stdout.write(`${result.built ? 'built' : 'up to date'}: ${name} = ${result.image.id} (${result.image.dir}, ${seconds} s)\n`);
    });

  image
    .command('ls')
    .description('list built images')
    .action(async () => {
      const { paths } = context();
      for (const name of IMAGE_NAMES) {
        try {
          const built = await loadImage(paths.cache, name);
          process.stdout.write(`${name}\t${built.id}\t${built.kind}\tkernel ${built.kernel.release}\t${built.createdAt}\n`);
        } catch {
          process.stdout.write(`${name}\t(not built: hearth image build ${name})\n`);
        }
      }
      const builds = (await readdir(imagesDir(paths.cache)).catch(() => [] as string[])).filter((d) => !d.endsWith('.json') && !d.startsWith('.'));
      if (builds.length > IMAGE_NAMES.length) process.stdout.write(`(${builds.length} builds in ${imagesDir(paths.cache)})\n`);
    });
}
