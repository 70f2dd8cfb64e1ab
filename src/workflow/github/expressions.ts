import { data, Evaluator, Lexer, Parser } from '@actions/expressions';
import { workflowError } from '../errors.ts';
import type { SourceLocation } from '../model.ts';

/** The contexts a GitHub Actions expression can read, as plain JSON. */
export interface ExpressionContexts {
  readonly github: unknown;
  readonly env: unknown;
  readonly vars: unknown;
  readonly matrix: unknown;
  readonly needs: unknown;
  readonly steps: unknown;
  readonly job: unknown;
  readonly runner: unknown;
  readonly inputs: unknown;
  readonly secrets: unknown;
  readonly strategy: unknown;
}

/**
 * What the status functions see. `skipped` only arises for a job's own `if:`
 * when a job up its needs chain was skipped: success(), failure() and
 * cancelled() are all false then, and only always() (or a negation) is true.
 */
export type JobStatus = 'success' | 'failure' | 'cancelled' | 'skipped';

const CONTEXT_NAMES = ['github', 'env', 'vars', 'matrix', 'needs', 'steps', 'job', 'runner', 'inputs', 'secrets', 'strategy'];
const STATUS_FUNCTIONS = ['success', 'failure', 'always', 'cancelled'];

function statusFunctions(status: JobStatus): Map<string, { name: string; minArgs: number; maxArgs: number; call: () => data.ExpressionData }> {
  const results: Record<string, boolean> = { success: status === 'success', failure: status === 'failure', always: true, cancelled: status === 'cancelled' };
  return new Map(STATUS_FUNCTIONS.map((name) => [name, { name, minArgs: 0, maxArgs: 0, call: () => new data.BooleanData(results[name]!) }]));
}

function toData(value: unknown): data.Dictionary {
  return JSON.parse(JSON.stringify(value ?? {}), data.reviver) as data.Dictionary;
}

function fromData(value: data.ExpressionData): unknown {
  return JSON.parse(JSON.stringify(value, data.replacer)) as unknown;
}

/** GitHub's truthiness: false, 0, -0, NaN, '' and null are false. */
export function truthy(value: unknown): boolean {
  if (value === null || value === undefined || value === false || value === '') return false;
  if (typeof value === 'number') return value !== 0 && !Number.isNaN(value);
  return true;
}

function parse(expression: string, location: SourceLocation) {
  try {
    const { tokens } = new Lexer(expression).lex();
    const ast = new Parser(
      tokens,
      CONTEXT_NAMES,
      STATUS_FUNCTIONS.map((name) => ({ name, minArgs: 0, maxArgs: 0 })),
    ).parse();
    const usesStatus = tokens.some((t, i) => STATUS_FUNCTIONS.includes(String(t.lexeme).toLowerCase()) && tokens[i + 1]?.lexeme === '(');
    return { ast, usesStatus };
  } catch (error) {
    throw workflowError(
      location,
      `invalid expression "${expression}": ${(error as Error).message}`,
      'see https://docs.github.com/actions/learn-github-actions/expressions',
    );
  }
}

export function evaluateValue(expression: string, contexts: ExpressionContexts, location: SourceLocation, status: JobStatus = 'success'): unknown {
  const { ast } = parse(expression, location);
  try {
    return fromData(new Evaluator(ast, toData(contexts), statusFunctions(status)).evaluate());
  } catch (error) {
    throw workflowError(
      location,
      `cannot evaluate "${expression}": ${(error as Error).message}`,
      'check the names of contexts and functions in the expression',
    );
  }
}

/** Strips a `${{ }}` wrapper, as `if:` allows both forms. */
export function unwrapExpression(text: string): string {
  const match = /^\s*\$\{\{([\s\S]*)\}\}\s*$/.exec(text);
  return match ? match[1]!.trim() : text.trim();
}

/**
 * `if:` semantics: empty means success(); an expression without a status
 * function is implicitly `success() && (expression)`.
 */
export function evaluateCondition(expression: string, contexts: ExpressionContexts, status: JobStatus, location: SourceLocation): boolean {
  const text = unwrapExpression(expression);
  if (!text) return status === 'success';
  const { usesStatus } = parse(text, location);
  if (!usesStatus && status !== 'success') return false;
  return truthy(evaluateValue(text, contexts, location, status));
}

/** Converts a value to text as the runner does in `${{ }}` substitutions. */
export function displayString(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value, null, 2);
}

/** Replaces every `${{ expression }}` in a template. */
export function interpolate(template: string, contexts: ExpressionContexts, location: SourceLocation): string {
  if (!template.includes('${{')) return template;
  let out = '';
  let rest = template;
  for (;;) {
    const start = rest.indexOf('${{');
    if (start < 0) return out + rest;
    const end = rest.indexOf('}}', start + 3);
    if (end < 0) throw workflowError(location, `unterminated expression in "${template}"`, 'close it with }}');
    out += rest.slice(0, start) + displayString(evaluateValue(rest.slice(start + 3, end).trim(), contexts, location));
    rest = rest.slice(end + 2);
  }
}
