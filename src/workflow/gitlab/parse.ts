import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { Scalar, visit } from 'yaml';
import type { HearthError } from '../../errors.ts';
import { workflowError } from '../errors.ts';
import type { GitlabJobBody, Plan, PlannedJob, SourceLocation } from '../model.ts';
import { isMap, YamlSource, type Node, type YAMLMap } from '../yaml-source.ts';
import { evaluateRuleIf, parseDurationMinutes } from './rules.ts';

export interface GitlabPlanOptions {
  readonly repoRoot: string;
  /** --manual: also run `when: manual` jobs. */
  readonly manual: boolean;
  /** Extra or overriding CI variables (--var, --secret). */
  readonly variables: Readonly<Record<string, string>>;
  /** The branch the pipeline runs for. */
  readonly ref: string;
  /** CI_PIPELINE_SOURCE: push, merge_request_event, schedule, web, ... */
  readonly source: string;
  /** Only this job and what it needs. */
  readonly job?: string;
}

/** Where jobs find the project (CI_PROJECT_DIR): the working tree is copied here. */
export const GITLAB_PROJECT_DIR = '/workspace';

const DEFAULT_STAGES = ['.pre', 'build', 'test', 'deploy', '.post'];
const GLOBAL_KEYWORDS = new Set([
  'default',
  'include',
  'stages',
  'variables',
  'workflow',
  'image',
  'services',
  'cache',
  'before_script',
  'after_script',
  'types',
]);
const DEFAULTABLE = [
  'before_script',
  'after_script',
  'image',
  'tags',
  'timeout',
  'interruptible',
  'retry',
  'cache',
  'artifacts',
  'hooks',
  'id_tokens',
  'services',
];
const REF_MARKER = '\u0000hearth-reference:';

type Json = unknown;
type JsonMap = Record<string, Json>;

function isPlainMap(value: Json): value is JsonMap {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** GitLab's merge for extends and includes: hashes merge deeply, everything else is replaced. */
export function deepMerge(base: JsonMap, over: JsonMap): JsonMap {
  const out: JsonMap = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const existing = out[key];
    out[key] = isPlainMap(existing) && isPlainMap(value) ? deepMerge(existing, value) : value;
  }
  return out;
}

function gitValue(repoRoot: string, args: string[]): string | undefined {
  try {
    return (
      execFileSync('git', ['-C', repoRoot, ...args], { stdio: ['ignore', 'pipe', 'ignore'] })
        .toString()
        .trim() || undefined
    );
  } catch {
    return undefined;
  }
}

/** CI_* variables GitLab predefines, for a local pipeline of `job` (or the pipeline as a whole). */
export function predefinedVariables(options: GitlabPlanOptions, job?: PlannedJob): Record<string, string> {
  const sha = gitValue(options.repoRoot, ['rev-parse', 'HEAD']) ?? '0'.repeat(40);
  const name = options.repoRoot.split('/').filter(Boolean).pop() ?? 'project';
  const vars: Record<string, string> = {
    CI: 'true',
    GITLAB_CI: 'true',
    CI_SERVER: 'yes',
    CI_PIPELINE_SOURCE: options.source,
    CI_COMMIT_REF_NAME: options.ref,
    CI_COMMIT_REF_SLUG: options.ref
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .slice(0, 63),
    CI_COMMIT_SHA: sha,
    CI_COMMIT_SHORT_SHA: sha.slice(0, 8),
    CI_COMMIT_BEFORE_SHA: '0'.repeat(40),
    CI_DEFAULT_BRANCH: 'main',
    CI_PROJECT_DIR: GITLAB_PROJECT_DIR,
    CI_PROJECT_NAME: name,
    CI_PROJECT_PATH: `local/${name}`,
    CI_PIPELINE_ID: '1',
    CI_JOB_ID: '1',
  };
  if (options.source === 'merge_request_event') {
    Object.assign(vars, { CI_MERGE_REQUEST_IID: '1', CI_MERGE_REQUEST_SOURCE_BRANCH_NAME: options.ref, CI_MERGE_REQUEST_TARGET_BRANCH_NAME: 'main' });
  } else {
    vars.CI_COMMIT_BRANCH = options.ref;
  }
  if (job?.body.kind === 'gitlab') {
    vars.CI_JOB_NAME = job.key;
    vars.CI_JOB_STAGE = job.body.stage;
    if (job.body.node) {
      vars.CI_NODE_INDEX = String(job.body.node.index);
      vars.CI_NODE_TOTAL = String(job.body.node.total);
    }
  }
  return vars;
}

/** One loaded file and the JSON it holds, with `!reference` tags turned into markers. */
interface LoadedFile {
  readonly source: YamlSource;
  readonly config: JsonMap;
}

function variablesOf(value: Json): Record<string, string> {
  if (!isPlainMap(value)) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (isPlainMap(v)) out[k] = v.value === undefined || v.value === null ? '' : String(v.value);
    else out[k] = v === null || v === undefined ? '' : String(v);
  }
  return out;
}

/** `services: []` (or null) declares none; only a non-empty list is something to refuse. */
function hasServices(value: Json): boolean {
  return value !== undefined && value !== null && !(Array.isArray(value) && value.length === 0);
}

/** Expands $VAR and ${VAR} as GitLab does in tags and similar fields. */
export function expandVariables(text: string, variables: Readonly<Record<string, string>>): string {
  return text.replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (whole, braced: string | undefined, bare: string | undefined) => variables[braced ?? bare ?? ''] ?? whole,
  );
}

function flattenScript(value: Json): string[] {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value.flatMap(flattenScript);
  return [String(value)];
}

class GitlabCiParser {
  private readonly files: LoadedFile[] = [];

  constructor(private readonly options: GitlabPlanOptions) {}

  private async loadFile(file: string, includedFrom?: { source: YamlSource; node: Node | undefined }, depth = 0): Promise<JsonMap> {
    if (depth > 100) throw includedFrom!.source.error(includedFrom!.node, 'includes nest more than 100 deep', 'check for an include cycle');
    try {
      await access(file);
    } catch {
      if (includedFrom)
        throw includedFrom.source.error(
          includedFrom.node,
          `include: local file ${file} does not exist`,
          'check the path: local includes are relative to the project root',
        );
    }
    // GitLab's YAML reader lets a later duplicate key win, so this one does too.
    const source = await YamlSource.load(file, { merge: true, uniqueKeys: false });
    visit(source.document, {
      Seq(_key, node) {
        if (node.tag !== '!reference') return undefined;
        const pos = source.at(node);
        return new Scalar(`${REF_MARKER}${JSON.stringify({ path: node.toJSON(), file: pos.file, line: pos.line, column: pos.column })}`);
      },
    });
    const root = source.root();
    const config = source.document.toJS({ maxAliasCount: -1 }) as JsonMap;
    this.files.push({ source, config });

    let merged: JsonMap = {};
    const include = source.get(root, 'include');
    if (include !== undefined) {
      const entries = Array.isArray(config.include) ? config.include : [config.include];
      const nodes = include && 'items' in include && Array.isArray((include as { items: unknown[] }).items) ? (include as { items: Node[] }).items : [include];
      for (const [i, entry] of entries.entries()) {
        const node = nodes[i] ?? include;
        const local =
          typeof entry === 'string'
            ? /^https?:\/\//.test(entry)
              ? undefined
              : entry
            : isPlainMap(entry) && typeof entry.local === 'string'
              ? entry.local
              : undefined;
        if (local === undefined) {
          const kind =
            typeof entry === 'string'
              ? 'remote'
              : isPlainMap(entry)
                ? (['remote', 'project', 'template', 'component'].find((k) => k in entry) ?? 'unknown')
                : 'unknown';
          throw source.error(
            node,
            `include: ${kind} is not supported by hearth run (only include: local)`,
            'copy the included configuration into the project and include it with local:',
          );
        }
        if (isPlainMap(entry) && Array.isArray(entry.rules) && !this.includeWanted(entry.rules, local, source, node)) continue;
        if (local.includes('*'))
          throw source.error(node, `include: local with a wildcard (${local}) is not supported by hearth run`, 'list the files one by one');
        const path = join(this.options.repoRoot, local.replace(/^\/+/, ''));
        merged = deepMerge(merged, await this.loadFile(path, { source, node }, depth + 1));
      }
    }
    const { include: _ignored, ...own } = config;
    return deepMerge(merged, own);
  }

  /** include: rules: the first matching rule decides; no match (or when: never) leaves the file out. */
  private includeWanted(rules: Json[], local: string, source: YamlSource, node: Node | undefined): boolean {
    const vars = { ...predefinedVariables(this.options), ...this.options.variables };
    for (const rule of rules) {
      if (!isPlainMap(rule)) continue;
      if (rule.if !== undefined) {
        let matched: boolean;
        try {
          matched = evaluateRuleIf(String(rule.if), vars);
        } catch (error) {
          throw source.error(
            node,
            `cannot evaluate the rules of include ${local}: ${(error as Error).message}`,
            'GitLab rules use $VARIABLE, ==, !=, =~ /regex/, &&, || and parentheses',
          );
        }
        if (!matched) continue;
      }
      return rule.when !== 'never';
    }
    return false;
  }

  /** Where a job (or one of its keys) is written, searching the files that define it, the main file last. */
  private locate(jobName: string, key?: string): { source: YamlSource; node: Node | undefined } {
    for (const { source } of [...this.files].reverse()) {
      const root = source.root();
      const pair = source.pair(root, jobName);
      if (!pair) continue;
      if (key && isMap(pair.value)) {
        const inner = source.pair(pair.value as YAMLMap, key);
        if (inner) return { source, node: (inner.key as Node) ?? undefined };
      }
      return { source, node: (pair.key as Node) ?? undefined };
    }
    const main = this.files[0]!.source;
    return { source: main, node: undefined };
  }

  private error(jobName: string, key: string | undefined, reason: string, hint: string): HearthError {
    const { source, node } = this.locate(jobName, key);
    return source.error(node, reason, hint);
  }

  private location(jobName: string): SourceLocation {
    const { source, node } = this.locate(jobName);
    return source.at(node);
  }

  private resolveReferences(value: Json, config: JsonMap): Json {
    if (typeof value === 'string' && value.startsWith(REF_MARKER)) {
      const ref = JSON.parse(value.slice(REF_MARKER.length)) as { path: string[]; file: string; line: number; column: number };
      let target: Json = config;
      for (const part of ref.path) {
        if (!isPlainMap(target) || !(part in target)) {
          throw workflowError(
            { file: ref.file, line: ref.line, column: ref.column },
            `!reference [${ref.path.join(', ')}] points at nothing`,
            'check the job and key names',
          );
        }
        target = target[part];
      }
      return this.resolveReferences(target, config);
    }
    if (Array.isArray(value)) return value.map((v) => this.resolveReferences(v, config));
    if (isPlainMap(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.resolveReferences(v, config)]));
    return value;
  }

  private resolveExtends(name: string, jobs: JsonMap, chain: string[] = []): JsonMap {
    const job = jobs[name];
    if (!isPlainMap(job))
      throw this.error(
        chain[chain.length - 1] ?? name,
        'extends',
        `extends: "${name}" is not a job or template in this configuration`,
        'check the name, including its leading dot',
      );
    if (chain.includes(name)) throw this.error(name, 'extends', `extends forms a cycle: ${[...chain, name].join(' -> ')}`, 'remove one of these extends');
    if (chain.length > 11) throw this.error(name, 'extends', 'extends nests more than 11 levels', 'flatten the templates');
    const parents = job.extends === undefined ? [] : Array.isArray(job.extends) ? job.extends.map(String) : [String(job.extends)];
    let merged: JsonMap = {};
    for (const parent of parents) merged = deepMerge(merged, this.resolveExtends(parent, jobs, [...chain, name]));
    const { extends: _e, ...own } = job;
    return deepMerge(merged, own);
  }

  private refMatches(patterns: Json, jobName: string, key: string): boolean {
    const { ref, source } = this.options;
    const list = Array.isArray(patterns) ? patterns : isPlainMap(patterns) ? (Array.isArray(patterns.refs) ? patterns.refs : []) : [patterns];
    const refsMatch = list.some((p) => {
      const pattern = String(p);
      switch (pattern) {
        case 'branches':
          return source !== 'merge_request_event';
        case 'tags':
          return false;
        case 'merge_requests':
          return source === 'merge_request_event';
        case 'pushes':
          return source === 'push';
        case 'schedules':
          return source === 'schedule';
        case 'web':
          return source === 'web';
        case 'api':
        case 'triggers':
        case 'pipelines':
        case 'external':
        case 'chat':
        case 'external_pull_requests':
          return source === pattern;
        default: {
          const regex = /^\/(.*)\/([a-z]*)$/.exec(pattern);
          if (regex) return new RegExp(regex[1]!, regex[2]!.replace(/[^gimsuy]/g, '')).test(ref);
          return pattern === ref;
        }
      }
    });
    if (isPlainMap(patterns) && Array.isArray(patterns.variables)) {
      const vars = { ...predefinedVariables(this.options), ...this.options.variables };
      const anyVar = patterns.variables.some((expr) => this.ruleIf(String(expr), vars, jobName, key));
      return (patterns.refs === undefined || refsMatch) && anyVar;
    }
    return refsMatch;
  }

  private ruleIf(expression: string, variables: Record<string, string>, jobName: string, key: string): boolean {
    try {
      return evaluateRuleIf(expression, variables);
    } catch (error) {
      throw this.error(
        jobName,
        key,
        `cannot evaluate "${expression}": ${(error as Error).message}`,
        'GitLab rules use $VARIABLE, ==, !=, =~ /regex/, &&, || and parentheses',
      );
    }
  }

  async parse(file: string): Promise<Plan> {
    const merged = await this.loadFile(file);
    const config = this.resolveReferences(merged, merged) as JsonMap;
    const main = this.files[0]!.source;
    const mainRoot = main.root();
    if (hasServices(config.services))
      throw main.error(
        main.get(mainRoot, 'services') ?? mainRoot,
        'services: is not supported by hearth run: it runs jobs directly in a microVM, without containers',
        'remove services: for local runs and start what you need in before_script',
      );
    const stages = Array.isArray(config.stages) ? ['.pre', ...config.stages.map(String).filter((s) => s !== '.pre' && s !== '.post'), '.post'] : DEFAULT_STAGES;
    const globalVariables = variablesOf(config.variables);
    const defaults: JsonMap = { ...(isPlainMap(config.default) ? config.default : {}) };
    for (const legacy of ['image', 'before_script', 'after_script', 'cache'])
      if (config[legacy] !== undefined && defaults[legacy] === undefined) defaults[legacy] = config[legacy];
    if (hasServices(defaults.services))
      throw main.error(
        main.get(mainRoot, 'default') ?? mainRoot,
        'default: services: is not supported by hearth run: it runs jobs directly in a microVM, without containers',
        'remove services: for local runs',
      );
    const baseVars = { ...predefinedVariables(this.options), ...globalVariables, ...this.options.variables };

    const skipped: { key: string; reason: string }[] = [];
    if (isPlainMap(config.workflow) && Array.isArray(config.workflow.rules)) {
      const rule = config.workflow.rules.find((r) => !isPlainMap(r) || r.if === undefined || this.ruleIf(String(r.if), baseVars, 'workflow', 'rules'));
      if (!rule || (isPlainMap(rule) && rule.when === 'never')) {
        return { forge: 'gitlab', file, jobs: [], skipped: [{ key: '(pipeline)', reason: 'workflow:rules do not run a pipeline for this ref and source' }] };
      }
    }

    const jobNames = Object.keys(config).filter((k) => !GLOBAL_KEYWORDS.has(k) && !k.startsWith('.') && isPlainMap(config[k]));
    type Draft = Omit<PlannedJob, 'needs'> & { explicitNeeds?: { job: string; optional: boolean }[]; stageIndex: number; baseName: string };
    const drafts: Draft[] = [];
    for (const name of jobNames) {
      const job = this.resolveExtends(name, config);
      if (job.trigger !== undefined)
        throw this.error(
          name,
          'trigger',
          `job ${name} triggers another pipeline (trigger:), which hearth run does not support`,
          'run the downstream pipeline file directly',
        );
      if (hasServices(job.services))
        throw this.error(
          name,
          'services',
          `job ${name} uses services:, which hearth run does not support yet: it runs jobs directly in a microVM, without containers`,
          'remove services: for local runs and start what you need in before_script',
        );
      const inherit = isPlainMap(job.inherit) ? job.inherit : {};
      const inheritDefault = inherit.default;
      for (const key of DEFAULTABLE) {
        const allowed = inheritDefault === undefined || inheritDefault === true || (Array.isArray(inheritDefault) && inheritDefault.includes(key));
        if (allowed && job[key] === undefined && defaults[key] !== undefined) job[key] = defaults[key];
      }
      if (hasServices(job.services))
        throw this.error(
          name,
          undefined,
          `job ${name} inherits services: from default:, which hearth run does not support`,
          'set inherit: default: false, or remove services:',
        );
      const inheritVars = inherit.variables;
      const inheritedVars =
        inheritVars === false
          ? {}
          : Array.isArray(inheritVars)
            ? Object.fromEntries(Object.entries(globalVariables).filter(([k]) => inheritVars.includes(k)))
            : globalVariables;
      let variables = { ...inheritedVars, ...variablesOf(job.variables) };
      const script = flattenScript(job.script);
      if (script.length === 0) throw this.error(name, 'script', `job ${name} has no script`, 'add script: with the commands to run');
      const stage = job.stage === undefined ? 'test' : String(job.stage);
      const stageIndex = stages.indexOf(stage);
      if (stageIndex < 0)
        throw this.error(name, 'stage', `job ${name} is in stage "${stage}", which stages: does not list`, `stages are: ${stages.join(', ')}`);

      let when = job.when === undefined ? 'on_success' : String(job.when);
      let allowFailure = job.allow_failure === true || isPlainMap(job.allow_failure);
      const vars = { ...baseVars, ...variables, CI_JOB_NAME: name, CI_JOB_STAGE: stage };
      if (job.rules !== undefined) {
        if (!Array.isArray(job.rules))
          throw this.error(name, 'rules', `rules: of ${name} must be a list`, 'for example rules: [{ if: $CI_COMMIT_BRANCH == "main" }]');
        let matched: JsonMap | undefined;
        for (const rule of job.rules) {
          if (!isPlainMap(rule)) continue;
          if (rule.if !== undefined && !this.ruleIf(String(rule.if), vars, name, 'rules')) continue;
          if (Array.isArray(rule.exists) && !(await this.anyExists(rule.exists.map(String)))) continue;
          // `changes` has no diff base in a local run; it counts as changed.
          matched = rule;
          break;
        }
        if (!matched) {
          skipped.push({ key: name, reason: 'no rules: entry matches' });
          continue;
        }
        when = matched.when === undefined ? (job.when === undefined ? 'on_success' : String(job.when)) : String(matched.when);
        if (matched.allow_failure !== undefined) allowFailure = matched.allow_failure === true || isPlainMap(matched.allow_failure);
        variables = { ...variables, ...variablesOf(matched.variables) };
      } else {
        if (!this.refMatches(job.only ?? ['branches', 'tags'], name, 'only')) {
          skipped.push({ key: name, reason: 'only: does not match this ref/source' });
          continue;
        }
        if (job.except !== undefined && this.refMatches(job.except, name, 'except')) {
          skipped.push({ key: name, reason: 'except: matches this ref/source' });
          continue;
        }
      }
      if (when === 'never') {
        skipped.push({ key: name, reason: 'when: never' });
        continue;
      }
      if (when === 'manual') {
        if (!this.options.manual) {
          skipped.push({ key: name, reason: 'when: manual (pass --manual to run it)' });
          continue;
        }
        when = 'on_success';
      }
      if (when === 'delayed') when = 'on_success';
      if (!['on_success', 'on_failure', 'always'].includes(when))
        throw this.error(name, 'when', `job ${name} has when: ${when}`, 'use on_success, on_failure, always, manual, delayed or never');

      const timeoutText = job.timeout === undefined ? undefined : String(job.timeout);
      const timeoutMinutes = timeoutText === undefined ? 60 : parseDurationMinutes(timeoutText);
      if (timeoutMinutes === undefined)
        throw this.error(name, 'timeout', `job ${name} has timeout "${timeoutText}", which is not a duration`, 'for example timeout: 1h 30m');
      let explicitNeeds: { job: string; optional: boolean }[] | undefined;
      if (job.needs !== undefined) {
        if (!Array.isArray(job.needs)) throw this.error(name, 'needs', `needs: of ${name} must be a list`, 'for example needs: [build]');
        explicitNeeds = job.needs.map((n) =>
          isPlainMap(n) ? { job: String(n.job ?? n.pipeline ?? ''), optional: n.optional === true } : { job: String(n), optional: false },
        );
      }
      const body: GitlabJobBody = {
        kind: 'gitlab',
        stage,
        variables,
        beforeScript: flattenScript(job.before_script),
        script,
        afterScript: flattenScript(job.after_script),
        when: when as GitlabJobBody['when'],
        ...(job.image !== undefined ? { image: isPlainMap(job.image) ? String(job.image.name) : String(job.image) } : {}),
      };
      const tags = Array.isArray(job.tags) ? job.tags.map(String) : [];
      const common = {
        name,
        timeoutMinutes,
        allowFailure,
        location: this.location(name),
        stageIndex,
        baseName: name,
        ...(explicitNeeds ? { explicitNeeds } : {}),
      };
      for (const expansion of this.expandParallel(name, job.parallel)) {
        const labels = tags.map((tag) => expandVariables(tag, { ...baseVars, ...variables, ...expansion.variables }));
        drafts.push({
          ...common,
          labels,
          key: expansion.key,
          body: { ...body, variables: { ...body.variables, ...expansion.variables }, ...(expansion.node ? { node: expansion.node } : {}) },
        });
      }
    }

    // needs: explicit ones (every expansion of a parallel job), or everything in earlier stages.
    const planned = new Set(drafts.map((d) => d.baseName));
    const allNames = new Set(jobNames);
    const jobs: PlannedJob[] = [];
    const dropped = new Set<string>();
    for (const draft of drafts) {
      let needs: string[];
      if (draft.explicitNeeds) {
        needs = [];
        for (const need of draft.explicitNeeds) {
          if (!allNames.has(need.job)) {
            if (need.optional) continue;
            throw this.error(
              draft.baseName,
              'needs',
              `job ${draft.baseName} needs "${need.job}", which is not a job of this pipeline`,
              'check the name, or mark the need optional: true',
            );
          }
          if (!planned.has(need.job)) {
            if (need.optional) continue;
            dropped.add(draft.key);
            skipped.push({ key: draft.key, reason: `needs ${need.job}, which is not planned` });
            break;
          }
          needs.push(...drafts.filter((d) => d.baseName === need.job).map((d) => d.key));
        }
        if (dropped.has(draft.key)) continue;
      } else {
        needs = drafts.filter((d) => d.stageIndex < draft.stageIndex).map((d) => d.key);
      }
      const { explicitNeeds: _n, stageIndex: _s, baseName: _b, ...rest } = draft;
      jobs.push({ ...rest, needs });
    }
    return this.filter({ forge: 'gitlab', file, jobs, skipped });
  }

  private async anyExists(patterns: string[]): Promise<boolean> {
    for (const pattern of patterns) {
      if (pattern.includes('*')) {
        // A glob: match by walking the tree.
        const { readdir } = await import('node:fs/promises');
        const regex = new RegExp(
          '^' +
            pattern
              .replace(/[.+^${}()|[\]\\]/g, '\\$&')
              .replace(/\*\*\/?/g, '@@GLOBSTAR@@')
              .replace(/\*/g, '[^/]*')
              .replaceAll('@@GLOBSTAR@@', '(.*/)?') +
            '$',
        );
        const entries = await readdir(this.options.repoRoot, { recursive: true }).catch(() => [] as string[]);
        if (entries.some((entry) => regex.test(String(entry)))) return true;
        continue;
      }
      try {
        await access(join(this.options.repoRoot, pattern));
        return true;
      } catch {
        // not this one
      }
    }
    return false;
  }

  private expandParallel(name: string, parallel: Json): { key: string; variables: Record<string, string>; node?: { index: number; total: number } }[] {
    if (parallel === undefined || parallel === null) return [{ key: name, variables: {} }];
    if (typeof parallel === 'number' || /^\d+$/.test(String(parallel))) {
      const total = Number(parallel);
      if (total < 1 || total > 200) throw this.error(name, 'parallel', `parallel: ${total} must be from 1 to 200`, 'for example parallel: 3');
      return Array.from({ length: total }, (_, i) => ({ key: `${name} ${i + 1}/${total}`, variables: {}, node: { index: i + 1, total } }));
    }
    if (isPlainMap(parallel) && Array.isArray(parallel.matrix)) {
      const combos: Record<string, string>[] = [];
      for (const entry of parallel.matrix) {
        if (!isPlainMap(entry)) throw this.error(name, 'parallel', `parallel: matrix: entries of ${name} must be mappings`, 'for example - OS: [linux, mac]');
        let partial: Record<string, string>[] = [{}];
        for (const [key, values] of Object.entries(entry)) {
          const list = Array.isArray(values) ? values.map(String) : [String(values)];
          partial = partial.flatMap((p) => list.map((v) => ({ ...p, [key]: v })));
        }
        combos.push(...partial);
      }
      return combos.map((variables, i) => ({
        key: `${name}: [${Object.values(variables).join(', ')}]`,
        variables,
        node: { index: i + 1, total: combos.length },
      }));
    }
    throw this.error(name, 'parallel', `parallel: of ${name} must be a number or matrix:`, 'for example parallel: 3');
  }

  private filter(plan: Plan): Plan {
    const wanted = this.options.job;
    if (!wanted) return plan;
    const roots = plan.jobs.filter((j) => j.key === wanted || j.name === wanted);
    if (roots.length === 0)
      throw workflowError(
        { file: plan.file, line: 1, column: 1 },
        `--job ${wanted}: no such planned job`,
        `jobs are: ${plan.jobs.map((j) => j.key).join(', ')}`,
      );
    const keep = new Set<string>();
    const add = (key: string): void => {
      if (keep.has(key)) return;
      keep.add(key);
      for (const need of plan.jobs.find((j) => j.key === key)?.needs ?? []) add(need);
    };
    for (const root of roots) add(root.key);
    return {
      ...plan,
      jobs: plan.jobs.filter((j) => keep.has(j.key)),
      skipped: [...plan.skipped, ...plan.jobs.filter((j) => !keep.has(j.key)).map((j) => ({ key: j.key, reason: `--job ${wanted} does not need it` }))],
    };
  }
}

/** Plans a .gitlab-ci.yml for `hearth run`. */
export async function parseGitlabCi(file: string, options: GitlabPlanOptions): Promise<Plan> {
  return new GitlabCiParser(options).parse(file);
}
