import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { sharedDir } from './shared.ts';
import { isHearthError } from '../../src/errors.ts';
import { parseCompositeAction, parseGithubWorkflow } from '../../src/workflow/github/parse.ts';
import { firstUnsupported } from '../../src/workflow/runner/github-job.ts';

// The real-world corpus beside the repository (../shared), checked by `npm run conformance` only.
const DIR = join(sharedDir(), 'fixtures', 'github-workflows');

/**
 * Every real-world workflow either plans (with this many jobs, of which
 * `failing` use an action hearth run cannot run and so fail when they start)
 * or is refused with this message, which starts with file:line:column.
 */
const EXPECTED: Record<string, { jobs: number; failing: number } | { refused: RegExp }> = {
  'BurntSushi__ripgrep__ci.yml': { jobs: 18, failing: 18 },
  'actions__starter-workflows__jekyll-gh-pages.yml': { jobs: 2, failing: 2 },
  'cli__cli__go.yml': { jobs: 6, failing: 6 },
  'discourse__discourse__tests.yml': { refused: /^discourse__discourse__tests\.yml:23:16: jobs\.build\.container is not supported yet: hearth run execut/ },
  'django__django__schedule_tests.yml': {
    refused: /^django__django__schedule_tests\.yml:119:7: jobs\.selenium-postgresql\.services is not supported yet: hear/,
  },
  'etcd-io__etcd__tests-template.yaml': { jobs: 5, failing: 5 },
  'facebook__docusaurus__tests.yml': { jobs: 5, failing: 5 },
  'fmtlib__fmt__linux.yml': { jobs: 8, failing: 0 },
  'git__git__main.yml': { refused: /^git__git__main\.yml:258:16: jobs\.dockerized\.container is not supported yet: hearth run e/ },
  'github__docs__test.yml': { refused: /^github__docs__test\.yml:79:18: matrix\.include is an expression \(\$\{\{ fromJSON\(needs\.figureOu/ },
  'go-gitea__gitea__files-changed.yml': { jobs: 1, failing: 1 },
  'go-gitea__gitea__pull-db-tests.yml': {
    refused: /^go-gitea__gitea__pull-db-tests\.yml:12:11: jobs\.files-changed calls a reusable workflow, which hearth r/,
  },
  'gohugoio__hugo__test.yml': { jobs: 6, failing: 6 },
  'google__guava__ci.yml': { jobs: 6, failing: 6 },
  'hashicorp__terraform__checks.yml': { jobs: 4, failing: 4 },
  'jekyll__jekyll__ci.yml': { jobs: 4, failing: 4 },
  'junit-team__junit5__main.yml': { jobs: 5, failing: 5 },
  'mdn__content__pr-test.yml': { jobs: 1, failing: 1 },
  'microsoft__TypeScript__ci.yml': { jobs: 27, failing: 26 },
  'nodejs__node__test-linux.yml': { jobs: 1, failing: 1 },
  'pallets__flask__publish.yaml': { refused: /^pallets__flask__publish\.yaml:36:11: jobs\.provenance calls a reusable workflow, which hearth run / },
  'pallets__flask__tests.yaml': { jobs: 11, failing: 11 },
  'prometheus__prometheus__ci.yml': { refused: /^prometheus__prometheus__ci\.yml:14:7: jobs\.test_go\.container is not supported yet: hearth run exec/ },
  'psf__black__test.yml': { jobs: 9, failing: 9 },
  'pypa__pip__ci.yml': { jobs: 25, failing: 25 },
  'python__cpython__reusable-docs.yml': { jobs: 3, failing: 3 },
  'pytorch__pytorch__lint.yml': { refused: /^pytorch__pytorch__lint\.yml:19:11: jobs\.lintrunner-clang calls a reusable workflow, which heart/ },
  'redis__redis__ci.yml': { refused: /^redis__redis__ci\.yml:45:16: jobs\.build-debian-old\.container is not supported yet: hearth/ },
  'rubocop__rubocop__rubocop.yml': { jobs: 17, failing: 17 },
  'ruby__ruby__ubuntu.yml': { jobs: 10, failing: 9 },
  'rust-lang__rust-analyzer__ci.yaml': { jobs: 18, failing: 7 },
  'rust-lang__rust__ci.yml': { jobs: 61, failing: 4 },
  'serde-rs__serde__ci.yml': { jobs: 15, failing: 15 },
  'spring-projects__spring-boot__build-and-deploy-snapshot.yml': { jobs: 1, failing: 1 },
  'squidfunk__mkdocs-material__documentation.yml': { jobs: 1, failing: 1 },
  'systemd__systemd__build_test.yml': { jobs: 5, failing: 0 },
  'tokio-rs__tokio__loom.yml': { jobs: 6, failing: 6 },
  'vercel__next.js__build_reusable.yml': { refused: /^vercel__next\.js__build_reusable\.yml:290:9: a step needs exactly one of run: and uses:/ },
  'vercel__next.js__trigger_release.yml': { jobs: 1, failing: 1 },
  'vitejs__vite__ci.yml': { jobs: 8, failing: 6 },
};

it('every GitHub workflow fixture plans or is refused with its expected message', async () => {
  const files = readdirSync(DIR)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();
  assert.deepEqual(files, Object.keys(EXPECTED).sort(), 'the fixture set changed: update EXPECTED');
  let planned = 0;
  let refused = 0;
  for (const file of files) {
    const expected = EXPECTED[file]!;
    try {
      const plan = await parseGithubWorkflow(`${DIR}/${file}`, { repoRoot: DIR, event: 'push', inputs: {} });
      assert.ok('jobs' in expected, `${file} planned but should be refused`);
      assert.equal(plan.jobs.length, expected.jobs, `${file}: planned jobs`);
      const failing = plan.jobs.filter((j) => j.body.kind === 'github' && firstUnsupported(j.body.steps) !== undefined).length;
      assert.equal(failing, expected.failing, `${file}: jobs with an unsupported action`);
      planned++;
    } catch (error) {
      if (error instanceof assert.AssertionError) throw error;
      assert.ok(isHearthError(error, 'HEARTH_ERR_WORKFLOW'), `${file} crashed: ${(error as Error).stack}`);
      assert.ok('refused' in expected, `${file} refused but should plan: ${error.message}`);
      assert.match(error.message.replace(`${DIR}/`, ''), expected.refused);
      refused++;
    }
  }
  assert.deepEqual({ planned, refused }, { planned: 30, refused: 10 });
});

const ACTIONS_DIR = `${DIR}/actions`;

/**
 * Every real-world composite action, loaded by the same loader `uses: ./dir`
 * goes through: it loads (with this many steps, inputs and outputs, and
 * `unsupported` steps that would fail a job using it, the first of them with
 * this message) or is refused with this message.
 */
const EXPECTED_ACTIONS: Record<string, { steps: number; inputs: number; outputs: number; unsupported: number; first?: RegExp } | { refused: RegExp }> = {
  'aquasecurity__trivy-action__action.yaml': {
    steps: 8,
    inputs: 29,
    outputs: 0,
    unsupported: 2,
    first: /^aquasecurity__trivy-action__action\.yaml:129:13: the action aquasecurity\/setup-trivy@e6c2c5e\S+ cannot run under hearth run/,
  },
  'dtolnay__rust-toolchain__action.yml': { steps: 12, inputs: 3, outputs: 2, unsupported: 0 },
  'github__docs__action.yml': {
    steps: 3,
    inputs: 0,
    outputs: 0,
    unsupported: 2,
    first: /^github__docs__action\.yml:9:13: the action actions\/cache@9b0c1fc\S+ cannot run under hearth run/,
  },
  'neovim__neovim__action.yml': {
    steps: 6,
    inputs: 1,
    outputs: 0,
    unsupported: 2,
    first: /^neovim__neovim__action\.yml:30:13: the action mlugg\/setup-zig@d1434d0\S+ cannot run under hearth run/,
  },
  'spring-projects__spring-boot__action.yml': {
    steps: 3,
    inputs: 11,
    outputs: 2,
    unsupported: 1,
    first: /^spring-projects__spring-boot__action\.yml:54:13: local action \.\/\.github\/actions\/prepare-gradle-build has no action\.yml/,
  },
};

it('every composite action fixture loads through the composite loader or is refused with its expected message', async () => {
  const files = readdirSync(ACTIONS_DIR)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();
  assert.deepEqual(files, Object.keys(EXPECTED_ACTIONS).sort(), 'the action fixture set changed: update EXPECTED_ACTIONS');
  let loaded = 0;
  let refused = 0;
  for (const file of files) {
    const expected = EXPECTED_ACTIONS[file]!;
    try {
      const action = await parseCompositeAction(`${ACTIONS_DIR}/${file}`, { repoRoot: ACTIONS_DIR });
      assert.ok('steps' in expected, `${file} loaded but should be refused`);
      const shape = {
        steps: action.steps.length,
        inputs: Object.keys(action.inputs).length,
        outputs: Object.keys(action.outputs).length,
        unsupported: action.steps.filter((step) => step.action.kind === 'unsupported').length,
      };
      assert.deepEqual(shape, { steps: expected.steps, inputs: expected.inputs, outputs: expected.outputs, unsupported: expected.unsupported }, file);
      const first = firstUnsupported(action.steps);
      if (expected.first) assert.match((first ?? '').replace(`${ACTIONS_DIR}/`, ''), expected.first);
      else assert.equal(first, undefined, file);
      for (const step of action.steps) assert.equal(step.location.file, `${ACTIONS_DIR}/${file}`, `${file}: step locations point into the action`);
      loaded++;
    } catch (error) {
      if (error instanceof assert.AssertionError) throw error;
      assert.ok(isHearthError(error, 'HEARTH_ERR_WORKFLOW'), `${file} crashed: ${(error as Error).stack}`);
      assert.ok('refused' in expected, `${file} refused but should load: ${error.message}`);
      assert.match(error.message.replace(`${ACTIONS_DIR}/`, ''), expected.refused);
      refused++;
    }
  }
  assert.deepEqual({ loaded, refused }, { loaded: 5, refused: 0 });
});
