import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve, readYamlFile, type Source } from './engine.ts';
import { IMAGE_SETTINGS, KNOWN_ENV, type ImagesConfig } from './schema.ts';

/**
 * Optional user configuration of image builds (IMAGE_SETTINGS in
 * src/config/schema.ts), JSON at cli.imagesConfig ($HEARTH_CONFIG, else
 * ~/.config/hearth/config.json). Everything has a default; a missing file is fine.
 *
 *   { "images": { "debian": { "packages": ["jq", "make"], "mirror": "http://deb.debian.org/debian" } } }
 */
export interface HearthConfig {
  readonly images?: {
    readonly debian?: { readonly packages?: readonly string[]; readonly mirror?: string; readonly suite?: string };
  };
}

export interface LoadedImagesConfig {
  readonly config: ImagesConfig;
  /** The file, or null when there is none at its path. */
  readonly source: string | null;
  readonly path: string;
  readonly sources: ReadonlyMap<string, Source>;
}

/** Reads and checks the file (JSON is read as YAML, so errors name their line); throws HEARTH_ERR_CONFIG naming the key and the fix. */
export function loadImagesConfig(options: { path: string; env?: NodeJS.ProcessEnv }): LoadedImagesConfig {
  const env = options.env ?? process.env;
  const file = existsSync(options.path) ? readYamlFile(options.path, 'check the path in HEARTH_CONFIG, or unset it') : null;
  const resolved = resolve(IMAGE_SETTINGS, { file, env, defaults: { env, dataDir: '', hostname: hostname() }, knownEnv: KNOWN_ENV });
  return { config: resolved.tree as unknown as ImagesConfig, source: file ? options.path : null, path: options.path, sources: resolved.sources };
}

/** The image settings as the image builders take them; `path` is cli.imagesConfig. */
export function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): HearthConfig {
  const { debian } = loadImagesConfig({ path, env }).config.images;
  return {
    images: {
      debian: {
        packages: debian.packages,
        ...(debian.mirror !== null ? { mirror: debian.mirror } : {}),
        ...(debian.suite !== null ? { suite: debian.suite } : {}),
      },
    },
  };
}
