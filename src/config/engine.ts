import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Document, LineCounter, Node } from 'yaml';

/**
 * The YAML library, loaded on the first file read: most commands read no settings file, and
 * loading it costs about a third of `hearth vm ls`'s start (bench/cli-start.ts).
 */
let yamlModule: typeof import('yaml') | undefined;
function yaml(): typeof import('yaml') {
  yamlModule ??= createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return yamlModule;
}
import { HearthError } from '../errors.ts';

/**
 * The generic configuration engine: a table of settings (src/config/schema.ts)
 * in, a resolved tree out. Each value comes from, in rising precedence, its
 * default, a YAML file, its environment variable, then a command-line flag; it
 * is coerced to its type and checked, and every problem is a HEARTH_ERR_CONFIG
 * naming where the value came from, its key and what to write instead.
 * Nothing here knows a particular key.
 */

export type LeafValue = string | number | boolean | null | string[];

/** Dotted paths of every leaf ('server.tls.certPath'), so a table must name each key of its tree exactly once. */
export type KeyPaths<T, Prefix extends string = ''> = {
  [K in keyof T & string]: NonNullable<T[K]> extends LeafValue ? `${Prefix}${K}` : KeyPaths<NonNullable<T[K]>, `${Prefix}${K}.`>;
}[keyof T & string];

export type Checked = { value: string } | { reason: string };
export type Check = (value: string) => Checked;
export const ok = (value: string): Checked => ({ value });
export const bad = (reason: string): Checked => ({ reason });

/** What a default may depend on: the environment (XDG directories), the data directory, the host name. */
export interface DefaultContext {
  readonly env: NodeJS.ProcessEnv;
  readonly dataDir: string;
  readonly hostname: string;
}

export interface Setting {
  readonly kind: 'text' | 'optionalText' | 'integer' | 'optionalInteger' | 'boolean' | 'choice' | 'list';
  /** What the setting is for, one line: docs/configuration.md lists it. */
  readonly description: string;
  /** Completes "set KEY to …" in a hint. */
  readonly expect: string;
  readonly default: LeafValue | ((context: DefaultContext) => LeafValue);
  /** The environment variable, when it is not derived from the key (HEARTH_<SECTION>_<KEY>). */
  readonly env?: string;
  /** The command-line flag that sets it, e.g. --driver. */
  readonly flag?: string;
  /** Never printed, never echoed in an error; its value is masked in job logs. */
  readonly secret?: boolean;
  readonly min?: number;
  readonly max?: number;
  readonly choices?: readonly string[];
  /** YAML reads `id: 12345` as a number; ids are kept as text. */
  readonly integerAsText?: boolean;
  /** Checks one text value (each item, for lists) and may normalise it. */
  readonly check?: Check;
}

export type SettingTable = Readonly<Record<string, Setting>>;

type Extra = Partial<Pick<Setting, 'env' | 'flag' | 'secret' | 'integerAsText' | 'check'>>;
type Described = { readonly description: string } & Extra;

export const text = (expect: string, fallback: LeafValue | ((context: DefaultContext) => LeafValue), check: Check | undefined, extra: Described): Setting => ({
  kind: 'text',
  expect,
  default: fallback,
  ...(check ? { check } : {}),
  ...extra,
});
export const optionalText = (expect: string, check: Check | undefined, extra: Described): Setting => ({
  kind: 'optionalText',
  expect,
  default: null,
  ...(check ? { check } : {}),
  ...extra,
});
export const list = (expect: string, check: Check, extra: Described): Setting => ({ kind: 'list', expect, default: [], check, ...extra });
export const integer = (min: number, max: number, fallback: number, extra: Described): Setting => ({
  kind: 'integer',
  min,
  max,
  default: fallback,
  expect: `a whole number from ${min} to ${max}, e.g. ${fallback}`,
  ...extra,
});
export const optionalInteger = (min: number, max: number, example: string, extra: Described): Setting => ({
  kind: 'optionalInteger',
  min,
  max,
  default: null,
  expect: `a whole number from ${min} to ${max}, e.g. ${example}`,
  ...extra,
});
export const choice = <const C extends string>(choices: readonly C[], fallback: C, extra: Described): Setting => ({
  kind: 'choice',
  choices,
  default: fallback,
  expect: `one of ${choices.join(', ')}`,
  ...extra,
});
export const flag = (fallback: boolean, extra: Described): Setting => ({ kind: 'boolean', default: fallback, expect: 'true or false', ...extra });

/** `github.app.privateKeyPath` → `HEARTH_GITHUB_APP_PRIVATE_KEY_PATH`, unless the setting names its own. */
export function envNameOf(key: string, setting: Setting): string {
  return setting.env ?? derivedEnvName(key);
}

function derivedEnvName(key: string): string {
  return `HEARTH_${key
    .split('.')
    .map((segment) => segment.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase())
    .join('_')}`;
}

export function defaultOf(setting: Setting, context: DefaultContext): LeafValue {
  const value = typeof setting.default === 'function' ? setting.default(context) : setting.default;
  return Array.isArray(value) ? [...value] : value;
}

export function configError(source: string, key: string, reason: string, hint: string): HearthError {
  return new HearthError('HEARTH_ERR_CONFIG', { source, key, reason, hint });
}

// ---------------------------------------------------------------------------
// Names and near misses

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length]!;
}

function distanceTo(name: string): (candidate: string) => number {
  return (candidate) => editDistance(name.toLowerCase(), candidate.toLowerCase());
}

export function nearest(name: string, candidates: readonly string[]): string {
  const distance = distanceTo(name);
  return candidates.reduce((best, candidate) => (distance(candidate) < distance(best) ? candidate : best));
}

/** The names one level below `prefix` ('' for the top level), in declaration order. */
function childrenOf(keys: readonly string[], prefix: string): string[] {
  const start = prefix ? `${prefix}.` : '';
  return [...new Set(keys.filter((key) => key.startsWith(start)).map((key) => key.slice(start.length).split('.')[0]!))];
}

// ---------------------------------------------------------------------------
// Checking one value

/** Where a value came from, for `hearth config check` and for errors. */
export type Source =
  | { readonly from: 'default' }
  | { readonly from: 'file'; readonly path: string; readonly line: number }
  | { readonly from: 'env'; readonly name: string }
  | { readonly from: 'flag'; readonly name: string };

/** A value as given, before it is checked: from the file (a JS value) or as text (environment, flag). */
type Provided = { source: Source & { from: 'file' }; raw: unknown } | { source: Source & { from: 'env' | 'flag' }; text: string };

function describe(raw: unknown, secret: boolean): string {
  if (raw === null || raw === undefined) return 'nothing';
  if (Array.isArray(raw)) return 'a list';
  if (typeof raw === 'object') return 'a mapping';
  if (typeof raw === 'string') return secret ? 'text' : JSON.stringify(raw);
  return secret ? `a ${typeof raw}` : String(raw);
}

const BOOLEAN_WORDS: Record<string, boolean> = { true: true, false: false, 1: true, 0: false, yes: true, no: false };

/** Environment or flag text turned into what a YAML file would have held, so one checker serves all. */
function fromText(setting: Setting, textValue: string): unknown {
  const trimmed = textValue.trim();
  switch (setting.kind) {
    case 'integer':
      return /^[+-]?\d+$/.test(trimmed) ? Number(trimmed) : trimmed;
    case 'optionalInteger':
      return trimmed === '' ? null : /^[+-]?\d+$/.test(trimmed) ? Number(trimmed) : trimmed;
    case 'boolean':
      return BOOLEAN_WORDS[trimmed.toLowerCase()] ?? trimmed;
    case 'list':
      return trimmed
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item !== '');
    case 'optionalText':
      return trimmed === '' ? null : trimmed;
    default:
      return trimmed;
  }
}

function acceptText(setting: Setting, raw: unknown, wrongType = 'must be text'): Checked {
  const value = typeof raw === 'number' && setting.integerAsText && Number.isSafeInteger(raw) ? String(raw) : raw;
  if (typeof value !== 'string') return bad(`${wrongType}, got ${describe(value, setting.secret ?? false)}`);
  return setting.check ? setting.check(value) : ok(value);
}

function acceptInteger(setting: Setting, raw: unknown): { value: number } | { reason: string } {
  if (typeof raw !== 'number' || !Number.isSafeInteger(raw)) return { reason: `must be a whole number, got ${describe(raw, setting.secret ?? false)}` };
  if (raw < setting.min! || raw > setting.max!) return { reason: `is ${raw}, outside ${setting.min} to ${setting.max}` };
  return { value: raw };
}

/** Checks one value against its setting: the accepted value, or why not. */
export function accept(setting: Setting, raw: unknown): { value: LeafValue } | { reason: string } {
  const secret = setting.secret ?? false;
  switch (setting.kind) {
    case 'integer':
      return acceptInteger(setting, raw);
    case 'optionalInteger':
      return raw === null ? { value: null } : acceptInteger(setting, raw);
    case 'boolean':
      return typeof raw === 'boolean' ? { value: raw } : bad(`must be true or false, got ${describe(raw, secret)}`);
    case 'choice':
      return typeof raw === 'string' && setting.choices!.includes(raw)
        ? { value: raw }
        : bad(`must be one of ${setting.choices!.join(', ')}, got ${describe(raw, secret)}`);
    case 'optionalText':
      return raw === null || raw === '' ? { value: null } : acceptText(setting, raw);
    case 'text':
      return raw === null ? bad('has no value') : acceptText(setting, raw);
    case 'list': {
      if (raw === null) return { value: [] };
      if (!Array.isArray(raw)) return bad(`must be a list, got ${describe(raw, secret)}`);
      const items: string[] = [];
      for (const item of raw) {
        const checked = acceptText(setting, item, 'has an entry that is not text');
        if ('reason' in checked) return checked;
        items.push(checked.value);
      }
      return { value: items };
    }
  }
}

/** How an error names the place a value came from, and the place to fix it. */
export function placeOf(key: string, setting: Setting, source: Source): { source: string; suffix: string; target: string } {
  switch (source.from) {
    case 'default':
      return { source: 'defaults', suffix: '', target: key };
    case 'env':
    case 'flag':
      return { source: source.name, suffix: '', target: source.name };
    case 'file':
      return { source: source.path, suffix: ` (line ${source.line})`, target: setting.secret ? `${key} (or ${envNameOf(key, setting)})` : key };
  }
}

/** "file /etc/hearth.yaml line 3", "env HEARTH_SERVER_PORT", "flag --driver", "default", for printing. */
export function describeSource(source: Source): string {
  switch (source.from) {
    case 'default':
      return 'default';
    case 'file':
      return `file ${source.path} line ${source.line}`;
    case 'env':
      return `env ${source.name}`;
    case 'flag':
      return `flag ${source.name}`;
  }
}

// ---------------------------------------------------------------------------
// Reading the inputs

export interface YamlFile {
  readonly path: string;
  readonly document: Document.Parsed;
  readonly lines: LineCounter;
}

/** A YAML (or JSON) file, parsed with line numbers; `hint` says how the file was chosen. */
export function readYamlFile(path: string, hint: string): YamlFile {
  let textContent: string;
  try {
    textContent = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw configError(path, 'file', code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (error as Error).message})`, hint);
  }
  const { LineCounter, parseDocument } = yaml();
  const lines = new LineCounter();
  const document = parseDocument(textContent, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const first = document.errors[0];
  if (first) {
    const position = lines.linePos(first.pos[0]);
    throw configError(path, `line ${position.line}`, `is not valid YAML: ${first.message.split('\n')[0]}`, 'fix the syntax at that line');
  }
  return { path, document, lines };
}

/** Takes a top-level mapping (such as pools:) out of the file, for a reader of its own; its JS value, or undefined. */
export function takeSection(file: YamlFile, name: string): unknown {
  const top = file.document.contents;
  const { isMap, isScalar } = yaml();
  if (!isMap(top)) return undefined;
  const entry = top.items.find((pair) => isScalar(pair.key) && pair.key.value === name);
  if (!entry) return undefined;
  top.items = top.items.filter((pair) => pair !== entry);
  return (entry.value as Node | null)?.toJS(file.document) ?? null;
}

/** Walks one mapping of the file against the table's keys, recording each leaf it finds. */
function collectFromFile(file: YamlFile, keys: readonly string[], node: unknown, prefix: string, into: Map<string, Provided>): void {
  const lineOf = (target: unknown): number => {
    const range = (target as Node | null)?.range;
    return range ? file.lines.linePos(range[0]).line : 1;
  };
  const { isMap, isScalar } = yaml();
  if (node === null || node === undefined || (isScalar(node) && node.value === null)) return;
  const where = prefix || 'the top level';
  if (!isMap(node))
    throw configError(
      file.path,
      prefix || '(top level)',
      `must be a mapping of key: value lines (line ${lineOf(node)})`,
      `write ${where} as indented key: value lines`,
    );
  const valid = childrenOf(keys, prefix);
  for (const pair of node.items) {
    const name = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const path = prefix ? `${prefix}.${name}` : name;
    if (!valid.includes(name)) {
      const guess = nearest(name, valid);
      // Suggest only a near miss or a truncation; for anything else the list says more.
      const near = distanceTo(name)(guess) <= Math.max(2, name.length / 3) || guess.toLowerCase().startsWith(name.toLowerCase());
      const validKeys = `valid keys of ${where}: ${valid.join(', ')}`;
      const hint = near ? `did you mean ${prefix ? `${prefix}.` : ''}${guess}? (${validKeys})` : validKeys;
      throw configError(file.path, path, `is not a known key (line ${lineOf(pair.key)})`, hint);
    }
    if (keys.includes(path)) {
      const value = pair.value as Node | null;
      into.set(path, { source: { from: 'file', path: file.path, line: lineOf(value ?? pair.key) }, raw: value === null ? null : value.toJS(file.document) });
    } else {
      collectFromFile(file, keys, pair.value, path, into);
    }
  }
}

/**
 * HEARTH_<SECTION>_ prefixes of the table's derived variable names: a variable
 * with one of them that names no setting is a typo, which must not pass silently.
 */
function envPrefixes(table: SettingTable): string[] {
  const derived = Object.entries(table).filter(([, setting]) => setting.env === undefined);
  return [...new Set(derived.map(([key]) => `HEARTH_${key.split('.')[0]!.toUpperCase()}_`))];
}

// ---------------------------------------------------------------------------
// Resolving

export interface ResolveInputs {
  /** The YAML file, if any; only the table's keys may appear in it. */
  readonly file?: YamlFile | null;
  readonly env: NodeJS.ProcessEnv;
  /** Flag values by key, as typed on the command line; undefined when not given. */
  readonly flags?: Readonly<Record<string, string | undefined>>;
  readonly defaults: DefaultContext;
  /** Every environment variable the whole schema knows, so a variable of another table is not taken for a typo. */
  readonly knownEnv: readonly string[];
}

export interface Resolved {
  /** The values as a tree of sections, every key of the table set. */
  readonly tree: Record<string, unknown>;
  readonly sources: ReadonlyMap<string, Source>;
  /** Environment variables that set a value, in key order. */
  readonly overrides: readonly string[];
}

export function setPath(tree: Record<string, unknown>, key: string, value: unknown): void {
  const segments = key.split('.');
  let node = tree;
  for (const segment of segments.slice(0, -1)) node = (node[segment] ??= {}) as Record<string, unknown>;
  node[segments.at(-1)!] = value;
}

export function getPath(tree: unknown, key: string): unknown {
  return key
    .split('.')
    .reduce<unknown>((node, segment) => (node === null || typeof node !== 'object' ? undefined : (node as Record<string, unknown>)[segment]), tree);
}

/** The table's defaults as a tree. */
export function defaultTree(table: SettingTable, context: DefaultContext): Record<string, unknown> {
  const tree: Record<string, unknown> = {};
  for (const [key, setting] of Object.entries(table)) setPath(tree, key, defaultOf(setting, context));
  return tree;
}

/** Defaults, then the file, then the environment, then flags; throws HEARTH_ERR_CONFIG at the first problem. */
export function resolve(table: SettingTable, inputs: ResolveInputs): Resolved {
  const keys = Object.keys(table);
  const provided = new Map<string, Provided>();
  if (inputs.file) collectFromFile(inputs.file, keys, inputs.file.document.contents, '', provided);

  const prefixes = envPrefixes(table);
  for (const name of Object.keys(inputs.env)) {
    const section = prefixes.find((prefix) => name.startsWith(prefix));
    if (section === undefined || inputs.knownEnv.includes(name)) continue;
    const candidates = keys.map((key) => envNameOf(key, table[key]!)).filter((candidate) => candidate.startsWith(section));
    throw configError(
      name,
      'variable',
      `matches no configuration key, though it starts with ${section}`,
      `did you mean ${nearest(name, candidates)}? Rename or unset ${name}`,
    );
  }
  const overrides: string[] = [];
  for (const key of keys) {
    const name = envNameOf(key, table[key]!);
    const value = inputs.env[name];
    if (value === undefined) continue;
    provided.set(key, { source: { from: 'env', name }, text: value });
    overrides.push(name);
  }
  for (const [key, value] of Object.entries(inputs.flags ?? {})) {
    const setting = table[key];
    if (value === undefined || !setting) continue;
    provided.set(key, { source: { from: 'flag', name: setting.flag ?? key }, text: value });
  }

  const tree: Record<string, unknown> = {};
  const sources = new Map<string, Source>();
  for (const key of keys) {
    const setting = table[key]!;
    const given = provided.get(key);
    if (!given) {
      setPath(tree, key, defaultOf(setting, inputs.defaults));
      sources.set(key, { from: 'default' });
      continue;
    }
    const result = accept(setting, 'raw' in given ? given.raw : fromText(setting, given.text));
    if ('reason' in result) {
      const place = placeOf(key, setting, given.source);
      throw configError(place.source, key, result.reason + place.suffix, `set ${place.target} to ${setting.expect}`);
    }
    setPath(tree, key, result.value);
    sources.set(key, given.source);
  }
  return { tree, sources, overrides };
}
