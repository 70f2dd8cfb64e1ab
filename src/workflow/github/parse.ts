import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { workflowError } from '../errors.ts';
import { formatLocation, type GithubJobBody, type GithubStep, type GithubStepAction, type Plan, type PlannedJob, type SourceLocation } from '../model.ts';
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
export function expandMatrix(
  axes: Record<string, unknown[]>,
  include: Record<string, unknown>[],
  exclude: Record<string, unknown>[],
): Record<string, unknown>[] {
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

/** A local action's metadata file, read once per run however often it is used. */
type ActionFile =
  | { readonly kind: 'composite'; readonly action: CompositeAction }
  /** A JavaScript or Docker action: it cannot run here, and each `uses:` of it fails its job. */
  | { readonly kind: 'other'; readonly using: string; readonly at: SourceLocation };

/** A composite action as loaded from its action.yml: what `uses: ./dir` runs. */
export interface CompositeAction {
  readonly file: string;
  readonly inputs: Readonly<Record<string, { readonly default?: string; readonly required?: boolean }>>;
  readonly outputs: Readonly<Record<string, string>>;
  readonly steps: readonly GithubStep[];
}

/** `defaults.run` as it applies to a list of steps: only to a workflow's own `run:` steps, not inside composite actions. */
interface StepDefaults {
  readonly shell?: string;
  readonly workingDirectory?: string;
}

/** Steps of composite actions must name their shell on GitHub; hearth run falls back to bash. */
const COMPOSITE_DEFAULTS: StepDefaults = { shell: 'bash' };

/** GitHub stops at this depth of composite actions calling composite actions. */
const MAX_ACTION_DEPTH = 10;

async function findActionFile(dir: string): Promise<string | undefined> {
  for (const name of ['action.yml', 'action.yaml']) {
    try {
      await access(join(dir, name));
      return join(dir, name);
    } catch {
      // try the other spelling
    }
  }
  return undefined;
}

/** A parse-time problem that fails only the job using the step: the message carries file:line:column and the fix. */
function unsupportedAt(source: YamlSource, at: Node, uses: string, reason: string, hint: string): GithubStepAction {
  const error = source.error(at, reason, hint);
  return { kind: 'unsupported', uses, message: `${error.message}; fix: ${error.fix}` };
}

class GithubWorkflowParser {
  private readonly actionFiles = new Map<string, Promise<ActionFile>>();

  constructor(
    private readonly source: YamlSource,
    private readonly options: GithubPlanOptions,
  ) {}

  /**
   * Reads an action.yml. A composite action's steps are parsed (with the local
   * actions they use); any other kind is reported, not refused, so that only
   * the jobs using it fail. Malformed files are refused where they are wrong.
   */
  readActionFile(file: string, chain: readonly string[]): Promise<ActionFile> {
    let loaded = this.actionFiles.get(file);
    if (!loaded) {
      loaded = this.parseActionFile(file, chain);
      this.actionFiles.set(file, loaded);
    }
    return loaded;
  }

  private async parseActionFile(file: string, chain: readonly string[]): Promise<ActionFile> {
    const action = await YamlSource.load(file);
    const root = action.root();
    const runsNode = action.get(root, 'runs');
    const runs = action.map(runsNode, 'runs');
    if (!runs) throw action.error(runsNode ?? root, 'the action has no runs: section', 'add runs: with using: composite and steps:');
    const usingNode = action.get(runs, 'using');
    const using = action.string(usingNode, 'runs.using');
    if (using !== 'composite') return { kind: 'other', using: using ?? '?', at: action.at(usingNode ?? runs) };
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
    const stepsNode = action.get(runs, 'steps');
    if (!isSeq(stepsNode)) throw action.error(stepsNode ?? runs, 'a composite action needs runs.steps as a list', 'add steps: under runs:');
    const steps = await this.parseSteps(action, stepsNode.items as Node[], COMPOSITE_DEFAULTS, [...chain, file]);
    return { kind: 'composite', action: { file, inputs, outputs, steps } };
  }

  /** `uses: ./dir`: a composite action runs; a missing or non-composite one fails its job, pointing at this `uses:`. */
  private async loadLocalAction(
    source: YamlSource,
    uses: string,
    withArgs: Record<string, string>,
    at: Node,
    chain: readonly string[],
  ): Promise<GithubStepAction> {
    const dir = join(this.options.repoRoot, uses);
    const file = await findActionFile(dir);
    if (!file)
      return unsupportedAt(source, at, uses, `local action ${uses} has no action.yml (looked in ${dir})`, 'check the path: it is relative to the project root');
    if (chain.includes(file))
      return unsupportedAt(source, at, uses, `local action ${uses} uses itself (${[...chain, file].join(' -> ')})`, 'break the cycle between these actions');
    if (chain.length >= MAX_ACTION_DEPTH)
      return unsupportedAt(
        source,
        at,
        uses,
        `local action ${uses} nests composite actions deeper than ${MAX_ACTION_DEPTH} levels, which GitHub refuses`,
        'flatten the actions',
      );
    const loaded = await this.readActionFile(file, chain);
    if (loaded.kind === 'other') {
      return unsupportedAt(
        source,
        at,
        uses,
        `local action ${uses} is a "${loaded.using}" action (${formatLocation(loaded.at)}); hearth run runs composite actions only`,
        'rewrite it as a composite action, or run its commands in a run: step',
      );
    }
    const { action } = loaded;
    for (const [name, spec] of Object.entries(action.inputs)) {
      if (spec.required && spec.default === undefined && !(name in withArgs))
        throw source.error(at, `local action ${uses} requires input "${name}"`, `add it under with:`);
    }
    return { kind: 'composite', path: uses, with: withArgs, inputs: action.inputs, outputs: action.outputs, steps: action.steps };
  }

  private async parseAction(source: YamlSource, uses: string, withArgs: Record<string, string>, at: Node, chain: readonly string[]): Promise<GithubStepAction> {
    if (uses.startsWith('./')) return this.loadLocalAction(source, uses, withArgs, at, chain);
    const name = uses.split('@')[0]!.split('/').slice(0, 2).join('/').toLowerCase();
    const translate = ACTION_TRANSLATIONS[name];
    if (translate && !uses.startsWith('docker://')) return translate(withArgs);
    return unsupportedAt(
      source,
      at,
      uses,
      `the action ${uses} cannot run under hearth run (it runs actions/checkout and local composite actions, and no translation for ${name} is registered)`,
      'replace the step with run: commands, or remove it for local runs',
    );
  }

  async parseSteps(source: YamlSource, nodes: readonly Node[], defaults: StepDefaults, chain: readonly string[] = []): Promise<GithubStep[]> {
    const steps: GithubStep[] = [];
    for (const node of nodes) {
      const step = source.map(node, 'a step');
      if (!step) throw source.error(node, 'a step must be a mapping with run: or uses:', 'for example - run: make test');
      const run = source.string(source.get(step, 'run'), 'run');
      const uses = source.string(source.get(step, 'uses'), 'uses');
      if ((run === undefined) === (uses === undefined))
        throw source.error(node, 'a step needs exactly one of run: and uses:', 'split it into two steps, or add the missing key');
      const withArgs = source.stringMap(source.get(step, 'with'), 'with');
      const action: GithubStepAction =
        run !== undefined ? { kind: 'run', script: run } : await this.parseAction(source, uses!, withArgs, source.get(step, 'uses')!, chain);
      const ifNode = source.get(step, 'if');
      const coe = source.string(source.get(step, 'continue-on-error'), 'continue-on-error');
      const id = source.string(source.get(step, 'id'), 'id');
      const name = source.string(source.get(step, 'name'), 'name') ?? (run !== undefined ? `Run ${run.trim().split('\n')[0]}` : `Run ${uses}`);
      // defaults.run applies to run: steps only.
      const workingDirectory =
        source.string(source.get(step, 'working-directory'), 'working-directory') ?? (run !== undefined ? defaults.workingDirectory : undefined);
      const shell = source.string(source.get(step, 'shell'), 'shell') ?? (run !== undefined ? defaults.shell : undefined);
      const timeout = this.stepTimeout(source, source.get(step, 'timeout-minutes'));
      steps.push({
        ...(id !== undefined ? { id } : {}),
        name,
        ...(ifNode !== undefined ? { if: unwrapExpression(source.string(ifNode, 'if') ?? '') } : {}),
        env: source.stringMap(source.get(step, 'env'), 'env'),
        continueOnError: coe === undefined ? false : coe === 'true' ? true : coe === 'false' ? false : unwrapExpression(coe),
        ...(timeout ? { timeout } : {}),
        ...(workingDirectory !== undefined ? { workingDirectory } : {}),
        ...(shell !== undefined ? { shell } : {}),
        location: source.at(node),
        action,
      });
    }
    return steps;
  }

  /** A step's `timeout-minutes`: a positive number now, or an expression evaluated when the step starts. */
  private stepTimeout(source: YamlSource, node: Node | undefined): GithubStep['timeout'] {
    const text = source.string(node, 'timeout-minutes');
    if (text === undefined) return undefined;
    const location = source.at(node);
    if (text.includes('${{')) return { minutes: unwrapExpression(text), location };
    const minutes = Number(text);
    if (!(minutes > 0))
      throw source.error(
        node,
        `timeout-minutes must be a positive number, not "${text}"`,
        'for example timeout-minutes: 10, or an expression such as ${{ matrix.timeout }}',
      );
    return { minutes, location };
  }

  /** `env:` is a mapping, or an expression (often from the matrix) that yields one. */
  private jobEnv(jobId: string, job: YAMLMap, ctx: ExpressionContexts, at: SourceLocation): Record<string, string> {
    const s = this.source;
    const node = s.get(job, 'env');
    if (isScalar(node) && typeof node.value === 'string' && node.value.includes('${{')) {
      const value = evaluateValue(unwrapExpression(node.value), ctx, s.at(node));
      if (value === null || typeof value !== 'object' || Array.isArray(value))
        throw s.error(node, `jobs.${jobId}.env evaluates to ${JSON.stringify(value)}, not a mapping`, 'make the expression yield an object');
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
    }
    void at;
    return s.stringMap(node, `jobs.${jobId}.env`);
  }

  /** `timeout-minutes` of a job (or one matrix expansion): a number, or an expression of the matrix and inputs. */
  private jobTimeout(jobId: string, job: YAMLMap, ctx: ExpressionContexts): number {
    const s = this.source;
    const node = s.get(job, 'timeout-minutes');
    const text = s.string(node, 'timeout-minutes');
    if (text === undefined) return DEFAULT_TIMEOUT_MINUTES;
    const value = text.includes('${{') ? interpolate(text, ctx, s.at(node)) : text;
    const minutes = value.trim() === '' ? Number.NaN : Number(value);
    if (!(minutes > 0)) {
      const shown = value === text ? `"${text}"` : `"${text}", which evaluates to "${value}"`;
      throw s.error(
        node,
        `jobs.${jobId}.timeout-minutes must be a positive number, not ${shown}`,
        'for example timeout-minutes: 30; an expression may use matrix and inputs (--input NAME=VALUE)',
      );
    }
    return minutes;
  }

  private matrixOf(jobId: string, job: YAMLMap): { combos: Record<string, unknown>[]; failFast: boolean; maxParallel?: number } {
    const s = this.source;
    const strategy = s.map(s.get(job, 'strategy'), `jobs.${jobId}.strategy`);
    if (!strategy) return { combos: [{}], failFast: true };
    const failFast = s.string(s.get(strategy, 'fail-fast'), 'fail-fast') !== 'false';
    const maxParallelText = s.string(s.get(strategy, 'max-parallel'), 'max-parallel');
    const maxParallel = maxParallelText !== undefined ? Number(maxParallelText) : undefined;
    if (maxParallel !== undefined && !(maxParallel >= 1))
      throw s.error(s.get(strategy, 'max-parallel'), `max-parallel must be a positive number, not "${maxParallelText}"`, 'for example max-parallel: 2');
    const matrixNode = s.get(strategy, 'matrix');
    if (matrixNode === undefined) return { combos: [{}], failFast, ...(maxParallel ? { maxParallel } : {}) };
    if (isScalar(matrixNode))
      throw s.error(
        matrixNode,
        `jobs.${jobId}.strategy.matrix is an expression (${String(matrixNode.value)}) that is only known while running`,
        'write the matrix out in the file for local runs',
      );
    const matrix = s.map(matrixNode, 'matrix')!;
    const axes: Record<string, unknown[]> = {};
    let include: Record<string, unknown>[] = [];
    let exclude: Record<string, unknown>[] = [];
    for (const pair of matrix.items) {
      const key = s.keyOf(pair);
      const value = pair.value as Node;
      if (isScalar(value) && typeof value.value === 'string' && value.value.includes('${{')) {
        throw s.error(
          value,
          `matrix.${key} is an expression (${value.value}) that is only known while running`,
          'write the values out in the file for local runs',
        );
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
      if (!known.has(name))
        throw s.error(
          declared ?? on ?? root,
          `--input ${name} is not an input of this workflow`,
          known.size ? `valid inputs: ${[...known.keys()].join(', ')}` : 'this workflow declares no workflow_dispatch inputs',
        );
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
      if (s.get(job, 'uses') !== undefined)
        throw s.error(
          s.get(job, 'uses'),
          `jobs.${jobId} calls a reusable workflow, which hearth run does not run yet`,
          'run the called workflow file directly',
        );
      for (const refused of ['services', 'container'] as const) {
        if (s.get(job, refused) !== undefined) {
          throw s.error(
            s.get(job, refused),
            `jobs.${jobId}.${refused} is not supported yet: hearth run executes steps directly in a microVM, without containers`,
            `remove ${refused}: for local runs, and install what it provided in a step`,
          );
        }
      }
      const stepsNode = s.get(job, 'steps');
      if (!isSeq(stepsNode)) throw s.error(stepsNode ?? job, `jobs.${jobId}.steps must be a list`, 'add steps: with - run: lines');
      const needsNode = s.get(job, 'needs');
      needsOf.set(jobId, { ids: s.strings(needsNode, `jobs.${jobId}.needs`), node: needsNode });
      order.push(jobId);
      const { combos, failFast, maxParallel } = this.matrixOf(jobId, job);
      const defaults = { ...workflowDefaults, ...defaultsOf(s.map(s.get(job, 'defaults'), 'defaults')) };
      const steps = await this.parseSteps(s, stepsNode.items as Node[], defaults);
      const nameTemplate = s.string(s.get(job, 'name'), 'name');
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
        const timeoutMinutes = this.jobTimeout(jobId, job, ctx);
        const key =
          combos.length > 1 && !(nameTemplate ?? '').includes('matrix.')
            ? `${name} (${values.join(', ')})`
            : combos.length === 1 && values.length
              ? `${name} (${values.join(', ')})`
              : name;
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
      for (const id of ids)
        if (!expansions.has(id)) throw s.error(node, `jobs.${jobId} needs "${id}", which is not a job of this workflow`, `jobs are: ${order.join(', ')}`);
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
      if (state.get(id) === 'visiting')
        throw this.source.error(needsOf.get(id)!.node, `needs form a cycle: ${[...path, id].join(' -> ')}`, 'remove one of these needs');
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

/**
 * Loads one composite action file as a `uses: ./dir` step would (the local
 * actions it uses resolve against `repoRoot`). Anything but a well-formed
 * composite action is refused with file:line:column.
 */
export async function parseCompositeAction(file: string, options: { readonly repoRoot: string }): Promise<CompositeAction> {
  const parser = new GithubWorkflowParser(await YamlSource.load(file), { repoRoot: options.repoRoot, event: 'push', inputs: {} });
  const loaded = await parser.readActionFile(file, []);
  if (loaded.kind === 'other')
    throw workflowError(
      loaded.at,
      `the action uses "${loaded.using}"; hearth run runs composite actions only`,
      'rewrite it as a composite action, or run its commands in a run: step',
    );
  return loaded.action;
}
