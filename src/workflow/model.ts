/**
 * What `hearth run` executes: a plan of jobs, the same shape for GitHub Actions
 * workflows and GitLab CI files. Parsers (src/workflow/github, src/workflow/gitlab)
 * produce it; the runner (src/workflow/run.ts) executes it, one fresh VM per job.
 * Parsers resolve everything knowable before running (matrix expansion, extends,
 * anchors, rules, includes, composite actions); GitHub `${{ }}` expressions that
 * depend on run-time contexts (steps, needs, job status) stay as text and are
 * evaluated by the runner through src/workflow/github/expressions.ts.
 */
export interface SourceLocation {
  readonly file: string;
  /** 1-based */
  readonly line: number;
  /** 1-based */
  readonly column: number;
}

export function formatLocation(location: SourceLocation): string {
  return `${location.file}:${location.line}:${location.column}`;
}

export interface Plan {
  readonly forge: 'github' | 'gitlab';
  readonly file: string;
  /** In file order; `needs` give the DAG. */
  readonly jobs: readonly PlannedJob[];
  /** Jobs left out at plan time (rules, when: manual, only/except, --job filter), with why. */
  readonly skipped: readonly { readonly key: string; readonly reason: string }[];
  /** GitHub: the workflow_dispatch inputs after checking, with declared defaults filled in. */
  readonly inputs?: Readonly<Record<string, string>>;
}

export interface PlannedJob {
  /** Unique in the plan: the job id, plus the matrix values for a matrix expansion, e.g. `test (3.11, ubuntu-latest)`. */
  readonly key: string;
  readonly name: string;
  /** Keys of the jobs this one waits for. */
  readonly needs: readonly string[];
  /** `runs-on` labels or GitLab `tags`: the VM shape comes from these. */
  readonly labels: readonly string[];
  readonly timeoutMinutes: number;
  /** The pipeline still passes when this job fails (continue-on-error: true / allow_failure). */
  readonly allowFailure: boolean;
  readonly location: SourceLocation;
  readonly body: GithubJobBody | GitlabJobBody;
}

export interface GithubJobBody {
  readonly kind: 'github';
  /** The key under `jobs:`. */
  readonly jobId: string;
  /** This expansion's matrix values; {} without a matrix. */
  readonly matrix: Readonly<Record<string, unknown>>;
  /** Expansions of one matrix share a group; fail-fast and max-parallel apply within it. */
  readonly strategy: {
    readonly group: string;
    readonly failFast: boolean;
    readonly maxParallel?: number;
    readonly jobIndex: number;
    readonly jobTotal: number;
  };
  /** Expression text without the `${{ }}` wrapper, or undefined (means success()). */
  readonly if?: string;
  readonly workflowEnv: Readonly<Record<string, string>>;
  readonly jobEnv: Readonly<Record<string, string>>;
  /** `defaults.run` of the workflow and job merged; already applied to the steps at plan time. */
  readonly defaults: { readonly shell?: string; readonly workingDirectory?: string };
  /** Raw templates, evaluated after the steps. */
  readonly outputs: Readonly<Record<string, string>>;
  readonly steps: readonly GithubStep[];
}

export interface GithubStep {
  readonly id?: string;
  /** Display name: `name:`, or `Run <first line>` / the action reference, as the runner shows it. */
  readonly name: string;
  readonly if?: string;
  readonly env: Readonly<Record<string, string>>;
  /** true/false, or expression text. */
  readonly continueOnError: boolean | string;
  /** `timeout-minutes`: a number, or expression text (no `${{ }}`) evaluated when the step starts; `location` is where it was written. */
  readonly timeout?: { readonly minutes: number | string; readonly location: SourceLocation };
  /** `working-directory`, or the job's/workflow's `defaults.run` for a workflow's own run: steps (never inside composite actions). */
  readonly workingDirectory?: string;
  /** `shell:`, or `defaults.run.shell` as for workingDirectory; unset means bash. */
  readonly shell?: string;
  readonly location: SourceLocation;
  readonly action: GithubStepAction;
}

export type GithubStepAction =
  | { readonly kind: 'run'; readonly script: string }
  /** actions/checkout: the local working tree is copied into the VM. */
  | { readonly kind: 'checkout'; readonly with: Readonly<Record<string, string>> }
  /**
   * An action hearth run cannot run (not checkout, no local composite, no
   * registered translation): the job fails at plan-known cause, naming the action
   * and its place, while the rest of the workflow still runs.
   */
  | { readonly kind: 'unsupported'; readonly uses: string; readonly message: string }
  /** A local composite action (`uses: ./path`), its steps already loaded. */
  | {
      readonly kind: 'composite';
      readonly path: string;
      readonly with: Readonly<Record<string, string>>;
      readonly inputs: Readonly<Record<string, { readonly default?: string; readonly required?: boolean }>>;
      readonly outputs: Readonly<Record<string, string>>;
      readonly steps: readonly GithubStep[];
    };

export interface GitlabJobBody {
  readonly kind: 'gitlab';
  readonly stage: string;
  /** Global, default and job variables merged (job wins), plus the matrix values of a parallel:matrix expansion. Predefined CI_* are added by the runner. */
  readonly variables: Readonly<Record<string, string>>;
  readonly beforeScript: readonly string[];
  readonly script: readonly string[];
  readonly afterScript: readonly string[];
  /** on_success (default), on_failure, always; `manual` jobs are either skipped or planned as on_success with --manual. */
  readonly when: 'on_success' | 'on_failure' | 'always';
  /** `image:` as written, informational: Hearth runs the job on its own VM image. */
  readonly image?: string;
  /** For parallel: N, 1-based index and total (CI_NODE_INDEX / CI_NODE_TOTAL). */
  readonly node?: { readonly index: number; readonly total: number };
}
