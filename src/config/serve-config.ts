import { hostname } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { redactTree, redactUrl, secretValues } from '../redact.ts';
import { parseStoreUrl, type StoreTarget } from './checks.ts';
import {
  configError,
  defaultTree,
  describeSource,
  envNameOf,
  getPath,
  placeOf,
  readYamlFile,
  resolve,
  takeSection,
  type DefaultContext,
  type Source,
} from './engine.ts';
import type { HearthPaths } from './paths.ts';
import { parsePools } from './pools-config.ts';
import { KNOWN_ENV, secretKeys, SERVE_SETTINGS, type ServeConfig, type ServeConfigKey } from './schema.ts';

export type { ServeConfig, ServeConfigKey } from './schema.ts';
export type { StoreTarget } from './checks.ts';

/**
 * Configuration of `hearth serve`, the runner manager daemon: a YAML file
 * (--config or $HEARTH_SERVE_CONFIG), then one HEARTH_<SECTION>_<KEY> variable per key,
 * then flags, each winning over the one before. Every key has a default, so no
 * file at all is a valid setup. The keys are SERVE_SETTINGS in src/config/schema.ts;
 * the generic reading is src/config/engine.ts; what is left here are the rules
 * that tie keys together (TLS needs both files, a GitHub App all three settings…).
 */

export interface LoadedConfig {
  config: ServeConfig;
  /** The YAML file read, or null when only defaults and the environment were used. */
  source: string | null;
  /** Environment variables that overrode a value, in key order. */
  overrides: string[];
  /** What was decided for the operator, one line each ("store: SQLite at …"). */
  notes: string[];
  /** Where each key's value came from (pools: the file or HEARTH_POOLS, under the key 'pools'). */
  sources: ReadonlyMap<string, Source>;
}

function defaultContext(paths: HearthPaths, env: NodeJS.ProcessEnv): DefaultContext {
  return { env, dataDir: paths.data, hostname: hostname() };
}

export function defaultServeConfig(paths: HearthPaths): ServeConfig {
  const tree = defaultTree(SERVE_SETTINGS, defaultContext(paths, {}));
  // Both TLS paths default to null: no TLS.
  (tree.server as { tls: unknown }).tls = null;
  return { ...(tree as unknown as Omit<ServeConfig, 'pools'>), pools: [] };
}

/** Every key and its environment variable, in declaration order. */
export const SERVE_CONFIG_ENV: ReadonlyMap<ServeConfigKey, string> = new Map(
  (Object.keys(SERVE_SETTINGS) as ServeConfigKey[]).map((key) => [key, envNameOf(key, SERVE_SETTINGS[key])]),
);

/** Where the store lives, for the ledger; the URL must already have passed loadServeConfig. */
export function storeTarget(url: string): StoreTarget {
  const target = parseStoreUrl(url);
  if ('reason' in target) throw configError('store.url', 'store.url', target.reason, `set store.url to ${SERVE_SETTINGS['store.url'].expect}`);
  return target;
}

// ---------------------------------------------------------------------------
// Loading

/**
 * Defaults, then the YAML file (options.path, else $HEARTH_SERVE_CONFIG, else none), then
 * HEARTH_* variables, then `flags` (by key, e.g. { 'cluster.role': 'host' } from --role).
 * Throws HEARTH_ERR_CONFIG for the first problem, naming its source (file, variable,
 * flag or 'defaults'), the dotted key and a fix.
 */
export function loadServeConfig(options: {
  path?: string | undefined;
  env?: NodeJS.ProcessEnv;
  paths: HearthPaths;
  flags?: Readonly<Partial<Record<ServeConfigKey, string>>>;
}): LoadedConfig {
  const env = options.env ?? process.env;
  const chosenPath = options.path ?? (env.HEARTH_SERVE_CONFIG || undefined);
  const source = chosenPath === undefined ? null : resolvePath(chosenPath);
  const notes: string[] = [];

  let pools: ServeConfig['pools'] = [];
  let poolsSource: Source = { from: 'default' };
  const file =
    source === null
      ? null
      : readYamlFile(source, 'check the path given with --config or HEARTH_SERVE_CONFIG, or leave both unset to use the embedded defaults');
  if (file === null) {
    notes.push('no config file: using embedded defaults');
  } else {
    // pools: is a mapping of names, outside the key table; it is read on its own.
    const raw = takeSection(file, 'pools');
    if (raw !== undefined) {
      pools = parsePools(raw, file.path);
      poolsSource = { from: 'file', path: file.path, line: 1 };
    }
  }
  if (env.HEARTH_POOLS !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(env.HEARTH_POOLS);
    } catch {
      throw configError(
        'HEARTH_POOLS',
        'pools',
        'is not JSON',
        'set HEARTH_POOLS to a JSON object of pool name to settings, e.g. {"fast":{"mode":"snapshot","minIdle":2}}',
      );
    }
    pools = parsePools(parsed, 'HEARTH_POOLS');
    poolsSource = { from: 'env', name: 'HEARTH_POOLS' };
  }
  const resolved = resolve(SERVE_SETTINGS, { file, env, flags: options.flags ?? {}, defaults: defaultContext(options.paths, env), knownEnv: KNOWN_ENV });
  const overrides = [...resolved.overrides];
  if (env.HEARTH_POOLS !== undefined) overrides.push('HEARTH_POOLS');
  const sources = new Map(resolved.sources);
  sources.set('pools', poolsSource);
  const sourceOf = (key: ServeConfigKey): string => placeOf(key, SERVE_SETTINGS[key], sources.get(key) ?? { from: 'default' }).source;

  const tree = resolved.tree;
  const server = tree.server as { tls: { certPath: string | null; keyPath: string | null } | null };
  const tls = server.tls!;
  if ((tls.certPath === null) !== (tls.keyPath === null)) {
    const [missing, present] =
      tls.certPath === null ? (['server.tls.certPath', 'server.tls.keyPath'] as const) : (['server.tls.keyPath', 'server.tls.certPath'] as const);
    throw configError(
      sourceOf(present),
      missing,
      `is not set, but ${present} is`,
      `set both ${missing} and ${present} to serve HTTPS, or neither to serve plain HTTP behind a proxy`,
    );
  }
  // Both or neither, so one null means no TLS.
  if (tls.certPath === null) server.tls = null;

  // SERVE_SETTINGS names every key of ServeConfig (its type says so) and each value passed its setting.
  const config = { ...(tree as unknown as Omit<ServeConfig, 'pools'>), pools };
  const store = storeTarget(config.store.url);
  notes.push(...describeChoices(config, store));
  checkGithub(config, sourceOf, notes);
  checkGitlab(config, sourceOf, notes);
  checkCluster(config, store, sourceOf, notes);
  return { config, source, overrides, notes, sources };
}

type SourceOf = (key: ServeConfigKey) => string;

function checkGithub(config: ServeConfig, sourceOf: SourceOf, notes: string[]): void {
  const { github } = config;
  const appKeys = ['github.app.id', 'github.app.privateKeyPath', 'github.app.installationId'] as const;
  const appSet = appKeys.filter((key) => getPath(config, key) !== null);
  if (appSet.length > 0 && appSet.length < appKeys.length) {
    const missing = appKeys.filter((key) => !appSet.includes(key));
    throw configError(
      sourceOf(appSet[0]!),
      missing[0]!,
      `is not set, but ${appSet.join(' and ')} ${appSet.length === 1 ? 'is' : 'are'}`,
      `set all of github.app.id, github.app.privateKeyPath and github.app.installationId to use a GitHub App, or none of them (missing: ${missing.join(', ')})`,
    );
  }
  const hasAuth = github.token !== null || appSet.length === appKeys.length;
  const targets = github.repos.length > 0 ? 'github.repos' : github.orgs.length > 0 ? 'github.orgs' : null;
  if (targets && !hasAuth) {
    throw configError(
      sourceOf(targets),
      'github.token',
      `is not set and github.app is not configured, but ${targets} lists where to register runners`,
      'set github.token (or HEARTH_GITHUB_TOKEN) to a fine-grained PAT with Administration: write on those repositories, or configure github.app (id, privateKeyPath, installationId)',
    );
  }
  if (github.webhookSecret.length === 0) notes.push('GitHub webhooks disabled (no github.webhookSecret)');
  else if (!hasAuth) notes.push('GitHub webhooks are accepted, but with no github.token or github.app Hearth cannot register runners for their jobs');
  if (hasAuth)
    notes.push(
      `GitHub: authenticating with ${github.token !== null ? 'github.token' : `the App ${github.app.id}`}${github.token !== null && appSet.length > 0 ? ' (github.app is also set)' : ''} against ${github.apiUrl}`,
    );
}

function checkGitlab(config: ServeConfig, sourceOf: SourceOf, notes: string[]): void {
  const { gitlab } = config;
  const targets = gitlab.projects.length > 0 ? 'gitlab.projects' : gitlab.groups.length > 0 ? 'gitlab.groups' : null;
  if (targets && gitlab.token === null) {
    throw configError(
      sourceOf(targets),
      'gitlab.token',
      `is not set, but ${targets} lists where to register runners`,
      'set gitlab.token (or HEARTH_GITLAB_TOKEN) to a token with the create_runner scope on those projects or groups',
    );
  }
  const webhooks = gitlab.webhookToken !== null || gitlab.signingSecret.length > 0;
  if (!webhooks) notes.push('GitLab webhooks disabled (no gitlab.webhookToken or gitlab.signingSecret)');
  else if (gitlab.token === null) notes.push('GitLab webhooks are accepted, but with no gitlab.token Hearth cannot register runners for their jobs');
}

function checkCluster(config: ServeConfig, store: StoreTarget, sourceOf: SourceOf, notes: string[]): void {
  const { cluster } = config;
  if (cluster.role !== 'all' && store.kind !== 'postgres') {
    throw configError(
      sourceOf('cluster.role'),
      'cluster.role',
      `is ${cluster.role}, which shares the ledger with other processes, but store.url is a SQLite file`,
      'set store.url to a PostgreSQL URL (postgres://USER:PASSWORD@HOST:5432/DATABASE) shared by every replica and host, or set cluster.role to all for a single machine',
    );
  }
  if (cluster.heartbeatSeconds * 2 >= cluster.hostTimeoutSeconds) {
    throw configError(
      sourceOf('cluster.hostTimeoutSeconds'),
      'cluster.hostTimeoutSeconds',
      `(${cluster.hostTimeoutSeconds}) must be more than twice cluster.heartbeatSeconds (${cluster.heartbeatSeconds}), or one late heartbeat would lose a healthy host`,
      `set cluster.hostTimeoutSeconds to at least ${cluster.heartbeatSeconds * 3}`,
    );
  }
  if (cluster.role !== 'all')
    notes.push(`cluster: role ${cluster.role}${cluster.role === 'host' ? ` as host ${cluster.hostId}` : ''}, ${cluster.placement} placement`);
}

/** Notes on defaults an operator may not expect. */
function describeChoices(config: ServeConfig, store: StoreTarget): string[] {
  const notes: string[] = [];
  const { server, runners } = config;
  if (store.kind === 'sqlite') notes.push(`store: SQLite at ${store.path}`);
  else {
    const url = new URL(store.url);
    notes.push(`store: PostgreSQL at ${url.host}${url.pathname}`);
  }
  notes.push(
    `server: ${server.tls ? 'https' : 'http'} on ${server.host}:${server.port === 0 ? '(any free port)' : server.port}${server.tls ? '' : ' (no server.tls: put a TLS proxy in front)'}`,
  );
  const open = (['webhooks', 'api', 'metrics'] as const).filter((group) => server.allow[group].length === 0);
  if (open.length > 0) notes.push(`server.allow: ${open.join(', ')} open to every address`);
  if (server.rateLimitPerMinute === 0) notes.push('server: rate limit disabled (server.rateLimitPerMinute is 0)');
  if (config.api.token === null) notes.push('API /api/v1 disabled (no api.token)');
  if (runners.maxConcurrent === 0) notes.push('runners: concurrency decided from host capacity (runners.maxConcurrent is 0)');
  return notes;
}

// ---------------------------------------------------------------------------
// Printing

const SECRET_KEYS = secretKeys(SERVE_SETTINGS);

/** A copy safe to print: secrets replaced when set (lists keep their length), store passwords hidden. */
export function redactedConfig(config: ServeConfig): unknown {
  const copy = redactTree(config, SECRET_KEYS) as unknown as Record<string, unknown> & ServeConfig;
  copy.store.url = redactUrl(config.store.url);
  // Printed as the file writes it: a mapping of pool name to settings.
  return { ...copy, pools: Object.fromEntries(config.pools.map(({ name, ...settings }) => [name, settings])) };
}

/** Every secret value of the config: masked in job logs wherever a runner prints one. */
export function serveSecrets(config: ServeConfig): string[] {
  return secretValues(config, SECRET_KEYS);
}

/** "file /etc/hearth.yaml line 3", "env HEARTH_SERVER_PORT", … for each key of any loaded settings (serve, host, images), for `hearth config check`. */
export function describeSources(loaded: { readonly sources: ReadonlyMap<string, Source> }): Record<string, string> {
  return Object.fromEntries([...loaded.sources].map(([key, source]) => [key, describeSource(source)]));
}
