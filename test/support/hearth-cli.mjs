#!/usr/bin/env node
// The `hearth` command as the tests spawn it (HEARTH_BIN in env.ts): bin/hearth.mjs, which runs the
// compiled CLI in dist/, after making sure dist/ is not older than src/.
//
// The tests themselves run TypeScript through tsx, but a test that spawns the CLI runs the compiled
// code, as a user does. `npm test` builds first (scripts/bootstrap.sh); this check covers running one
// test file after editing src/ without `npm run build`: instead of silently testing the old build, it
// rebuilds (once, under a lock, however many tests spawn the CLI at the same moment). A failing build
// is reported with its output and exit status 125, the status of Hearth's own errors.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { staleBecause } from '../../scripts/build-stale.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const lockPath = join(root, 'dist', '.build-lock');
const LOCK_STALE_MS = 10 * 60_000;

function sleepMs(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function lockAgeMs() {
  try {
    return Date.now() - statSync(lockPath).mtimeMs;
  } catch {
    return 0;
  }
}

function rebuild(reason) {
  mkdirSync(dirname(lockPath), { recursive: true });
  for (;;) {
    try {
      mkdirSync(lockPath);
      break;
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
      // Another test's CLI is rebuilding: wait for it to finish, then use its build.
      if (lockAgeMs() > LOCK_STALE_MS) rmSync(lockPath, { recursive: true, force: true });
      sleepMs(200);
    }
  }
  try {
    if (staleBecause(root) === undefined) return;
    const build = spawnSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { cwd: root, encoding: 'utf8' });
    if (build.status !== 0) {
      process.stderr.write(
        `${build.stdout}${build.stderr}hearth (tests): ${reason} and npm run build failed (status ${build.status ?? build.signal})\n  fix: fix the compile errors above, then run npm run build\n`,
      );
      process.exit(125);
    }
  } finally {
    rmSync(lockPath, { recursive: true, force: true });
  }
}

const reason = staleBecause(root);
if (reason !== undefined) rebuild(reason);
await import(pathToFileURL(join(root, 'bin', 'hearth.mjs')).href);
