import type { Command } from 'commander';
import { basename, dirname, resolve } from 'node:path';
import { HearthError } from '../../errors.ts';
import type { GitlabPlanOptions } from '../../workflow/gitlab/parse.ts';
import type { Plan } from '../../workflow/model.ts';
import type { CliContextSource } from '../context.ts';
import { destroyVmsOnSignals } from '../teardown.ts';
import { parseEnv } from './vm.ts';

interface RunOptions {
  forge?: 'github' | 'gitlab';
  event: string;
  input?: string[];
  job?: string;
  manual?: boolean;
  var?: string[];
  secret?: string[];
  network?: boolean;
  dryRun?: boolean;
  parallel?: number;
  directory?: string;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** GitLab files are named .gitlab-ci.yml (or *.gitlab-ci.yml); everything else is a GitHub workflow. */
export function detectForge(file: string): 'github' | 'gitlab' {
  return /(^|[./])gitlab-ci\.ya?ml$/.test(basename(file)) ? 'gitlab' : 'github';
}

/**
 * The project a workflow belongs to, which is what the job VMs get a copy of:
 * the directory holding `.github/workflows/`, or the directory of `.gitlab-ci.yml`.
 */
export function projectRootOf(file: string): string {
  const dir = dirname(file);
  return basename(dir) === 'workflows' && basename(dirname(dir)) === '.github' ? dirname(dirname(dir)) : dir;
}

async function currentBranch(repoRoot: string): Promise<string> {
  const { runProgram } = await import('../../system/run.ts');
  try {
    return (await runProgram('git', ['-C', repoRoot, 'rev-parse', '--abbrev-ref', 'HEAD'])).stdout.trim() || 'main';
  } catch {
    return 'main';
  }
}

export function registerRun(program: Command, context: CliContextSource): void {
  program
    .command('run')
    .description('run a GitHub Actions workflow or a .gitlab-ci.yml locally, each job in a fresh microVM')
    .argument('<file>', 'workflow file, e.g. .github/workflows/ci.yml or .gitlab-ci.yml')
    .option('-C, --directory <dir>', 'the project copied into each job VM (default: the directory holding .github/, or that of .gitlab-ci.yml)')
    .option('--forge <forge>', 'github or gitlab (default: from the file name)')
    .option('--event <name>', 'GitHub: the triggering event (push, pull_request, workflow_dispatch, ...)', 'push')
    .option('--input <key=value>', 'GitHub: a workflow_dispatch input (repeatable)', collect)
    .option('--job <id>', 'run only this job and the jobs it needs')
    .option('--manual', 'GitLab: also run when: manual jobs')
    .option('--var <KEY[=VALUE]>', 'a variable (GitHub vars context / GitLab CI variable); KEY alone copies it from this environment', collect)
    .option('--secret <KEY[=VALUE]>', 'a secret (GitHub secrets context / masked GitLab variable); KEY alone copies it from this environment', collect)
    .option('--network', 'give the job VMs network access (off by default)')
    .option('--parallel <n>', 'at most this many jobs at once (default: as many as CPU and memory allow)', (v) => Number(v))
    .option('--dry-run', 'print the plan (jobs, matrix expansion, order) without booting anything')
    .action(async (fileArg: string, options: RunOptions) => {
      const file = resolve(fileArg);
      const forge = options.forge ?? detectForge(file);
      if (forge !== 'github' && forge !== 'gitlab')
        throw new HearthError('HEARTH_ERR_BAD_OPTION', {
          option: '--forge',
          reason: `"${String(forge)}" is neither github nor gitlab`,
          hint: '--forge github or --forge gitlab',
        });
      const repoRoot = options.directory ? resolve(options.directory) : projectRootOf(file);
      const vars = await parseEnv(options.var ?? [], []);
      const secrets = await parseEnv(options.secret ?? [], []);
      const inputs: Record<string, string> = {};
      for (const pair of options.input ?? []) {
        const eq = pair.indexOf('=');
        if (eq <= 0)
          throw new HearthError('HEARTH_ERR_BAD_OPTION', {
            option: `--input ${pair}`,
            reason: 'is not key=value',
            hint: 'for example --input environment=staging',
          });
        inputs[pair.slice(0, eq)] = pair.slice(eq + 1);
      }
      const [{ parseGithubWorkflow }, { parseGitlabCi }, { describePlan, summaryTable }] = await Promise.all([
        import('../../workflow/github/parse.ts'),
        import('../../workflow/gitlab/parse.ts'),
        import('../../workflow/report.ts'),
      ]);
      const gitlabOptions: GitlabPlanOptions = {
        repoRoot,
        manual: options.manual ?? false,
        variables: { ...vars, ...secrets },
        ref: await currentBranch(repoRoot),
        source: 'push',
        ...(options.job ? { job: options.job } : {}),
      };
      const plan: Plan =
        forge === 'github'
          ? await parseGithubWorkflow(file, { repoRoot, event: options.event, inputs, ...(options.job ? { job: options.job } : {}) })
          : await parseGitlabCi(file, gitlabOptions);
      if (options.dryRun) {
        process.stdout.write(describePlan(plan) + '\n');
        return;
      }
      const [{ driver }, { githubContextFor }, { ConsoleOutput }, { runGithubJob }, { runGitlabJob }, { planExitCode, runPlan }] = await Promise.all([
        context(),
        import('../../workflow/github/context.ts'),
        import('../../workflow/runner/console-output.ts'),
        import('../../workflow/runner/github-job.ts'),
        import('../../workflow/runner/gitlab-job.ts'),
        import('../../workflow/runner/plan-runner.ts'),
      ]);
      const output = new ConsoleOutput();
      const write = output.line;
      const stopHandlingSignals = destroyVmsOnSignals(driver);
      try {
        let executeJob;
        if (forge === 'github') {
          const resolvedInputs = plan.inputs ?? inputs;
          const { github, payload } = await githubContextFor({ event: options.event, repoRoot, inputs: resolvedInputs });
          const jobIdOf = (key: string): string => {
            const job = plan.jobs.find((j) => j.key === key);
            return job?.body.kind === 'github' ? job.body.jobId : key;
          };
          executeJob = (run: Parameters<typeof runGithubJob>[0]) =>
            runGithubJob(run, {
              driver,
              repoRoot,
              write,
              github,
              eventPayload: JSON.stringify(payload),
              secrets,
              vars,
              inputs: resolvedInputs,
              network: options.network ?? false,
              jobIdOf,
            });
        } else {
          executeJob = (run: Parameters<typeof runGitlabJob>[0]) =>
            runGitlabJob(run, { driver, repoRoot, write, planOptions: gitlabOptions, secrets, network: options.network ?? false });
        }
        const results = await runPlan(plan, {
          executeJob,
          onProgress: (running, done, total) => output.setStatus(running, done, total),
          ...(options.parallel ? { maxJobs: options.parallel } : {}),
        });
        output.clearStatus();
        process.stdout.write(`\n${summaryTable(results)}\n`);
        for (const skipped of plan.skipped) process.stdout.write(`not planned: ${skipped.key}: ${skipped.reason}\n`);
        process.exitCode = planExitCode(results);
      } finally {
        stopHandlingSignals();
      }
    });
}
