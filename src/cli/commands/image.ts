import type { Command } from 'commander';
import { readdir } from 'node:fs/promises';
import { HearthError } from '../../errors.ts';
import { IMAGE_NAMES, imagesDir, isImageName, isPublishedName, loadImage } from '../../image/store.ts';
import type { CliContextSource } from '../context.ts';

export function registerImage(program: Command, context: CliContextSource): void {
  const image = program.command('image').description('build and list guest images');

  image
    .command('build')
    .description('build a guest image (cached by its inputs: an unchanged rebuild is a no-op)')
    .argument('[name]', `image to build: ${IMAGE_NAMES.join(', ')}`, 'minimal')
    .option(
      '--package <name>',
      'debian: an extra Debian package (repeatable; also images.debian.packages in the config file)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--github-runner <tarball>', 'unpack the official actions-runner-linux-x64-*.tar.gz into /opt/actions-runner')
    .option('--gitlab-runner <binary>', 'install the gitlab-runner-linux-amd64 binary as /usr/local/bin/gitlab-runner')
    .option('--name <name>', 'publish the result under this name instead of the base image name (e.g. a runner image beside the plain one)')
    .action(async (name: string, options: { package?: string[]; githubRunner?: string; gitlabRunner?: string; name?: string }) => {
      if (!isImageName(name)) throw new HearthError('HEARTH_ERR_IMAGE_UNKNOWN', { image: name, known: IMAGE_NAMES.join(', ') });
      const publishAs = options.name ?? name;
      if (!isPublishedName(publishAs))
        throw new HearthError('HEARTH_ERR_BAD_OPTION', {
          option: '--name',
          reason: `"${publishAs}" is not an image name`,
          hint: 'use lower-case letters, digits and -, starting with a letter, e.g. --name debian-runner',
        });
      if (options.name && !options.githubRunner && !options.gitlabRunner)
        throw new HearthError('HEARTH_ERR_BAD_OPTION', {
          option: '--name',
          reason: 'only names an image that adds runners',
          hint: 'add --github-runner or --gitlab-runner, or drop --name',
        });
      const { paths, host } = await context();
      const { kernelDeb } = host.config.image;
      const [{ loadConfig }, { buildDebianImage }, { buildMinimalImage }, { addRunnersToImage }, { ensureVmlinux }] = await Promise.all([
        import('../../config/config.ts'),
        import('../../image/debian.ts'),
        import('../../image/minimal.ts'),
        import('../../image/runner-payload.ts'),
        import('../../image/vmlinux.ts'),
      ]);
      const started = Date.now();
      const log = (line: string): void => void process.stderr.write(`hearth: ${line}\n`);
      const debianConfig = loadConfig(host.config.cli.imagesConfig).images?.debian ?? {};
      const result =
        name === 'debian'
          ? await buildDebianImage(paths.cache, { ...debianConfig, kernelDeb, packages: [...(debianConfig.packages ?? []), ...(options.package ?? [])] }, log)
          : await buildMinimalImage(paths.cache, log, { kernelDeb });
      const withRunners =
        options.githubRunner || options.gitlabRunner
          ? await addRunnersToImage(paths.cache, result.image, { githubRunner: options.githubRunner, gitlabRunner: options.gitlabRunner }, publishAs)
          : undefined;
      const final = withRunners ?? result;
      // Firecracker boots the uncompressed ELF kernel; QEMU the bzImage. Both come with every image.
      await ensureVmlinux(final.image);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      process.stdout.write(`${final.built ? 'built' : 'up to date'}: ${publishAs} = ${final.image.id} (${final.image.dir}, ${seconds} s)\n`);
    });

  image
    .command('ls')
    .description('list built images')
    .action(async () => {
      const { paths } = await context();
      const entries = await readdir(imagesDir(paths.cache)).catch(() => [] as string[]);
      const published = entries.filter((e) => e.endsWith('.json')).map((e) => e.slice(0, -5));
      for (const name of [...new Set([...IMAGE_NAMES, ...published.sort()])]) {
        try {
          const built = await loadImage(paths.cache, name);
          process.stdout.write(`${name}\t${built.id}\t${built.kind}\tkernel ${built.kernel.release}\t${built.createdAt}\n`);
        } catch {
          process.stdout.write(`${name}\t(not built: hearth image build ${name})\n`);
        }
      }
      const builds = entries.filter((d) => !d.endsWith('.json') && !d.startsWith('.'));
      if (builds.length > published.length) process.stdout.write(`(${builds.length} builds in ${imagesDir(paths.cache)})\n`);
    });
}
