import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { evaluateCondition, interpolate } from '../../../src/workflow/github/expressions.ts';
import { githubContextFor } from '../../../src/workflow/github/context.ts';

const SHA = 'a'.repeat(40);
/** git as a repository on branch `feature/x` with an origin on GitHub would answer. */
const git = async (_root: string, args: string[]): Promise<string | undefined> => {
  const answers: Record<string, string> = {
    'rev-parse HEAD': SHA,
    'rev-parse --abbrev-ref HEAD': 'feature/x',
    'config --get remote.origin.url': 'git@github.com:octo/widget.git',
  };
  return answers[args.join(' ')];
};

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
const require = createRequire(import.meta.url);
const examples = JSON.parse(readFileSync(require.resolve('@octokit/webhooks-examples/api.github.com/index.json'), 'utf8')) as {
  name: string;
  examples: Record<string, Json>[];
}[];
const realPayload = (event: string, action?: string): Json =>
  examples.find((set) => set.name === event)!.examples.find((e) => action === undefined || e.action === action)!;

/** Paths in `ours` that a real payload of the event does not have, or has with another JSON type (null matches anything). */
function shapeMismatches(ours: Json, real: Json, path = 'event'): string[] {
  if (ours === null || real === null) return [];
  if (Array.isArray(ours)) {
    if (!Array.isArray(real)) return [`${path}: array here, ${typeof real} in GitHub's`];
    return ours.length && real.length ? shapeMismatches(ours[0]!, real[0]!, `${path}[0]`) : [];
  }
  if (typeof ours === 'object') {
    if (typeof real !== 'object' || Array.isArray(real)) return [`${path}: object here, not in GitHub's`];
    return Object.entries(ours).flatMap(([key, value]) =>
      key in real ? shapeMismatches(value, real[key]!, `${path}.${key}`) : [`${path}.${key}: not in GitHub's payload`],
    );
  }
  return typeof ours === typeof real ? [] : [`${path}: ${typeof ours} here, ${typeof real} in GitHub's`];
}

const contexts = (github: Record<string, unknown>) => ({
  github,
  env: {},
  vars: {},
  matrix: {},
  needs: {},
  steps: {},
  job: {},
  runner: {},
  inputs: {},
  secrets: {},
  strategy: {},
});
const loc = { file: 'wf.yml', line: 1, column: 1 };

describe('the synthesized --event payload and github context', () => {
  it('push: the branch, commit and repository from git, shaped like a real push payload', async () => {
    const { github, payload } = await githubContextFor({ event: 'push', repoRoot: '/p', inputs: {}, git });
    assert.equal(github.event_name, 'push');
    assert.equal(github.ref, 'refs/heads/feature/x');
    assert.equal(github.ref_name, 'feature/x');
    assert.equal(github.sha, SHA);
    assert.equal(github.repository, 'octo/widget');
    assert.equal(github.repository_owner, 'octo');
    assert.equal(github.head_ref, '');
    assert.equal(github.event, payload);
    assert.equal(payload.ref, 'refs/heads/feature/x');
    assert.equal(payload.after, SHA);
    assert.deepEqual(shapeMismatches(payload as Json, realPayload('push')), []);
    const c = contexts(github);
    assert.equal(
      interpolate('${{ github.event.head_commit.id }} ${{ github.event.repository.full_name }} ${{ github.event.repository.default_branch }}', c, loc),
      `${SHA} octo/widget main`,
    );
    assert.equal(evaluateCondition("github.event_name == 'push' && startsWith(github.ref, 'refs/heads/')", c, 'success', loc), true);
  });

  it('pull_request: the branch as the head of PR #1 into main, a same-repository PR, shaped like a real opened payload', async () => {
    const { github, payload } = await githubContextFor({ event: 'pull_request', repoRoot: '/p', inputs: {}, git });
    assert.equal(github.event_name, 'pull_request');
    assert.equal(github.ref, 'refs/pull/1/merge');
    assert.equal(github.head_ref, 'feature/x');
    assert.equal(github.base_ref, 'main');
    assert.deepEqual(shapeMismatches(payload as Json, realPayload('pull_request', 'opened')), []);
    const c = contexts(github);
    // What the fixtures' workflows read from a pull_request event.
    assert.equal(
      interpolate(
        '${{ github.event.number }} ${{ github.event.pull_request.number }} ${{ github.event.pull_request.head.sha }} ${{ github.event.pull_request.head.ref }} ${{ github.event.pull_request.base.ref }}',
        c,
        loc,
      ),
      `1 1 ${SHA} feature/x main`,
    );
    assert.equal(evaluateCondition('github.event.pull_request.head.repo.full_name == github.repository', c, 'success', loc), true);
    assert.equal(evaluateCondition('!github.event.pull_request.head.repo.fork && !github.event.pull_request.draft', c, 'success', loc), true);
    assert.equal(evaluateCondition("contains(github.event.pull_request.labels.*.name, 'skip-ci')", c, 'success', loc), false);
    assert.equal(interpolate('${{ github.event.pull_request.user.login }}', c, loc), 'hearth');
  });

  it('works outside a git repository and on a detached HEAD', async () => {
    const none = await githubContextFor({ event: 'push', repoRoot: '/some/project', inputs: {}, git: async () => undefined });
    assert.equal(none.github.repository, 'local/project');
    assert.equal(none.github.sha, '0'.repeat(40));
    assert.equal(none.github.ref, 'refs/heads/main');
    const detached = await githubContextFor({
      event: 'push',
      repoRoot: '/p',
      inputs: {},
      git: async (_r, args) => (args.includes('--abbrev-ref') ? 'HEAD' : git(_r, args)),
    });
    assert.equal(detached.github.ref, 'refs/heads/main');
  });

  it('workflow_dispatch carries the inputs', async () => {
    const { payload } = await githubContextFor({ event: 'workflow_dispatch', repoRoot: '/p', inputs: { level: 'debug' }, git });
    assert.deepEqual(payload.inputs, { level: 'debug' });
  });
});
