#!/usr/bin/env node
// Runs Hearth's compiled CLI (dist/, made by `npm run build`, which `npm install`, `npm start` and
// `npm test` run). Only existence is checked here, to keep every call cheap; the set-up script and
// the tests' CLI helper rebuild dist/ when src/ is newer.
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    'hearth: error: the compiled CLI (dist/cli/main.js) is missing\n  fix: run `npm run build` in the Hearth checkout (npm start and npm test do it for you)\n',
  );
  process.exit(125);
}
await import(main.href);
