import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { writeCpio } from '../../src/image/cpio.ts';

it('writes a newc archive that GNU cpio unpacks with modes, symlinks and data intact', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-cpio-'));
  try {
    const binary = Buffer.from([0, 1, 2, 255, 10, 13]);
    const archive = writeCpio([
      { kind: 'dir', path: 'bin' },
      { kind: 'file', path: 'bin/tool', data: binary, mode: 0o755 },
      { kind: 'symlink', path: 'bin/alias', target: 'tool' },
      { kind: 'file', path: 'odd-len', data: Buffer.from('abc') },
    ]);
    execFileSync('cpio', ['-id', '--quiet', '--no-absolute-filenames'], { cwd: dir, input: archive });
    assert.deepEqual(await readFile(join(dir, 'bin/tool')), binary);
    assert.equal((await lstat(join(dir, 'bin/tool'))).mode & 0o777, 0o755);
    assert.equal(await readlink(join(dir, 'bin/alias')), 'tool');
    assert.equal(await readFile(join(dir, 'odd-len'), 'utf8'), 'abc');
    const listing = execFileSync('cpio', ['-t', '--quiet'], { input: archive }).toString().trim().split('\n');
    assert.deepEqual(listing, ['bin', 'bin/tool', 'bin/alias', 'odd-len']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it('is reproducible: the same entries give the same bytes', () => {
  const entries = [{ kind: 'file', path: 'a', data: Buffer.from('x') }] as const;
  assert.deepEqual(writeCpio(entries), writeCpio(entries));
});
