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
export async function githubContextFor(options: { event: string; repoRoot: string; inputs: Readonly<Record<string, string>> }): Promise<{ github: Record<string, unknown>; payload: Record<string, unknown> }> {
  const sha = (await git(options.repoRoot, ['rev-parse', 'HEAD'])) ?? '0'.repeat(40);
  const branch = (await git(options.repoRoot, ['rev-parse', '--abbrev-ref', 'HEAD'])) ?? 'main';
  const remote = await git(options.repoRoot, ['config', '--get', 'remote.origin.url']);
  const repository = /[:/]([^/:]+\/[^/]+?)(\.git)?$/.exec(remote ?? '')?.[1] ?? `local/${basename(options.repoRoot)}`;
  const [owner, name] = repository.split('/') as [string, string];
  const ref = `refs/heads/${branch}`;
  const repo = { full_name: repository, name, owner: { login: owner }, default_branch: 'main' };
  const sender = { login: 'hearth', type: 'User' };
  let payload: Record<string, unknown>;
  switch (options.event) {
    case 'pull_request':
    case 'pull_request_target':
      payload = { action: 'opened', number: 1, pull_request: { number: 1, head: { ref: branch, sha }, base: { ref: 'main', sha }, title: 'local run', draft: false }, repository: repo, sender };
      break;
    case 'workflow_dispatch':
      payload = { inputs: { ...options.inputs }, ref, repository: repo, sender };
      break;
    default:
      payload = { ref, before: '0'.repeat(40), after: sha, head_commit: { id: sha, message: 'local run' }, repository: repo, sender };
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
