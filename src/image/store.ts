import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HearthError } from '../errors.ts';

/**
 * An image is a directory under <cache>/images/<id>/ holding image.json and the
 * files it names. The id is a hash of everything that went into the build, so
 * equal inputs give the same directory and a rebuild is a no-op. A name
 * (`minimal`, later `debian`) points at its current id through <name>.json.
 *
 * Kinds:
 * - initramfs: the whole guest is the initrd (the `minimal` image).
 * - rootfs: the initrd boots a read-only disk (`rootfs`) with a per-VM
 *   copy-on-write overlay; kept in the format now so `debian` fits later.
 */
export interface ImageManifest {
  readonly name: string;
  readonly id: string;
  readonly kind: 'initramfs' | 'rootfs';
  readonly createdAt: string;
  readonly kernel: { readonly file: string; readonly package: string; readonly version: string; readonly release: string };
  readonly initrd: string;
  readonly rootfs?: string;
  readonly inputs: Record<string, string>;
}

export interface Image extends ImageManifest {
  readonly dir: string;
  readonly kernelPath: string;
  readonly initrdPath: string;
  readonly rootfsPath?: string;
}

export const IMAGE_NAMES = ['minimal', 'debian'] as const;
export type ImageName = (typeof IMAGE_NAMES)[number];

export function isImageName(name: string): name is ImageName {
  return (IMAGE_NAMES as readonly string[]).includes(name);
}

/** Names a build can be published under: the built-in ones, or any `--name` given to `hearth image build`. */
export const PUBLISHED_NAME = /^[a-z][a-z0-9-]{0,39}$/;

export function isPublishedName(name: string): boolean {
  return PUBLISHED_NAME.test(name);
}

export function imagesDir(cacheDir: string): string {
  return join(cacheDir, 'images');
}

export async function readImageById(cacheDir: string, id: string): Promise<Image> {
  const dir = join(imagesDir(cacheDir), id);
  const manifest = JSON.parse(await readFile(join(dir, 'image.json'), 'utf8')) as ImageManifest;
  return {
    ...manifest,
    dir,
    kernelPath: join(dir, manifest.kernel.file),
    initrdPath: join(dir, manifest.initrd),
    ...(manifest.rootfs ? { rootfsPath: join(dir, manifest.rootfs) } : {}),
  };
}

/** The current build of a named image, or a clear error naming the build command. */
export async function loadImage(cacheDir: string, name: string): Promise<Image> {
  if (!isPublishedName(name)) throw new HearthError('HEARTH_ERR_IMAGE_UNKNOWN', { image: name, known: IMAGE_NAMES.join(', ') });
  let ref: { id: string };
  try {
    ref = JSON.parse(await readFile(join(imagesDir(cacheDir), `${name}.json`), 'utf8')) as { id: string };
    return await readImageById(cacheDir, ref.id);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new HearthError('HEARTH_ERR_IMAGE_NOT_BUILT', {
        image: name,
        command: isImageName(name) ? `hearth image build ${name}` : `hearth image build debian --github-runner TARBALL --gitlab-runner BINARY --name ${name}`,
      });
    throw error;
  }
}

/** The build `id` of image `name` if it is already in the cache (then also made current). */
export async function findBuiltImage(cacheDir: string, name: string, id: string): Promise<Image | undefined> {
  try {
    await stat(join(imagesDir(cacheDir), id, 'image.json'));
  } catch {
    return undefined;
  }
  await writeFile(join(imagesDir(cacheDir), `${name}.json`), JSON.stringify({ id }) + '\n');
  return readImageById(cacheDir, id);
}

/** Turns a finished staging directory into the image build named by its manifest, and makes it current. */
export async function publishImage(cacheDir: string, staging: string, manifest: ImageManifest): Promise<Image> {
  await writeFile(join(staging, 'image.json'), JSON.stringify(manifest, null, 2) + '\n');
  await rename(staging, join(imagesDir(cacheDir), manifest.id));
  await writeFile(join(imagesDir(cacheDir), `${manifest.name}.json`), JSON.stringify({ id: manifest.id }) + '\n');
  return readImageById(cacheDir, manifest.id);
}
