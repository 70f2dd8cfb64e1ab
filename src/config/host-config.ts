import { hostname } from 'node:os';
import type { JailerOptions } from '../vm/firecracker/driver.ts';
import type { FlintlockHostOptions, HostDriverOptions } from '../vm/host-driver.ts';
import { configError, envNameOf, resolve, type Source } from './engine.ts';
import type { HearthPaths } from './paths.ts';
import { HOST_SETTINGS, KNOWN_ENV, type HostConfig, type HostConfigKey } from './schema.ts';

export type { HostConfig } from './schema.ts';

/**
 * This machine's settings (HOST_SETTINGS in src/config/schema.ts): where Hearth
 * keeps things, which driver the CLI uses and how each VMM is found and run.
 * Resolved once per process from the environment and flags, then passed on.
 */
export interface LoadedHostConfig {
  readonly config: HostConfig;
  readonly sources: ReadonlyMap<string, Source>;
  /** Environment variables that set a value, in key order. */
  readonly overrides: readonly string[];
}

type HostFlags = Readonly<Partial<Record<HostConfigKey, string | undefined>>>;

function resolveHost(
  table: Partial<typeof HOST_SETTINGS>,
  env: NodeJS.ProcessEnv,
  flags: HostFlags,
): { tree: Record<string, unknown>; sources: ReadonlyMap<string, Source>; overrides: readonly string[] } {
  // Directory defaults do not depend on the data directory; the placeholder is never used.
  return resolve(table as Record<string, (typeof HOST_SETTINGS)[HostConfigKey]>, {
    env,
    flags,
    defaults: { env, dataDir: '', hostname: hostname() },
    knownEnv: KNOWN_ENV,
  });
}

/** Throws HEARTH_ERR_CONFIG naming the variable (or flag), the key and the fix at the first problem. */
export function loadHostConfig(options: { env?: NodeJS.ProcessEnv; flags?: HostFlags } = {}): LoadedHostConfig {
  const env = options.env ?? process.env;
  const { tree, sources, overrides } = resolveHost(HOST_SETTINGS, env, options.flags ?? {});
  const config = tree as unknown as HostConfig;
  const { jailer } = config;
  const missing = (['uid', 'gid'] as const).find((id) => jailer[id] === null);
  if (jailer.binary !== null && missing !== undefined) {
    const key = `jailer.${missing}` as const;
    const name = envNameOf(key, HOST_SETTINGS[key]);
    const turnedOnBy = envNameOf('jailer.binary', HOST_SETTINGS['jailer.binary']);
    throw configError(
      name,
      key,
      `is not set, but ${turnedOnBy} turns the jailer on`,
      `create the unprivileged user and group Firecracker runs as (docs/hosts.md) and set ${name}, e.g. ${name}=$(id -${missing === 'uid' ? 'u' : 'g'} firecracker)`,
    );
  }
  return { config, sources, overrides };
}

/** Only the directories: every command needs them, and a bad driver variable must not stop one that runs no VM. */
export function loadPaths(env: NodeJS.ProcessEnv = process.env): HearthPaths {
  const table = { 'paths.cache': HOST_SETTINGS['paths.cache'], 'paths.data': HOST_SETTINGS['paths.data'], 'paths.runtime': HOST_SETTINGS['paths.runtime'] };
  return (resolveHost(table, env, {}).tree as { paths: HearthPaths }).paths;
}

/** Whether any flintlock.* key was given: only then does the flintlock driver have settings. */
function flintlockGiven(sources: ReadonlyMap<string, Source>): boolean {
  return [...sources].some(([key, source]) => key.startsWith('flintlock.') && source.from !== 'default');
}

/** The VMM settings of this host as the drivers take them: shared by the CLI and `hearth serve`. */
export function driverSettings(loaded: LoadedHostConfig): Pick<HostDriverOptions, 'qemuBinary' | 'firecrackerBinary' | 'jailer' | 'flintlock'> {
  const { config } = loaded;
  return {
    ...(config.qemu.binary !== null ? { qemuBinary: config.qemu.binary } : {}),
    firecrackerBinary: config.firecracker.binary ?? undefined,
    jailer: jailerOptions(config),
    flintlock: flintlockGiven(loaded.sources) ? flintlockOptions(config) : undefined,
  };
}

function jailerOptions(config: HostConfig): JailerOptions | undefined {
  const { binary, uid, gid, chroot, netns } = config.jailer;
  // loadHostConfig refuses a jailer binary without both ids.
  if (binary === null || uid === null || gid === null) return undefined;
  return { binary, uid, gid, ...(chroot !== null ? { chrootBaseDir: chroot } : {}), ...(netns !== null ? { netns } : {}) };
}

function flintlockOptions(config: HostConfig): FlintlockHostOptions {
  const f = config.flintlock;
  const rootImages: Record<string, string> = {};
  // Each entry passed the rootImage check: NAME=IMAGE, trimmed.
  for (const entry of f.rootImages) rootImages[entry.slice(0, entry.indexOf('='))] = entry.slice(entry.indexOf('=') + 1);
  return {
    endpoint: f.endpoint,
    agentListen: f.agentListen,
    agentUrl: f.agentUrl ?? '',
    kernelImage: f.kernelImage ?? '',
    rootImages,
    ...(f.namespace !== null && { namespace: f.namespace }),
    ...(f.owner !== null && { owner: f.owner }),
    ...(f.kernelFilename !== null && { kernelFilename: f.kernelFilename }),
    ...(f.initrdImage !== null && { initrdImage: f.initrdImage }),
  };
}
