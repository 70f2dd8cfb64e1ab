/**
 * Where Hearth keeps things. Each can be moved with an environment variable
 * (paths.* in src/config/schema.ts), which is how tests keep their runs apart.
 * - cache: reproducible artefacts (kernel packages, images), safe to delete.
 * - data: things a user made and wants kept (snapshots).
 * - runtime: live VMs (sockets, overlays, logs); the registry that `vm gc` reads.
 */
export interface HearthPaths {
  readonly cache: string;
  readonly data: string;
  readonly runtime: string;
}

export { loadPaths as resolvePaths } from './host-config.ts';
