// When dist/ is older than what it is built from: the one check that scripts/build.mjs --if-stale
// (run by scripts/bootstrap.sh) and the tests' CLI wrapper (test/support/hearth-cli.mjs) share.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** What dist/ is built from; a change to any of them makes it stale. */
export const BUILD_INPUTS = ['src', 'tsconfig.json', 'tsconfig.build.json', 'scripts/build.mjs', 'scripts/build-stale.mjs'];

function newestMtime(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return readdirSync(path).reduce((newest, name) => Math.max(newest, newestMtime(join(path, name))), stat.mtimeMs);
}

/** Why dist/ under `root` must be rebuilt (never built, or an input changed since), or undefined when it is current. */
export function staleBecause(root) {
  let built;
  try {
    built = statSync(join(root, 'dist', '.build-stamp')).mtimeMs;
  } catch {
    return 'dist/ has never been built';
  }
  for (const input of BUILD_INPUTS) {
    if (newestMtime(join(root, input)) > built) return `${input} changed since the last build`;
  }
  return undefined;
}
