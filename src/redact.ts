import { getPath } from './config/engine.ts';

/**
 * The one redactor. Whatever Hearth prints or stores passes through here:
 * - REDACTED replaces a secret in printed configuration and in log fields;
 * - MASK replaces a secret inside free text (job logs, runner output);
 * - LOG_REDACT_PATHS are the log fields pino censors;
 * - which configuration keys are secrets comes from the schema (src/config/schema.ts).
 */

export const REDACTED = '[redacted]';
export const MASK = '***';

/** Log fields that may hold secrets (command environments, tokens, credentials): censored by the logger. */
export const LOG_REDACT_PATHS = [
  'env',
  '*.env',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'password',
  '*.password',
  'authorization',
  '*.authorization',
  'jitConfig',
  '*.jitConfig',
];

/** Credentials with a known shape, masked in job logs even when Hearth never saw their value. */
const TOKEN_SHAPES = /\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glrt-[A-Za-z0-9_-]{16,}|glpat-[A-Za-z0-9_-]{16,}|glcbt-[A-Za-z0-9_-]{16,})/g;

/**
 * `text` with every occurrence of each secret replaced by MASK. Values shorter
 * than `minLength` are left alone: masking "abc" everywhere would mangle the log
 * and tell a reader the secret. `tokenShapes` also masks forge tokens by shape.
 */
export function maskSecrets(text: string, secrets: readonly string[], options: { minLength?: number; tokenShapes?: boolean } = {}): string {
  const minLength = options.minLength ?? 3;
  let out = options.tokenShapes ? text.replace(TOKEN_SHAPES, MASK) : text;
  for (const secret of secrets) if (secret.length >= minLength && out.includes(secret)) out = out.split(secret).join(MASK);
  return out;
}

/** A connection URL (postgres://user:password@host/db) with its password, and a ?password= parameter, redacted; other text as it is. */
export function redactUrl(value: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return value;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    // Unparseable, it may still hold a password: describe nothing of it.
    return REDACTED;
  }
  if (url.searchParams.has('password')) url.searchParams.set('password', 'redacted');
  const credentials = url.username ? `${url.username}${url.password ? `:${REDACTED}` : ''}@` : '';
  return `${url.protocol}//${credentials}${url.host}${url.pathname}${url.search}`;
}

/**
 * A copy of a configuration tree with the value at each secret key (dotted
 * path) replaced by REDACTED when set; a list keeps its length, so a reader
 * sees how many secrets are configured.
 */
export function redactTree<T>(tree: T, secretKeys: readonly string[]): T {
  const copy = structuredClone(tree);
  for (const key of secretKeys) {
    const segments = key.split('.');
    let node: unknown = copy;
    for (const segment of segments.slice(0, -1)) node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[segment] : undefined;
    if (node === null || typeof node !== 'object') continue;
    const parent = node as Record<string, unknown>;
    const last = segments.at(-1)!;
    const value = parent[last];
    if (Array.isArray(value)) parent[last] = value.map(() => REDACTED);
    else if (value !== null && value !== undefined) parent[last] = REDACTED;
  }
  return copy;
}

/** The set values at the secret keys of a tree, for masking in job logs. */
export function secretValues(tree: unknown, secretKeys: readonly string[]): string[] {
  const values: string[] = [];
  for (const key of secretKeys) {
    const value = getPath(tree, key);
    for (const item of Array.isArray(value) ? value : [value]) if (typeof item === 'string' && item !== '') values.push(item);
  }
  return values;
}
