import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { sharedDir } from './shared.ts';
import { isHearthError } from '../../src/errors.ts';
import { parseGitlabCi } from '../../src/workflow/gitlab/parse.ts';

// The real-world corpus beside the repository (../shared), checked by `npm run conformance` only.
const DIR = join(sharedDir(), 'fixtures', 'gitlab-ci');

/** Every real-world .gitlab-ci.yml either plans (jobs planned, jobs left out by rules/only/manual) or is refused with this message. */
const EXPECTED: Record<string, { jobs: number; skipped: number } | { refused: RegExp }> = {
  'GNOME__glib__gitlab-ci.yml': { jobs: 13, skipped: 4 },
  'GNOME__gnome-shell__gitlab-ci.yml': { refused: /^GNOME__gnome-shell__gitlab-ci\.yml:2:5: include: project is not supported by hearth run \(only includ/ },
  'GNOME__gtk__gitlab-ci.yml': { jobs: 1, skipped: 1 },
  'GNOME__librsvg__gitlab-ci.yml': { refused: /^GNOME__librsvg__gitlab-ci\.yml:4:5: include: local file ci\/conta/ },
  'GStreamer__gstreamer__gitlab-ci.yml': {
    refused: /^GStreamer__gstreamer__gitlab-ci\.yml:2:5: include: remote is not supported by hearth run \(only include/,
  },
  'KDE__kdenlive__gitlab-ci.yml': { refused: /^KDE__kdenlive__gitlab-ci\.yml:5:5: include: remote is not supported by hearth run \(only include/ },
  'NVIDIA__k8s-device-plugin__gitlab-ci.yml': { refused: /^NVIDIA__k8s-device-plugin__gitlab-ci\.yml:16:5: include: local file \.common-/ },
  'NVIDIA__nvidia-container-toolkit__gitlab-ci.yml': { refused: /^NVIDIA__nvidia-container-toolkit__gitlab-ci\.yml:16:5: include: local file \.common-/ },
  'PipeWire__pipewire__gitlab-ci.yml': { refused: /^PipeWire__pipewire__gitlab-ci\.yml:28:5: include: project is not supported by hearth run \(only includ/ },
  'alpinelinux__aports__gitlab-ci.yml': { jobs: 0, skipped: 9 },
  'f-droid__fdroidclient__gitlab-ci.yml': { jobs: 4, skipped: 0 },
  'gitlabhq__gitlab-runner__gitlab-ci.yml': {
    refused: /^gitlabhq__gitlab-runner__gitlab-ci\.yml:2:3: include: template is not supported by hearth run \(only inclu/,
  },
  'gitlabhq__gitlab-shell__gitlab-ci.yml': { jobs: 5, skipped: 0 },
  'gitlabhq__gitlabhq__gitlab-ci.yml': { refused: /^gitlabhq__gitlabhq__gitlab-ci\.yml:404:1: job compile-assets uses services:, which hearth run does not/ },
  'libvirt__libvirt__gitlab-ci.yml': { jobs: 13, skipped: 13 },
  'qemu__qemu__gitlab-ci.yml': { refused: /^qemu__qemu__gitlab-ci\.yml:11:5: include: local file \.gitlab-/ },
  'u-boot__u-boot__gitlab-ci.yml': { jobs: 54, skipped: 26 },
  'veloren__veloren__gitlab-ci.yml': { jobs: 6, skipped: 6 },
  'xen-project__xen__gitlab-ci.yml': {
    refused: /^xen-project__xen__gitlab-ci\.yml:22:5: include: local file automation\/gitlab-ci\/analyze\.yaml does not exist/,
  },
  'xiph__opus__gitlab-ci.yml': { refused: /^xiph__opus__gitlab-ci\.yml:2:5: include: template is not supported by hearth run \(only inclu/ },
};

it('every GitLab CI fixture plans or is refused with its expected message', async () => {
  const files = readdirSync(DIR).sort();
  assert.deepEqual(files, Object.keys(EXPECTED).sort(), 'the fixture set changed: update EXPECTED');
  let planned = 0;
  let refused = 0;
  for (const file of files) {
    const expected = EXPECTED[file]!;
    try {
      const plan = await parseGitlabCi(`${DIR}/${file}`, { repoRoot: DIR, manual: false, variables: {}, ref: 'main', source: 'push' });
      assert.ok('jobs' in expected, `${file} planned but should be refused`);
      assert.deepEqual({ jobs: plan.jobs.length, skipped: plan.skipped.length }, expected, file);
      planned++;
    } catch (error) {
      if (error instanceof assert.AssertionError) throw error;
      assert.ok(isHearthError(error, 'HEARTH_ERR_WORKFLOW'), `${file} crashed: ${(error as Error).stack}`);
      assert.ok('refused' in expected, `${file} refused but should plan: ${error.message}`);
      assert.match(error.message.replace(`${DIR}/`, '').replaceAll(`${DIR}/`, ''), expected.refused);
      refused++;
    }
  }
  assert.deepEqual({ planned, refused }, { planned: 8, refused: 12 });
});
