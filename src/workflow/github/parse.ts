import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { workflowError } from '../errors.ts';
import type { GithubJobBody, GithubStep, GithubStepAction, Plan, PlannedJob, SourceLocation } from '../model.ts';
import { isMap, isScalar, isSeq, YamlSource, type Node, type YAMLMap } from '../yaml-source.ts';
import { evaluateValue, interpolate, unwrapExpression, type ExpressionContexts } from './expressions.ts';

export interface GithubPlanOptions {
  readonly repoRoot: string;
  /** push, pull_request, workflow_dispatch, ... */
  readonly event: string;
  /** workflow_dispatch inputs from --input k=v */
  readonly inputs: Readonly<Record<string, string>>;
  /** Only this job and what it needs, transitively. */
  readonly job?: string;
}

/**
 * Actions that run as something Hearth knows how to do, keyed by `owner/repo`.
 * Everything else is refused, naming the action and where it is used.
 */
export const ACTION_TRANSLATIONS: Record<string, (withArgs: Readonly<Record<string, string>>) => GithubStepAction> = {
  'actions/checkout': (withArgs) => ({ kind: 'checkout', with: withArgs }),
};

const DEFAULT_TIMEOUT_MINUTES = 360;

function matrixContexts(matrix: Record<string, unknown>, inputs: Readonly<Record<string, string>>): ExpressionContexts {
  return { github: {}, env: {}, vars: {}, matrix, needs: {}, steps: {}, job: {}, runner: {}, inputs, secrets: {}, strategy: {} };
}

function display(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Matrix expansion as GitHub documents it: product, then exclude (partial matches), then include. */
export function expandMatrix(axes: Record<string, unknown[]>, include: Record<string, unknown>[], exclude: Record<string, unknown>[]): Record<string, unknown>[] {
  let combos: Record<string, unknown>[] = Object.keys(axes).length ? [{}] : [];
  for (const [key, values] of Object.entries(axes)) combos = combos.flatMap((combo) => values.map((value) => ({ ...combo, [key]: value })));
  const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
  combos = combos.filter((combo) => !exclude.some((ex) => Object.entries(ex).every(([k, v]) => same(combo[k], v))));
  const original = combos.map((c) => ({ ...c }));
  const extended = combos.length;
  for (const extra of include) {
    let matched = false;
    // An include entry extends an original combination when it overwrites none of its original values;
    // entries that extend none become combinations of their own.
    for (let i = 0; i < extended; i++) {
      const base = original[i]!;
      if (Object.entries(extra).every(([k, v]) => !(k in base) || same(base[k], v))) {
        Object.assign(combos[i]!, extra);
        matched = true;
      }
    }
    if (!matched) combos.push({ ...extra });
  }
  return combos;
}

class GithubWorkflowParser {
  private readonly loadedActions = new Map<string, Promise<GithubStepAction>>();

  constructor(
    private readonly source: YamlSource,
    private readonly options: GithubPlanOptions,
  ) {}

  private async loadComposite(uses: string, withArgs: Record<string, string>, at: Node): Promise<GithubStepAction> {
    const dir = join(this.options.repoRoot, uses);
    let file: string | undefined;
    for (const name of ['action.yml', 'action.yaml']) {
      try {
        await access(join(dir, name));
        file = join(dir, name);
        break;
      } catch {
        // try the other spelling
      }
    }
    if (!file) return { kind: 'unsupported', uses, message: this.source.error(at, `local action ${uses} has no action.yml (looked in ${dir})`, 'check the path: it is relative to the project root').message };
    const action = await YamlSource.load(file);
    const root = action.root();
    const runs = action.map(action.get(root, 'runs'), 'runs');
    const using = runs ? action.string(action.get(runs, 'using'), 'runs.using') : undefined;
    if (using !== 'composite') {
      throw action.error(runs ? action.get(runs, 'using') : root, `local action ${uses} uses "${using ?? '?'}"; hearth run runs composite actions only`, 'rewrite it as a composite action, or run its commands in a run: step');
    }
    const inputs: Record<string, { default?: string; required?: boolean }> = {};
    for (const pair of action.map(action.get(root, 'inputs'), 'inputs')?.items ?? []) {
      const spec = action.map(pair.value as Node, `inputs.${action.keyOf(pair)}`);
      const def = spec ? action.string(action.get(spec, 'default'), 'default') : undefined;
      const required = spec ? action.string(action.get(spec, 'required'), 'required') : undefined;
      inputs[action.keyOf(pair)] = { ...(def !== undefined ? { default: def } : {}), ...(required !== undefined ? { required: required === 'true' } : {}) };
    }
    const outputs: Record<string, string> = {};
    for (const pair of action.map(action.get(root, 'outputs'), 'outputs')?.items ?? []) {
      const spec = action.map(pair.value as Node, `outputs.${action.keyOf(pair)}`);
      outputs[action.keyOf(pair)] = (spec ? action.string(action.get(spec, 'value'), 'value') : undefined) ?? '';
    }
    for (const [name, spec] of Object.entries(inputs)) {
      if (spec.required && spec.default === undefined && !(name in withArgs)) throw this.source.error(at, `local action ${uses} requires input "${name}"`, `add it under with:`);
    }
    const stepsNode = action.get(runs!, 'steps');
    if (!isSeq(stepsNode)) throw action.error(runs!, 'a composite action needs runs.steps as a list', 'add steps: under runs:');
    const steps = await this.parseSteps(action, stepsNode.items as Node[], 'bash');
    return { kind: 'composite', path: uses, with: withArgs, inputs, outputs, steps };
  }

  private async parseAction(source: YamlSource, uses: string, withArgs: Record<string, string>, at: Node): Promise<GithubStepAction> {
    if (uses.startsWith('./')) {
      const key = `${uses}\0${JSON.stringify(withArgs)}`;
      if (!this.loadedActions.has(key)) this.loadedActions.set(key, this.loadComposite(uses, withArgs, at));
      return this.loadedActions.get(key)!;
    }
    const name = uses.split('@')[0]!.split('/').slice(0, 2).join('/').toLowerCase();
    const translate = ACTION_TRANSLATIONS[name];
    if (translate && !uses.startsWith('docker://')) return translate(withArgs);
    const error = source.error(at, `the action ${uses} cannot run under hearth run (it runs actions/checkout and local composite actions, and no translation for ${name} is registered)`, 'replace the step with run: commands, or remove it for local runs');
    return { kind: 'unsupported', uses, message: `${error.message}; fix: ${error.fix}` };
  }

  async parseSteps(source: YamlSource, nodes: readonly Node[], defaultShell?: string): Promise<GithubStep[]> {
    const steps: GithubStep[] = [];
    for (const node of nodes) {
      const step = source.map(node, 'a step');
      if (!step) throw source.error(node, 'a step must be a mapping with run: or uses:', 'for example - run: make test');
      const run = source.string(source.get(step, 'run'), 'run');
      const uses = source.string(source.get(step, 'uses'), 'uses');
      if ((run === undefined) === (uses === undefined)) throw source.error(node, 'a step needs exactly one of run: and uses:', 'split it into two steps, or add the missing key');
      const withArgs = source.stringMap(source.get(step, 'with'), 'with');
      const action: GithubStepAction = run !== undefined ? { kind: 'run', script: run } : await this.parseAction(source, uses!, withArgs, source.get(step, 'uses')!);
      const ifNode = source.get(step, 'if');
      const coe = source.string(source.get(step, 'continue-on-error'), 'continue-on-error');
      const timeout = source.string(source.get(step, 'timeout-minutes'), 'timeout-minutes');
      const id = source.string(source.get(step, 'id'), 'id');
      const name = source.string(source.get(step, 'name'), 'name') ?? (run !== undefined ? `Run ${run.trim().split('\n')[0]}` : `Run ${uses}`);
      const workingDirectory = source.string(source.get(step, 'working-directory'), 'working-directory');
      const shell = source.string(source.get(step, 'shell'), 'shell') ?? (run !== undefined ? defaultShell : undefined);
      steps.push({
        ...(id !== undefined ? { id } : {}),
        name,
        ...(ifNode !== undefined ? { if: unwrapExpression(source.string(ifNode, 'if') ?? '') } : {}),
        env: source.stringMap(source.get(step, 'env'), 'env'),
        continueOnError: coe === undefined ? false : coe === 'true' ? true : coe === 'false' ? false : unwrapExpression(coe),
        ...(timeout !== undefined && !Number.isNaN(Number(timeout)) ? { timeoutMinutes: Number(timeout) } : {}),
        ...(workingDirectory !== undefined ? { workingDirectory } : {}),
        ...(shell !== undefined ? { shell } : {}),
        location: source.at(node),
        action,
      });
    }
    return steps;
  }

  /** `env:` is a mapping, or an expression (often from the matrix) that yields one. */
  private jobEnv(jobId: string, job: YAMLMap, ctx: ExpressionContexts, at: SourceLocation): Record<string, string> {
    const s = this.source;
    const node = s.get(job, 'env');
    if (isScalar(node) && typeof node.value === 'string' && node.value.includes('${{')) {
      const value = evaluateValue(unwrapExpression(node.value), ctx, s.at(node));
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw s.error(node, `jobs.${jobId}.env evaluates to ${JSON.stringify(value)}, not a mapping`, 'make the expression yield an object');
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
    }
    void at;
    return s.stringMap(node, `jobs.${jobId}.env`);
  }

  private matrixOf(jobId: string, job: YAMLMap): { combos: Record<string, unknown>[]; failFast: boolean; maxParallel?: number } {
    const s = this.source;
    const strategy = s.map(s.get(job, 'strategy'), `jobs.${jobId}.strategy`);
    if (!strategy) return { combos: [{}], failFast: true };
    const failFast = s.string(s.get(strategy, 'fail-fast'), 'fail-fast') !== 'false';
    const maxParallelText = s.string(s.get(strategy, 'max-parallel'), 'max-parallel');
    const maxParallel = maxParallelText !== undefined ? Number(maxParallelText) : undefined;
    if (maxParallel !== undefined && !(maxParallel >= 1)) throw s.error(s.get(strategy, 'max-parallel'), `max-parallel must be a positive number, not "${maxParallelText}"`, 'for example max-parallel: 2');
    const matrixNode = s.get(strategy, 'matrix');
    if (matrixNode === undefined) return { combos: [{}], failFast, ...(maxParallel ? { maxParallel } : {}) };
    if (isScalar(matrixNode)) throw s.error(matrixNode, `jobs.${jobId}.strategy.matrix is an expression (${String(matrixNode.value)}) that is only known while running`, 'write the matrix out in the file for local runs');
    const matrix = s.map(matrixNode, 'matrix')!;
    const axes: Record<string, unknown[]> = {};
    let include: Record<string, unknown>[] = [];
    let exclude: Record<string, unknown>[] = [];
    for (const pair of matrix.items) {
      const key = s.keyOf(pair);
      const value = pair.value as Node;
      if (isScalar(value) && typeof value.value === 'string' && value.value.includes('${{')) {
        throw s.error(value, `matrix.${key} is an expression (${value.value}) that is only known while running`, 'write the values out in the file for local runs');
      }
      if (key === 'include' || key === 'exclude') {
        if (!isSeq(value)) throw s.error(value, `matrix.${key} must be a list of mappings`, `for example ${key}: [{os: linux}]`);
        const list = value.items.map((item) => s.json(item as Node) as Record<string, unknown>);
        if (key === 'include') include = list;
        else exclude = list;
        continue;
      }
      if (!isSeq(value)) throw s.error(value, `matrix.${key} must be a list of values`, `for example ${key}: [a, b]`);
      axes[key] = value.items.map((item) => s.json(item as Node));
    }
    const combos = expandMatrix(axes, include, exclude);
    if (combos.length === 0) throw s.error(matrix, `the matrix of jobs.${jobId} expands to no jobs`, 'check exclude: it removes every combination');
    if (combos.length > 256) throw s.error(matrix, `the matrix of jobs.${jobId} expands to ${combos.length} jobs; GitHub allows 256`, 'reduce the matrix');
    return { combos, failFast, ...(maxParallel ? { maxParallel } : {}) };
  }

  private checkDispatchInputs(root: YAMLMap): Record<string, string> {
    const s = this.source;
    const inputs = { ...this.options.inputs };
    const on = s.get(root, 'on') ?? s.get(root, 'true');
    const dispatch = isMap(on) ? s.get(on, 'workflow_dispatch') : undefined;
    const declared = isMap(dispatch) ? s.map(s.get(dispatch, 'inputs'), 'inputs') : undefined;
    if (this.options.event !== 'workflow_dispatch') return inputs;
    const known = new Map((declared?.items ?? []).map((pair) => [s.keyOf(pair), s.map(pair.value as Node, `inputs.${s.keyOf(pair)}`)]));
    for (const name of Object.keys(inputs)) {
      if (!known.has(name)) throw s.error(declared ?? on ?? root, `--input ${name} is not an input of this workflow`, known.size ? `valid inputs: ${[...known.keys()].join(', ')}` : 'this workflow declares no workflow_dispatch inputs');
    }
    for (const [name, spec] of known) {
      if (name in inputs) continue;
      const def = spec ? s.string(s.get(spec, 'default'), 'default') : undefined;
      const required = spec ? s.string(s.get(spec, 'required'), 'required') === 'true' : false;
      if (def !== undefined) inputs[name] = def;
      else if (required) throw s.error(spec ?? declared, `workflow_dispatch input "${name}" is required and has no default`, `pass it: --input ${name}=VALUE`);
    }
    return inputs;
  }

  async parse(): Promise<Plan> {
    const s = this.source;
    const root = s.root();
    const inputs = this.checkDispatchInputs(root);
    const workflowEnv = s.stringMap(s.get(root, 'env'), 'env');
    const defaultsOf = (map: YAMLMap | undefined): { shell?: string; workingDirectory?: string } => {
      const run = map ? s.map(s.get(map, 'run'), 'defaults.run') : undefined;
      const shell = run ? s.string(s.get(run, 'shell'), 'shell') : undefined;
      const workingDirectory = run ? s.string(s.get(run, 'working-directory'), 'working-directory') : undefined;
      return { ...(shell ? { shell } : {}), ...(workingDirectory ? { workingDirectory } : {}) };
    };
    const workflowDefaults = defaultsOf(s.map(s.get(root, 'defaults'), 'defaults'));
    const jobsNode = s.get(root, 'jobs');
    const jobsMap = s.map(jobsNode, 'jobs');
    if (!jobsMap || jobsMap.items.length === 0) throw s.error(jobsNode ?? root, 'the workflow has no jobs', 'add a jobs: section');

    const expansions = new Map<string, PlannedJob[]>();
    const needsOf = new Map<string, { ids: string[]; node: Node | undefined }>();
    const order: string[] = [];
    for (const pair of jobsMap.items) {
      const jobId = s.keyOf(pair);
      const job = s.map(pair.value as Node, `jobs.${jobId}`);
      if (!job) throw s.error(pair.value as Node, `jobs.${jobId} is empty`, 'give it runs-on: and steps:');
      if (s.get(job, 'uses') !== undefined) throw s.error(s.get(job, 'uses'), `jobs.${jobId} calls a reusable workflow, which hearth run does not run yet`, 'run the called workflow file directly');
      for (const refused of ['services', 'container'] as const) {
        if (s.get(job, refused) !== undefined) {
          throw s.error(s.get(job, refused), `jobs.${jobId}.${refused} is not supported yet: hearth run executes steps directly in a microVM, without containers`, `remove ${refused}: for local runs, and install what it provided in a step`);
        }
      }
      const stepsNode = s.get(job, 'steps');
      if (!isSeq(stepsNode)) throw s.error(stepsNode ?? job, `jobs.${jobId}.steps must be a list`, 'add steps: with - run: lines');
      const needsNode = s.get(job, 'needs');
      needsOf.set(jobId, { ids: s.strings(needsNode, `jobs.${jobId}.needs`), node: needsNode });
      order.push(jobId);
      const { combos, failFast, maxParallel } = this.matrixOf(jobId, job);
      const defaults = { ...workflowDefaults, ...defaultsOf(s.map(s.get(job, 'defaults'), 'defaults')) };
      const steps = await this.parseSteps(s, stepsNode.items as Node[], defaults.shell);
      const nameTemplate = s.string(s.get(job, 'name'), 'name');
      const timeoutText = s.string(s.get(job, 'timeout-minutes'), 'timeout-minutes');
      const timeoutMinutes = timeoutText !== undefined && !timeoutText.includes('${{') ? Number(timeoutText) : DEFAULT_TIMEOUT_MINUTES;
      if (!(timeoutMinutes > 0)) throw s.error(s.get(job, 'timeout-minutes'), `timeout-minutes must be a positive number, not "${timeoutText}"`, 'for example timeout-minutes: 30');
      const coe = s.string(s.get(job, 'continue-on-error'), 'continue-on-error');
      const ifNode = s.get(job, 'if');
      const runsOnNode = s.get(job, 'runs-on');
      if (runsOnNode === undefined) throw s.error(job, `jobs.${jobId} has no runs-on`, 'add runs-on: ubuntu-latest (or a hearth-2cpu-4gb style label)');
      const planned: PlannedJob[] = combos.map((matrix, index) => {
        const ctx = matrixContexts(matrix, inputs);
        const at = s.at(pair.key as Node);
        const runsOn = isMap(runsOnNode) ? s.strings(s.get(runsOnNode, 'labels'), 'runs-on.labels') : s.strings(runsOnNode, 'runs-on');
        const labels = runsOn.map((label) => interpolate(label, ctx, at));
        const values = Object.values(matrix).map(display);
        const name = nameTemplate ? interpolate(nameTemplate, ctx, at) : jobId;
        const key = combos.length > 1 && !(nameTemplate ?? '').includes('matrix.') ? `${name} (${values.join(', ')})` : combos.length === 1 && values.length ? `${name} (${values.join(', ')})` : name;
        const body: GithubJobBody = {
          kind: 'github',
          jobId,
          matrix,
          strategy: { group: jobId, failFast, ...(maxParallel ? { maxParallel } : {}), jobIndex: index, jobTotal: combos.length },
          ...(ifNode !== undefined ? { if: unwrapExpression(s.string(ifNode, 'if') ?? '') } : {}),
          workflowEnv,
          jobEnv: this.jobEnv(jobId, job, ctx, at),
          defaults,
          outputs: s.stringMap(s.get(job, 'outputs'), `jobs.${jobId}.outputs`),
          steps,
        };
        // continue-on-error may depend on the matrix (e.g. an experimental axis).
        const allowFailure = coe === undefined ? false : coe.includes('${{') ? interpolate(coe, ctx, at) === 'true' : coe === 'true';
        return { key, name, needs: [], labels, timeoutMinutes, allowFailure, location: at, body };
      });
      expansions.set(jobId, planned);
    }

    // needs: every expansion of each needed job.
    const jobs: PlannedJob[] = [];
    for (const jobId of order) {
      const { ids, node } = needsOf.get(jobId)!;
      for (const id of ids) if (!expansions.has(id)) throw s.error(node, `jobs.${jobId} needs "${id}", which is not a job of this workflow`, `jobs are: ${order.join(', ')}`);
      const needs = ids.flatMap((id) => expansions.get(id)!.map((j) => j.key));
      for (const job of expansions.get(jobId)!) jobs.push({ ...job, needs });
    }
    this.checkCycles(order, needsOf);
    return this.filter({ forge: 'github', file: s.file, jobs, skipped: [], inputs }, order, needsOf);
  }

  private checkCycles(order: string[], needsOf: Map<string, { ids: string[]; node: Node | undefined }>): void {
    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (id: string, path: string[]): void => {
      if (state.get(id) === 'done') return;
      if (state.get(id) === 'visiting') throw this.source.error(needsOf.get(id)!.node, `needs form a cycle: ${[...path, id].join(' -> ')}`, 'remove one of these needs');
      state.set(id, 'visiting');
      for (const next of needsOf.get(id)!.ids) visit(next, [...path, id]);
      state.set(id, 'done');
    };
    for (const id of order) visit(id, []);
  }

  private filter(plan: Plan, order: string[], needsOf: Map<string, { ids: string[] }>): Plan {
    const wanted = this.options.job;
    if (!wanted) return plan;
    if (!order.includes(wanted)) throw workflowError({ file: plan.file, line: 1, column: 1 }, `--job ${wanted}: no such job`, `jobs are: ${order.join(', ')}`);
    const keep = new Set<string>();
    const add = (id: string): void => {
      if (keep.has(id)) return;
      keep.add(id);
      for (const need of needsOf.get(id)!.ids) add(need);
    };
    add(wanted);
    const isKept = (job: PlannedJob): boolean => job.body.kind === 'github' && keep.has(job.body.jobId);
    return {
      ...plan,
      jobs: plan.jobs.filter(isKept),
      skipped: plan.jobs.filter((job) => !isKept(job)).map((job) => ({ key: job.key, reason: `--job ${wanted} does not need it` })),
    };
  }
}

/** Plans a GitHub Actions workflow file for `hearth run`. */
export async function parseGithubWorkflow(file: string, options: GithubPlanOptions): Promise<Plan> {
  const source = await YamlSource.load(file);
  return new GithubWorkflowParser(source, options).parse();
}
