// `npm run conformance`: checks Hearth against material kept beside the repository in
// ../shared (real-world workflow corpora, the official Firecracker API spec), which a
// plain clone does not have. Without it the run is skipped with a message and exit 0;
// with it, the test files under test/conformance/ run and the run ends with the same
// `N passed, N failed` line as `npm test`.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// HEARTH_SHARED points elsewhere when the folder is not beside the repository (e.g. in a git worktree).
const shared = process.env.HEARTH_SHARED ? resolve(process.env.HEARTH_SHARED) : resolve(root, '..', 'shared');
if (!existsSync(shared)) {
  process.stdout.write(
    `conformance: skipped: ${shared} does not exist (it holds the real-world workflow corpora and the official Firecracker spec these checks compare against)\n`,
  );
  process.exit(0);
}
const dir = join(root, 'test', 'conformance');
const only = process.argv.slice(2);
const files = only.length
  ? only
  : readdirSync(dir)
      .filter((name) => name.endsWith('.conformance.ts'))
      .sort()
      .map((name) => join('test', 'conformance', name));
const result = spawnSync(process.execPath, [join(root, 'scripts', 'run-tests.mjs'), ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, HEARTH_SHARED: shared },
});
if (result.error) throw result.error;
process.exit(result.status ?? 1);
