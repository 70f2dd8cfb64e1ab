import { basename } from 'node:path';
import { runProgram } from '../../system/run.ts';

async function git(repoRoot: string, args: string[]): Promise<string | undefined> {
  try {
    return (await runProgram('git', ['-C', repoRoot, ...args])).stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The `github` context and the event payload of a local run: repository facts
 * from git where the project is a repository, placeholders otherwise, and a
 * payload shaped like the real event's (enough for the fields workflows read).
 */
export async function githubContextFor(options: {
  event: string;
  repoRoot: string;
  inputs: Readonly<Record<string, string>>;
  /** Runs git in the project and returns its trimmed output, or undefined when git fails (tests pass their own). */
  git?: (repoRoot: string, args: string[]) => Promise<string | undefined>;
}): Promise<{ github: Record<string, unknown>; payload: Record<string, unknown> }> {
  const run = options.git ?? git;
  const sha = (await run(options.repoRoot, ['rev-parse', 'HEAD'])) ?? '0'.repeat(40);
  // A detached HEAD answers "HEAD", which is no branch.
  const head = await run(options.repoRoot, ['rev-parse', '--abbrev-ref', 'HEAD']);
  const branch = head && head !== 'HEAD' ? head : 'main';
  const remote = await run(options.repoRoot, ['config', '--get', 'remote.origin.url']);
  const repository = /[:/]([^/:]+\/[^/]+?)(\.git)?$/.exec(remote ?? '')?.[1] ?? `local/${basename(options.repoRoot)}`;
  const [owner, name] = repository.split('/') as [string, string];
  const ref = `refs/heads/${branch}`;
  const repo = { full_name: repository, name, owner: { login: owner }, default_branch: 'main', fork: false, private: false };
  const sender = { login: 'hearth', type: 'User' };
  const commit = {
    id: sha,
    message: 'local run',
    timestamp: new Date().toISOString(),
    author: { name: 'hearth', email: 'hearth@localhost' },
    committer: { name: 'hearth', email: 'hearth@localhost' },
  };
  let payload: Record<string, unknown>;
  switch (options.event) {
    case 'pull_request':
    case 'pull_request_target': {
      // The fields workflows read: head/base ref, sha and repo (a same-repository PR, not a fork), labels, draft, author.
      const side = (branchName: string) => ({ label: `${owner}:${branchName}`, ref: branchName, sha, user: { login: owner }, repo });
      const pullRequest = {
        number: 1,
        state: 'open',
        title: 'local run',
        user: { login: 'hearth' },
        labels: [],
        draft: false,
        merged: false,
        commits: 1,
        head: side(branch),
        base: side('main'),
      };
      payload = { action: 'opened', number: 1, pull_request: pullRequest, repository: repo, sender };
      break;
    }
    case 'workflow_dispatch':
      payload = { inputs: { ...options.inputs }, ref, repository: repo, sender };
      break;
    default:
      payload = {
        ref,
        before: '0'.repeat(40),
        after: sha,
        created: false,
        deleted: false,
        forced: false,
        base_ref: null,
        commits: [commit],
        head_commit: commit,
        pusher: { name: 'hearth', email: 'hearth@localhost' },
        repository: repo,
        sender,
      };
  }
  const runId = String(Date.now());
  const github: Record<string, unknown> = {
    event_name: options.event,
    event: payload,
    sha,
    ref: options.event.startsWith('pull_request') ? 'refs/pull/1/merge' : ref,
    ref_name: options.event.startsWith('pull_request') ? '1/merge' : branch,
    ref_type: 'branch',
    head_ref: options.event.startsWith('pull_request') ? branch : '',
    base_ref: options.event.startsWith('pull_request') ? 'main' : '',
    repository,
    repository_owner: owner,
    actor: 'hearth',
    triggering_actor: 'hearth',
    run_id: runId,
    run_number: '1',
    run_attempt: '1',
    workflow: '',
    workspace: '/workspace',
    server_url: 'https://github.com',
    api_url: 'https://api.github.com',
    token: '',
  };
  return { github, payload };
}
