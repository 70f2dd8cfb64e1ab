// Runs every test file with node:test (TypeScript through tsx) and ends with the
// plain summary line `N passed, N failed`, which CI reads.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';

function testFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return testFiles(path);
    return entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

const only = process.argv.slice(2);
const files = only.length ? only : testFiles('test').sort();
process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import tsx`.trim();

let passed = 0;
let failed = 0;
let skipped = 0;
const stream = run({ files, concurrency: 2, timeout: 10 * 60 * 1000 });
stream.on('test:pass', (event) => {
  if (event.details.type === 'suite') return;
  if (event.skip || event.todo) skipped++;
  else passed++;
});
stream.on('test:fail', (event) => {
  if (event.details.type === 'suite' && event.details.error?.failureType !== 'testCodeFailure' && event.details.error?.failureType !== 'hookFailed') return;
  failed++;
});
const report = stream.compose(spec);
report.on('data', (chunk) => process.stdout.write(chunk));
report.on('end', () => {
  process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
});
