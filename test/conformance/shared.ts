// Where `npm run conformance` finds the material kept beside the repository (real-world
// workflow corpora, the official Firecracker API spec). scripts/conformance.mjs sets
// HEARTH_SHARED when that folder exists and skips the run when it does not.
export function sharedDir(): string {
  const dir = process.env.HEARTH_SHARED;
  if (!dir) throw new Error('HEARTH_SHARED is not set: run these checks with `npm run conformance`, which finds ../shared beside the repository');
  return dir;
}
