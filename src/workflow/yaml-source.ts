import { readFile } from 'node:fs/promises';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node, type Pair, type YAMLMap } from 'yaml';
import { readdir } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { HearthError } from '../errors.ts';
import { workflowError } from './errors.ts';
import type { SourceLocation } from './model.ts';

/** A path as the person running hearth would type it: relative to the working directory when inside it. */
function displayPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') ? rel : path;
}

/**
 * The CI files nearest to `dir`, for the fix of a missing one: GitHub workflows in dir (when it is a
 * workflows directory) or in dir/.github/workflows, and dir/.gitlab-ci.yml, from dir up to the root;
 * the first directory with any wins.
 */
async function ciFilesNear(dir: string): Promise<string[]> {
  const yaml = (name: string): boolean => /\.ya?ml$/.test(name);
  const list = (d: string): Promise<string[]> => readdir(d).catch(() => [] as string[]);
  for (let current = dir; ; current = dirname(current)) {
    const found = [
      ...(current.endsWith('/.github/workflows') ? (await list(current)).filter(yaml).map((n) => join(current, n)) : []),
      ...(await list(join(current, '.github', 'workflows'))).filter(yaml).map((n) => join(current, '.github', 'workflows', n)),
      ...((await list(current)).includes('.gitlab-ci.yml') ? [join(current, '.gitlab-ci.yml')] : []),
    ];
    if (found.length > 0) return [...new Set(found)].sort().slice(0, 8).map(displayPath);
    if (dirname(current) === current) return [];
  }
}

/**
 * A YAML file read for planning: every node can say where it is
 * (file:line:column), so every error can point at its cause.
 */
export class YamlSource {
  private constructor(
    readonly file: string,
    readonly document: Document.Parsed,
    private readonly lines: LineCounter,
  ) {}

  static async load(file: string, options: { merge?: boolean; uniqueKeys?: boolean } = {}): Promise<YamlSource> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        const nearby = await ciFilesNear(dirname(file));
        const hint =
          nearby.length > 0
            ? `did you mean ${nearby.join(' or ')}?`
            : `give the path of a GitHub workflow (.github/workflows/*.yml) or a .gitlab-ci.yml; none is in ${dirname(file)} or the directories above it`;
        throw new HearthError('HEARTH_ERR_WORKFLOW', { location: 'no such file', reason: displayPath(file), hint, file });
      }
      throw new HearthError('HEARTH_ERR_WORKFLOW', {
        location: displayPath(file),
        reason: `cannot read the file (${code ?? (error as Error).message})`,
        hint: 'check its permissions',
        file,
      });
    }
    return YamlSource.parse(file, text, options);
  }

  static parse(file: string, text: string, options: { merge?: boolean; uniqueKeys?: boolean } = {}): YamlSource {
    const lines = new LineCounter();
    const document = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: options.uniqueKeys ?? true, merge: options.merge ?? false });
    const source = new YamlSource(file, document, lines);
    const first = document.errors[0];
    if (first) {
      const pos = lines.linePos(first.pos[0]);
      throw workflowError({ file, line: pos.line, column: pos.col }, `invalid YAML: ${first.message.split('\n')[0]}`, 'fix the YAML syntax at that place');
    }
    return source;
  }

  at(node: Node | Pair | null | undefined): SourceLocation {
    const range =
      node && 'range' in node
        ? node.range
        : node && 'key' in node && node.key && typeof node.key === 'object' && 'range' in node.key
          ? (node.key as Node).range
          : undefined;
    if (!range) return { file: this.file, line: 1, column: 1 };
    const pos = this.lines.linePos(range[0]);
    return { file: this.file, line: pos.line, column: pos.col };
  }

  error(node: Node | Pair | null | undefined, reason: string, hint: string): HearthError {
    return workflowError(this.at(node), reason, hint);
  }

  root(): YAMLMap {
    const contents = this.document.contents;
    if (!isMap(contents)) throw this.error(contents as Node | null, 'the file is not a YAML mapping', 'the top level must be key: value pairs');
    return contents;
  }

  /** The value node under `key`, or undefined. */
  get(map: YAMLMap, key: string): Node | undefined {
    const pair = map.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
    return (pair?.value ?? undefined) as Node | undefined;
  }

  pair(map: YAMLMap, key: string): Pair | undefined {
    return map.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
  }

  keyOf(pair: Pair): string {
    return isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
  }

  map(node: Node | undefined, what: string): YAMLMap | undefined {
    if (node === undefined || (isScalar(node) && node.value === null)) return undefined;
    if (!isMap(node)) throw this.error(node, `${what} must be a mapping`, `write ${what} as key: value lines`);
    return node;
  }

  /** A scalar as text; numbers and booleans as YAML wrote them. */
  string(node: Node | undefined, what: string): string | undefined {
    if (node === undefined || (isScalar(node) && node.value === null)) return undefined;
    if (!isScalar(node)) throw this.error(node, `${what} must be a single value`, `give ${what} a string`);
    return String(node.value);
  }

  /** A string or a list of strings. */
  strings(node: Node | undefined, what: string): string[] {
    if (node === undefined || (isScalar(node) && node.value === null)) return [];
    if (isScalar(node)) return [String(node.value)];
    if (isSeq(node)) return node.items.map((item) => this.string(item as Node, `an entry of ${what}`) ?? '');
    throw this.error(node, `${what} must be a string or a list of strings`, `for example ${what}: [a, b]`);
  }

  /** A mapping of scalars (env, with, variables) as strings. */
  stringMap(node: Node | undefined, what: string): Record<string, string> {
    const map = this.map(node, what);
    const out: Record<string, string> = {};
    for (const pair of map?.items ?? []) {
      const value = pair.value as Node | null;
      if (value !== null && !isScalar(value)) throw this.error(value, `${what}.${this.keyOf(pair)} must be a single value`, 'quote it as a string');
      out[this.keyOf(pair)] = value === null || value.value === null ? '' : String(value.value);
    }
    return out;
  }

  json(node: Node | undefined): unknown {
    return node === undefined ? undefined : (node.toJSON() as unknown);
  }
}

export { isMap, isScalar, isSeq };
export type { Node, Pair, YAMLMap };
