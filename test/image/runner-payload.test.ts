import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { resolvePaths } from '../../src/config/paths.ts';
import { isHearthError } from '../../src/errors.ts';
import { addRunnersToImage } from '../../src/image/runner-payload.ts';
import { loadImage } from '../../src/image/store.ts';

const cache = resolvePaths().cache;
let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'hearth-payload-'));
  await mkdir(join(work, 'runner', 'bin'), { recursive: true });
  await writeFile(join(work, 'runner', 'run.sh'), '#!/bin/sh\necho runner\n');
  await chmod(join(work, 'runner', 'run.sh'), 0o755);
  await writeFile(join(work, 'runner', 'bin', 'Runner.Listener'), 'listener');
  execFileSync('tar', ['-czf', join(work, 'runner.tar.gz'), '-C', join(work, 'runner'), '.']);
  await writeFile(join(work, 'gitlab-runner'), '#!/bin/sh\n');
  await writeFile(join(work, 'not-a-runner.tar.gz'), '');
  execFileSync('tar', ['-czf', join(work, 'not-a-runner.tar.gz'), '-C', join(work, 'runner', 'bin'), '.']);
});
after(() => rm(work, { recursive: true, force: true }));

test('an initramfs image gets the runners in an appended archive; the same inputs are a no-op', async () => {
  const base = await loadImage(cache, 'minimal');
  const first = await addRunnersToImage(
    cache,
    base,
    { githubRunner: join(work, 'runner.tar.gz'), gitlabRunner: join(work, 'gitlab-runner') },
    'test-payload-minimal',
  );
  const listing = execFileSync('sh', ['-c', `cpio -tv --quiet < '${first.image.initrdPath}'`], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  // GNU cpio lists only the first archive; the kernel unpacks every concatenated one.
  const all = execFileSync('sh', ['-c', `tail -c +$(( $(stat -c %s '${base.initrdPath}') + 1 )) '${first.image.initrdPath}' | cpio -tv --quiet`], {
    encoding: 'utf8',
  });
  assert.ok(listing.includes('init'));
  assert.match(all, /-rwxr-xr-x .* opt\/actions-runner\/run\.sh/);
  assert.match(all, /opt\/actions-runner\/bin\/Runner\.Listener/);
  assert.match(all, /-rwxr-xr-x .* usr\/local\/bin\/gitlab-runner/);
  const again = await addRunnersToImage(
    cache,
    base,
    { githubRunner: join(work, 'runner.tar.gz'), gitlabRunner: join(work, 'gitlab-runner') },
    'test-payload-minimal',
  );
  assert.equal(again.built, false);
  assert.equal(again.image.id, first.image.id);
});

test(
  'a rootfs image gets the runners written into its ext4 with their modes',
  { skip: process.getuid?.() !== 0 && 'the debian image is built only as root' },
  async () => {
    const base = await loadImage(cache, 'debian');
    const { image } = await addRunnersToImage(cache, base, { githubRunner: join(work, 'runner.tar.gz') }, 'test-payload-debian');
    const listing = execFileSync('debugfs', ['-R', 'ls -l /opt/actions-runner', image.rootfsPath!], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    assert.match(listing, /100755 .* run\.sh/);
    assert.match(listing, /40755 .* bin/);
    await rm(image.dir, { recursive: true, force: true });
    await rm(join(image.dir, '..', 'test-payload-debian.json'), { force: true });
  },
);

test('a tarball that is not the actions runner is refused with the fix', async () => {
  await assert.rejects(
    addRunnersToImage(cache, await loadImage(cache, 'minimal'), { githubRunner: join(work, 'not-a-runner.tar.gz') }, 'test-payload-bad'),
    (e) => isHearthError(e, 'HEARTH_ERR_BAD_OPTION') && /run\.sh/.test(e.message),
  );
  await assert.rejects(
    addRunnersToImage(cache, await loadImage(cache, 'minimal'), { gitlabRunner: join(work, 'missing') }, 'test-payload-bad'),
    (e) => isHearthError(e, 'HEARTH_ERR_BAD_OPTION') && /--gitlab-runner/.test(e.message),
  );
});

test('a runner tarball whose file names could inject debugfs commands is refused, naming the file', async () => {
  const crafted = join(work, 'crafted');
  await mkdir(join(crafted, 'bin'), { recursive: true });
  await writeFile(join(crafted, 'run.sh'), '#!/bin/sh\n');
  // A newline ends debugfs's command: the rest of the name would be a command of its own.
  await writeFile(join(crafted, 'bin', 'x"\nmkdir pwned\n"'), '');
  execFileSync('tar', ['-czf', join(work, 'crafted.tar.gz'), '-C', crafted, '.']);
  await assert.rejects(
    addRunnersToImage(cache, await loadImage(cache, 'minimal'), { githubRunner: join(work, 'crafted.tar.gz') }, 'test-payload-crafted'),
    (e) => isHearthError(e, 'HEARTH_ERR_BAD_OPTION') && /mkdir pwned/.test(e.message) && /unchanged/.test(String(e.context.hint)),
  );
  await rm(crafted, { recursive: true, force: true });
});
