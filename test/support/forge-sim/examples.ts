// Real GitHub webhook payloads from @octokit/webhooks-examples, the base of
// every body the sim sends, so Hearth parses the shape GitHub really posts.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

type Json = Record<string, unknown>;

interface ExampleSet {
  name: string;
  examples: Json[];
}

const require = createRequire(import.meta.url);
const sets = JSON.parse(readFileSync(require.resolve('@octokit/webhooks-examples/api.github.com/index.json'), 'utf8')) as ExampleSet[];

function examplesOf(event: string): Json[] {
  const set = sets.find((s) => s.name === event);
  if (!set || set.examples.length === 0) throw new Error(`@octokit/webhooks-examples has no ${event} examples`);
  return set.examples;
}

/**
 * A fresh copy of a workflow_job example for `action` (falling back to the
 * first example). Among several, the newest shape wins: one whose job carries
 * run_attempt and workflow_name.
 */
export function workflowJobExample(action: string): Json {
  const all = examplesOf('workflow_job');
  const sameAction = all.filter((e) => e.action === action);
  const pool = sameAction.length > 0 ? sameAction : all;
  const newest = pool.find((e) => {
    const job = e.workflow_job as Json;
    return 'run_attempt' in job && 'workflow_name' in job;
  });
  return structuredClone(newest ?? pool[0]!);
}

/** A fresh copy of the first ping example (a repository hook's ping). */
export function pingExample(): Json {
  return structuredClone(examplesOf('ping')[0]!);
}
