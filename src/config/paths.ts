import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Where Hearth keeps things. Each can be moved with an environment variable,
 * which is how tests keep their runs apart.
 * - cache: reproducible artefacts (kernel packages, images), safe to delete.
 * - data: things a user made and wants kept (snapshots).
 * - runtime: live VMs (sockets, overlays, logs); the registry that `vm gc` reads.
 */
export interface HearthPaths {
  readonly cache: string;
  readonly data: string;
  readonly runtime: string;
}

export function resolvePaths(env: NodeJS.ProcessEnv = process.env): HearthPaths {
  const home = env.HOME ?? homedir();
  const uid = process.getuid?.() ?? 0;
  const runtimeBase = uid === 0 ? '/run' : (env.XDG_RUNTIME_DIR ?? join('/tmp', `hearth-${uid}`));
  return {
    cache: env.HEARTH_CACHE_DIR ?? join(env.XDG_CACHE_HOME ?? join(home, '.cache'), 'hearth'),
    data: env.HEARTH_DATA_DIR ?? join(env.XDG_DATA_HOME ?? join(home, '.local', 'share'), 'hearth'),
    runtime: env.HEARTH_RUNTIME_DIR ?? join(runtimeBase, 'hearth'),
  };
}
