// `npm run build`: compiles src/ to dist/ for bin/hearth.mjs, so a CLI call runs JavaScript instead of
// paying for TypeScript compilation on every start.
//
// - tsc with tsconfig.build.json (incremental: an unchanged tree rebuilds in a few seconds);
// - every file in src/ that is not TypeScript (the Flintlock .proto files, the guest agent's C source)
//   is copied beside the JavaScript, because the code finds them relative to its own module
//   (import.meta.url): dist/ mirrors src/ so those lookups work from either. web/ lives outside src/
//   and is found relative to the package root, from src/ and dist/ alike;
// - JavaScript left in dist/ by a source file since deleted or renamed is removed;
// - dist/.build-stamp is written last: its mtime is when dist/ was last complete. The test support
//   (test/support/hearth-cli.mjs) and scripts/bootstrap.sh compare it with src/ to rebuild stale output
//   (scripts/build-stale.mjs); with --if-stale this script does nothing when dist/ is current.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { staleBecause } from './build-stale.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const dist = join(root, 'dist');
const buildInfo = join(dist, '.tsbuildinfo');
const stamp = join(dist, '.build-stamp');

if (process.argv.includes('--if-stale')) {
  const reason = staleBecause(root);
  if (reason === undefined) process.exit(0);
  process.stderr.write(`hearth: compiling src/ to dist/ (${reason})\n`);
}

function files(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? files(path) : [path];
  });
}

// tsc's incremental state says what it emitted before; when that output is gone (dist/ partly
// deleted by hand), the state is thrown away so tsc emits everything again.
if (existsSync(buildInfo) && !existsSync(join(dist, 'cli', 'main.js'))) rmSync(buildInfo);
rmSync(stamp, { force: true });

const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const compiled = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (compiled.status !== 0) {
  process.stderr.write(
    `hearth build: tsc failed (status ${compiled.status ?? compiled.signal}); dist/ is incomplete. Fix the errors above and run npm run build again.\n`,
  );
  process.exit(1);
}

const sources = new Set(files(src).map((path) => relative(src, path)));
for (const path of sources) {
  if (path.endsWith('.ts')) continue;
  mkdirSync(dirname(join(dist, path)), { recursive: true });
  copyFileSync(join(src, path), join(dist, path));
}
for (const path of files(dist)) {
  const rel = relative(dist, path);
  if (rel.startsWith('.')) continue;
  const source = rel.replace(/\.js(\.map)?$/, '.ts').replace(/\.d\.ts$/, '.ts');
  if (!sources.has(source) && !sources.has(rel)) rmSync(path);
}
writeFileSync(stamp, `${new Date().toISOString()}\n`);
