import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { hostname } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { isMap, isScalar, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { HearthError } from '../errors.ts';
import { IMAGE_NAMES, isPublishedName } from '../image/store.ts';
import { VM_BOUNDS } from '../vm/bounds.ts';
import type { HearthPaths } from './paths.ts';
import { parsePools, type PoolConfig } from './pools-config.ts';

/**
 * Configuration of `hearth serve`, the runner manager daemon: a YAML file
 * (--config or $HEARTH_SERVE_CONFIG), then one HEARTH_<SECTION>_<KEY> variable per key,
 * which wins. Every key has a default, so no file at all is a valid setup.
 * Each key is declared once in FIELDS; the environment names, the unknown-key
 * checks and the redaction are all derived from it.
 */
export interface ServeConfig {
  server: {
    host: string;
    /** 0 asks the kernel for any free port. */
    port: number;
    /** GitHub sends payloads of up to 25 MB. */
    bodyLimitBytes: number;
    /** Requests per minute per client address; 0 disables the limit. */
    rateLimitPerMinute: number;
    tls: { certPath: string; keyPath: string } | null;
    /** CIDRs allowed to reach each route group; an empty list lets everyone in. */
    allow: { webhooks: string[]; api: string[]; metrics: string[] };
  };
  /** A filesystem path or `sqlite:PATH` (SQLite), or a `postgres://` URL. */
  store: { url: string };
  /** Bearer token for /api/v1; null leaves the API off. */
  api: { token: string | null };
  driver: { name: 'auto' | 'qemu' | 'firecracker' | 'flintlock'; accel: 'auto' | 'kvm' | 'tcg' };
  runners: {
    image: string;
    /** Runners need egress to reach their forge. */
    network: boolean;
    maxCpus: number;
    maxMemoryMib: number;
    /** 0 leaves the limit to what the host can hold. */
    maxConcurrent: number;
    bootTimeoutSeconds: number;
    jobTimeoutMinutes: number;
    /** Egress allowlist (CIDR or CIDR:PORT); set, networked runners get a TAP device with default-deny egress. */
    egress: string[];
    /** Host TCP ports runner VMs may reach at their gateway (a cache); only with egress set. */
    egressHostPorts: string[];
    /** The resolver runner VMs use on a TAP network. */
    dns: string;
  };
  reconcile: { intervalSeconds: number; stuckAfterSeconds: number; maxAttempts: number };
  github: {
    apiUrl: string;
    /** Tried in order: the current secret first, older ones still accepted while a rotation settles. */
    webhookSecret: string[];
    token: string | null;
    app: { id: string | null; privateKeyPath: string | null; installationId: string | null };
    repos: string[];
    orgs: string[];
    runnerGroupId: number;
    runnerCommand: string;
  };
  gitlab: {
    url: string;
    /** How the runner inside the VM reaches GitLab; null means `url`. */
    runnerUrl: string | null;
    webhookToken: string | null;
    /** Standard Webhooks secrets, `whsec_<base64>` or bare base64; a list for rotation. */
    signingSecret: string[];
    token: string | null;
    projects: string[];
    groups: string[];
    runnerCommand: string;
    waitTimeoutSeconds: number;
  };
  log: {
    level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
    /** Job logs (runner output) are kept this many days, then deleted. */
    jobRetentionDays: number;
    /** Lines kept per job; the rest is dropped with a note. */
    jobMaxLines: number;
  };
  /** Scale-out: what this process does, and how hosts are placed and watched (PostgreSQL only for roles other than all). */
  cluster: {
    role: 'all' | 'controller' | 'host';
    /** This host's id in the ledger; unique per VM host. */
    hostId: string;
    placement: 'binpack' | 'spread';
    heartbeatSeconds: number;
    hostTimeoutSeconds: number;
  };
  /** Warm and snapshot pools (src/config/pools-config.ts); not in the key table: a mapping of names. */
  pools: PoolConfig[];
}

export interface LoadedConfig {
  config: ServeConfig;
  /** The YAML file read, or null when only defaults and the environment were used. */
  source: string | null;
  /** Environment variables that overrode a value, in key order. */
  overrides: string[];
  /** What was decided for the operator, one line each ("store: SQLite at …"). */
  notes: string[];
}

export function defaultServeConfig(paths: HearthPaths): ServeConfig {
  return {
    server: {
      host: '0.0.0.0',
      port: 8080,
      bodyLimitBytes: 26_214_400,
      rateLimitPerMinute: 6000,
      tls: null,
      allow: { webhooks: [], api: [], metrics: [] },
    },
    store: { url: `${paths.data}/hearth.db` },
    api: { token: null },
    driver: { name: 'auto', accel: 'auto' },
    runners: { image: 'debian', network: true, maxCpus: 8, maxMemoryMib: 16_384, maxConcurrent: 0, bootTimeoutSeconds: 120, jobTimeoutMinutes: 360, egress: [], egressHostPorts: [], dns: '1.1.1.1' },
    reconcile: { intervalSeconds: 30, stuckAfterSeconds: 900, maxAttempts: 3 },
    github: {
      apiUrl: 'https://api.github.com',
      webhookSecret: [],
      token: null,
      app: { id: null, privateKeyPath: null, installationId: null },
      repos: [],
      orgs: [],
      runnerGroupId: 1,
      runnerCommand: '/opt/actions-runner/run.sh',
    },
    gitlab: {
      url: 'https://gitlab.com',
      runnerUrl: null,
      webhookToken: null,
      signingSecret: [],
      token: null,
      projects: [],
      groups: [],
      runnerCommand: 'gitlab-runner',
      waitTimeoutSeconds: 120,
    },
    log: { level: 'info', jobRetentionDays: 7, jobMaxLines: 20_000 },
    cluster: { role: 'all', hostId: hostname(), placement: 'binpack', heartbeatSeconds: 5, hostTimeoutSeconds: 30 },
    pools: [],
  };
}

// ---------------------------------------------------------------------------
// The key table

type LeafValue = string | number | boolean | null | string[];

/** Dotted paths of every leaf ('server.tls.certPath'), so FIELDS must name each key exactly once. */
type KeyPaths<T, Prefix extends string = ''> = {
  [K in keyof T & string]: NonNullable<T[K]> extends LeafValue ? `${Prefix}${K}` : KeyPaths<NonNullable<T[K]>, `${Prefix}${K}.`>;
}[keyof T & string];

export type ServeConfigKey = KeyPaths<Omit<ServeConfig, 'pools'>>;

type Checked = { value: string } | { reason: string };
type Check = (value: string) => Checked;
const ok = (value: string): Checked => ({ value });
const bad = (reason: string): Checked => ({ reason });

interface Field {
  readonly kind: 'text' | 'optionalText' | 'integer' | 'boolean' | 'choice' | 'list';
  /** Completes "set KEY to …" in a hint. */
  readonly expect: string;
  /** Never printed, never echoed in an error. */
  readonly secret?: boolean;
  readonly min?: number;
  readonly max?: number;
  readonly choices?: readonly string[];
  /** YAML reads `id: 12345` as a number; ids are kept as text. */
  readonly integerAsText?: boolean;
  /** Checks one text value (each item, for lists) and may normalise it. */
  readonly check?: Check;
}

const text = (expect: string, check: Check, extra: Partial<Field> = {}): Field => ({ kind: 'text', expect, check, ...extra });
const optionalText = (expect: string, check: Check, extra: Partial<Field> = {}): Field => ({ kind: 'optionalText', expect, check, ...extra });
const list = (expect: string, check: Check, extra: Partial<Field> = {}): Field => ({ kind: 'list', expect, check, ...extra });
const integer = (min: number, max: number, example: number): Field => ({ kind: 'integer', min, max, expect: `a whole number from ${min} to ${max}, e.g. ${example}` });
const choice = (choices: readonly string[]): Field => ({ kind: 'choice', choices, expect: `one of ${choices.join(', ')}` });
const flag: Field = { kind: 'boolean', expect: 'true or false' };

function nonEmpty(value: string): Checked {
  return value.length > 0 ? ok(value) : bad('is empty');
}

function hostAddress(value: string): Checked {
  if (!value || /\s/.test(value)) return bad(`is not an address to listen on, got ${JSON.stringify(value)}`);
  return ok(value);
}

/** Trailing slashes dropped, so callers can append `/path`. */
function httpUrl(value: string): Checked {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return bad(`is not a URL, got ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return bad(`must be an http:// or https:// URL, got ${JSON.stringify(value)}`);
  return ok(value.replace(/\/+$/, ''));
}

/** A bare address is taken as that one host, and written as /32 or /128 so every entry is a CIDR. */
function cidr(value: string): Checked {
  const [address = '', prefixText, ...extra] = value.split('/');
  const family = isIP(address);
  if (family === 0 || extra.length > 0) return bad(`has ${JSON.stringify(value)}, which is not an IPv4 or IPv6 CIDR`);
  const maxPrefix = family === 4 ? 32 : 128;
  if (prefixText === undefined) return ok(`${address}/${maxPrefix}`);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > maxPrefix) return bad(`has ${JSON.stringify(value)}, whose prefix length must be 0 to ${maxPrefix} for IPv${family}`);
  try {
    new BlockList().addSubnet(address, Number(prefixText), family === 4 ? 'ipv4' : 'ipv6');
  } catch (error) {
    return bad(`has ${JSON.stringify(value)}, which node:net rejects: ${(error as Error).message}`);
  }
  return ok(`${address}/${Number(prefixText)}`);
}

function apiToken(value: string): Checked {
  // Length only: never echo a token, not even a short one.
  return value.length >= 16 ? ok(value) : bad(`is ${value.length} characters long; it must be at least 16`);
}

function githubRepo(value: string): Checked {
  const match = /^([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))\/([A-Za-z0-9._-]{1,100})$/.exec(value);
  if (!match || match[2] === '.' || match[2] === '..') return bad(`has ${JSON.stringify(value)}, which is not in the form owner/repo`);
  return ok(value);
}

function githubOrg(value: string): Checked {
  return /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/.test(value) ? ok(value) : bad(`has ${JSON.stringify(value)}, which is not a GitHub organisation name`);
}

function numericId(value: string): Checked {
  return /^[1-9]\d*$/.test(value) ? ok(value) : bad(`has ${JSON.stringify(value)}, which is not a numeric id`);
}

function appId(value: string): Checked {
  // The numeric App ID, or the client ID (Iv1.…), which GitHub also accepts as the JWT issuer.
  return /^(?:\d+|Iv[0-9A-Za-z.]+)$/.test(value) ? ok(value) : bad(`is ${JSON.stringify(value)}, which is neither a numeric App ID nor a client ID`);
}

function signingSecret(value: string): Checked {
  // src/forge/gitlab/verify.ts base64-decodes the key with or without the prefix.
  const key = value.startsWith('whsec_') ? value.slice('whsec_'.length) : value;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key) || key.length % 4 !== 0) return bad('has an entry that is not base64 (after an optional whsec_ prefix)');
  return ok(value);
}

function egressEntry(value: string): Checked {
  const match = /^(\d{1,3}(?:\.\d{1,3}){3})(?:\/(\d{1,2}))?(?::(\d{1,5}))?$/.exec(value);
  if (!match || isIP(match[1]!) !== 4 || Number(match[2] ?? 32) > 32 || Number(match[3] ?? 1) < 1 || Number(match[3] ?? 1) > 65_535) return bad(`has ${JSON.stringify(value)}, which is not an IPv4 CIDR or CIDR:PORT`);
  return ok(value);
}

function tcpPort(value: string): Checked {
  return /^\d{1,5}$/.test(value) && Number(value) >= 1 && Number(value) <= 65_535 ? ok(value) : bad(`has ${JSON.stringify(value)}, which is not a TCP port`);
}

function ipv4Address(value: string): Checked {
  return isIP(value) === 4 ? ok(value) : bad(`is ${JSON.stringify(value)}, which is not an IPv4 address`);
}

function hostId(value: string): Checked {
  return /^[A-Za-z0-9._-]{1,64}$/.test(value) ? ok(value) : bad(`is ${JSON.stringify(value)}, which is not a host id (1-64 letters, digits, ".", "_" or "-")`);
}

function imageName(value: string): Checked {
  return isPublishedName(value) ? ok(value) : bad(`is ${JSON.stringify(value)}, which is not an image name (lower-case letters, digits and '-')`);
}

function readableFile(value: string): Checked {
  try {
    if (!statSync(value).isFile()) return bad(`is ${JSON.stringify(value)}, which is not a file`);
    accessSync(value, constants.R_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return bad(code === 'ENOENT' ? `is ${JSON.stringify(value)}, which does not exist` : `is ${JSON.stringify(value)}, which cannot be read (${code ?? (error as Error).message})`);
  }
  return ok(value);
}

function pemPrivateKey(value: string): Checked {
  const file = readableFile(value);
  if ('reason' in file) return file;
  if (!/-----BEGIN (?:RSA |EC )?PRIVATE KEY-----/.test(readFileSync(value, 'utf8'))) return bad(`is ${JSON.stringify(value)}, which does not look like a PEM private key (no -----BEGIN … PRIVATE KEY----- line)`);
  return ok(value);
}

export type StoreTarget = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

/** What store.url points at, or why it points at nothing usable. */
function parseStoreUrl(value: string): StoreTarget | { reason: string } {
  if (/^postgres(?:ql)?:\/\//i.test(value)) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      // The URL may hold a password: describe it, never echo it.
      return { reason: 'is not a valid PostgreSQL URL' };
    }
    if (!url.hostname) return { reason: 'is a PostgreSQL URL without a host' };
    return { kind: 'postgres', url: value };
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value);
  if (scheme && scheme[1]!.toLowerCase() !== 'sqlite') return { reason: `uses the scheme "${scheme[1]}"; Hearth stores in SQLite or PostgreSQL` };
  // sqlite:/abs, sqlite:///abs and plain /abs all name the same file.
  const path = /^sqlite:(?:\/\/(?=\/))?(.*)$/i.exec(value)?.[1] ?? value;
  if (path === ':memory:') return { kind: 'sqlite', path };
  if (path === '') return { reason: 'names no database file' };
  // A relative path would follow the daemon's working directory, which systemd sets to /.
  if (!isAbsolute(path)) return { reason: `is the relative path ${JSON.stringify(path)}; use an absolute path` };
  return { kind: 'sqlite', path };
}

function storeUrl(value: string): Checked {
  const target = parseStoreUrl(value);
  return 'reason' in target ? bad(target.reason) : ok(value);
}

/** Where the store lives, for the ledger; the URL must already have passed loadServeConfig. */
export function storeTarget(url: string): StoreTarget {
  const target = parseStoreUrl(url);
  if ('reason' in target) throw configError('store.url', 'store.url', target.reason, `set store.url to ${FIELDS['store.url'].expect}`);
  return target;
}

const CIDRS = 'a list of CIDRs, e.g. [10.0.0.0/8, "::1/128"] (empty lets every address in)';

const FIELDS: { readonly [K in ServeConfigKey]: Field } = {
  'server.host': text('an address to listen on, e.g. 0.0.0.0 or 127.0.0.1', hostAddress),
  'server.port': integer(0, 65_535, 8080),
  'server.bodyLimitBytes': integer(1024, 1_073_741_824, 26_214_400),
  'server.rateLimitPerMinute': integer(0, 1_000_000, 6000),
  'server.tls.certPath': optionalText('the path of a readable PEM certificate file, e.g. /etc/hearth/tls/cert.pem', readableFile),
  'server.tls.keyPath': optionalText('the path of a readable PEM key file, e.g. /etc/hearth/tls/key.pem', readableFile),
  'server.allow.webhooks': list(CIDRS, cidr),
  'server.allow.api': list(CIDRS, cidr),
  'server.allow.metrics': list(CIDRS, cidr),
  'store.url': text('an absolute SQLite path (/var/lib/hearth/hearth.db or sqlite:/var/lib/hearth/hearth.db) or postgres://USER:PASSWORD@HOST:5432/DATABASE', storeUrl),
  'api.token': optionalText('a random string of at least 16 characters, e.g. from `openssl rand -hex 32`', apiToken, { secret: true }),
  'driver.name': choice(['auto', 'qemu', 'firecracker', 'flintlock']),
  'driver.accel': choice(['auto', 'kvm', 'tcg']),
  'runners.image': text(`an image name: ${IMAGE_NAMES.join(', ')} or one published with hearth image build --name`, imageName),
  'runners.network': flag,
  'runners.maxCpus': integer(VM_BOUNDS.cpus.min, VM_BOUNDS.cpus.max, 8),
  'runners.maxMemoryMib': integer(VM_BOUNDS.memoryMib.min, VM_BOUNDS.memoryMib.max, 16_384),
  'runners.maxConcurrent': integer(0, 10_000, 0),
  'runners.bootTimeoutSeconds': integer(1, 3600, 120),
  'runners.jobTimeoutMinutes': integer(1, 10_080, 360),
  'runners.egress': list('a list of IPv4 CIDR or CIDR:PORT entries, e.g. [140.82.112.0/20:443, 1.1.1.1:53] (empty: egress not limited)', egressEntry),
  'runners.egressHostPorts': list('a list of TCP ports, e.g. ["3128"]', tcpPort),
  'runners.dns': text('an IPv4 address, e.g. 1.1.1.1', ipv4Address),
  'reconcile.intervalSeconds': integer(1, 3600, 30),
  'reconcile.stuckAfterSeconds': integer(1, 86_400, 900),
  'reconcile.maxAttempts': integer(1, 100, 3),
  'github.apiUrl': text('an https:// URL, e.g. https://api.github.com or https://ghe.example.com/api/v3', httpUrl),
  'github.webhookSecret': list('a list of webhook secrets, current first, e.g. from `openssl rand -hex 32`', nonEmpty, { secret: true }),
  'github.token': optionalText('a fine-grained personal access token (github_pat_…)', nonEmpty, { secret: true }),
  'github.app.id': optionalText('the App ID shown on the GitHub App settings page, e.g. 123456', appId, { integerAsText: true }),
  'github.app.privateKeyPath': optionalText('the path of the App private key (.pem) downloaded from its settings page', pemPrivateKey),
  'github.app.installationId': optionalText('the numeric installation id from the installation URL, e.g. 12345678', numericId, { integerAsText: true }),
  'github.repos': list('a list of owner/repo names, e.g. [octo-org/app]', githubRepo),
  'github.orgs': list('a list of organisation names, e.g. [octo-org]', githubOrg),
  'github.runnerGroupId': integer(1, 2_147_483_647, 1),
  'github.runnerCommand': text('the runner program inside the image, e.g. /opt/actions-runner/run.sh', nonEmpty),
  'gitlab.url': text('an https:// URL, e.g. https://gitlab.com', httpUrl),
  'gitlab.runnerUrl': optionalText('the URL the VM uses to reach GitLab, e.g. https://gitlab.internal', httpUrl),
  'gitlab.webhookToken': optionalText("the webhook's secret token as entered in GitLab", nonEmpty, { secret: true }),
  'gitlab.signingSecret': list("a list of the webhook's signing secrets (whsec_<base64>), current first", signingSecret, { secret: true }),
  'gitlab.token': optionalText('a GitLab token with the create_runner scope (glpat-…)', nonEmpty, { secret: true }),
  'gitlab.projects': list('a list of numeric project ids, e.g. [1234]', numericId, { integerAsText: true }),
  'gitlab.groups': list('a list of numeric group ids, e.g. [56]', numericId, { integerAsText: true }),
  'gitlab.runnerCommand': text('the runner program inside the image, e.g. gitlab-runner', nonEmpty),
  'gitlab.waitTimeoutSeconds': integer(1, 3600, 120),
  'log.level': choice(['trace', 'debug', 'info', 'warn', 'error', 'fatal']),
  'log.jobRetentionDays': integer(1, 3650, 7),
  'log.jobMaxLines': integer(100, 10_000_000, 20_000),
  'cluster.role': choice(['all', 'controller', 'host']),
  'cluster.hostId': text('a host id of letters, digits, ".", "_" or "-", e.g. vm-host-1', hostId),
  'cluster.placement': choice(['binpack', 'spread']),
  'cluster.heartbeatSeconds': integer(1, 300, 5),
  'cluster.hostTimeoutSeconds': integer(3, 3600, 30),
};

const KEYS = Object.keys(FIELDS) as ServeConfigKey[];

/** `github.app.privateKeyPath` → `HEARTH_GITHUB_APP_PRIVATE_KEY_PATH`. */
export function envVariableFor(key: ServeConfigKey): string {
  return `HEARTH_${key
    .split('.')
    .map((segment) => segment.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase())
    .join('_')}`;
}

/** Every key and its environment variable, in declaration order. */
export const SERVE_CONFIG_ENV: ReadonlyMap<ServeConfigKey, string> = new Map(KEYS.map((key) => [key, envVariableFor(key)]));

/** HEARTH_* variables with these prefixes are config; a typo among them must not pass silently. */
const ENV_PREFIXES = [...new Set(KEYS.map((key) => `HEARTH_${key.split('.')[0]!.toUpperCase()}_`))];

/** The names one level below `prefix` ('' for the top level), in declaration order. */
function childrenOf(prefix: string): string[] {
  const start = prefix ? `${prefix}.` : '';
  return [...new Set(KEYS.filter((key) => key.startsWith(start)).map((key) => key.slice(start.length).split('.')[0]!))];
}

function isKey(path: string): path is ServeConfigKey {
  return Object.hasOwn(FIELDS, path);
}

// ---------------------------------------------------------------------------
// Reading values

function configError(source: string, key: string, reason: string, hint: string): HearthError {
  return new HearthError('HEARTH_ERR_CONFIG', { source, key, reason, hint });
}

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

function nearest(name: string, candidates: readonly string[]): string {
  const distance = distanceTo(name);
  return candidates.reduce((best, candidate) => (distance(candidate) < distance(best) ? candidate : best));
}

/** A value as given, before it is checked: from the file (a JS value) or from the environment (text). */
type Provided = { from: 'file'; source: string; line: number; raw: unknown } | { from: 'env'; source: string; text: string };

function describe(raw: unknown, secret: boolean): string {
  if (raw === null || raw === undefined) return 'nothing';
  if (Array.isArray(raw)) return 'a list';
  if (typeof raw === 'object') return 'a mapping';
  if (typeof raw === 'string') return secret ? 'text' : JSON.stringify(raw);
  return secret ? `a ${typeof raw}` : String(raw);
}

const BOOLEAN_WORDS: Record<string, boolean> = { true: true, false: false, 1: true, 0: false, yes: true, no: false };

/** Environment text turned into what a YAML file would have held, so one checker serves both. */
function fromEnvText(field: Field, text: string): unknown {
  const trimmed = text.trim();
  switch (field.kind) {
    case 'integer':
      return /^[+-]?\d+$/.test(trimmed) ? Number(trimmed) : trimmed;
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

function acceptText(field: Field, raw: unknown, wrongType = 'must be text'): Checked {
  const value = typeof raw === 'number' && field.integerAsText && Number.isSafeInteger(raw) ? String(raw) : raw;
  if (typeof value !== 'string') return bad(`${wrongType}, got ${describe(value, field.secret ?? false)}`);
  return field.check ? field.check(value) : ok(value);
}

/** Checks one value against its field: the accepted value, or why not. */
function accept(field: Field, raw: unknown): { value: LeafValue } | { reason: string } {
  const secret = field.secret ?? false;
  switch (field.kind) {
    case 'integer': {
      if (typeof raw !== 'number' || !Number.isSafeInteger(raw)) return bad(`must be a whole number, got ${describe(raw, secret)}`);
      if (raw < field.min! || raw > field.max!) return bad(`is ${raw}, outside ${field.min} to ${field.max}`);
      return { value: raw };
    }
    case 'boolean':
      return typeof raw === 'boolean' ? { value: raw } : bad(`must be true or false, got ${describe(raw, secret)}`);
    case 'choice':
      return typeof raw === 'string' && field.choices!.includes(raw) ? { value: raw } : bad(`must be one of ${field.choices!.join(', ')}, got ${describe(raw, secret)}`);
    case 'optionalText':
      return raw === null || raw === '' ? { value: null } : acceptText(field, raw);
    case 'text':
      return raw === null ? bad('has no value') : acceptText(field, raw);
    case 'list': {
      if (raw === null) return { value: [] };
      if (!Array.isArray(raw)) return bad(`must be a list, got ${describe(raw, secret)}`);
      const items: string[] = [];
      for (const item of raw) {
        const checked = acceptText(field, item, 'has an entry that is not text');
        if ('reason' in checked) return checked;
        items.push(checked.value);
      }
      return { value: items };
    }
  }
}

/** Where a problem with a provided value is, and how the hint should name the place to fix. */
function placeOf(key: ServeConfigKey, provided: Provided | undefined): { source: string; suffix: string; target: string } {
  if (!provided) return { source: 'defaults', suffix: '', target: key };
  if (provided.from === 'env') return { source: provided.source, suffix: '', target: provided.source };
  return { source: provided.source, suffix: ` (line ${provided.line})`, target: FIELDS[key].secret ? `${key} (or ${envVariableFor(key)})` : key };
}

function readYamlFile(path: string): { document: Document.Parsed; lines: LineCounter } {
  let textContent: string;
  try {
    textContent = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw configError(path, 'file', code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (error as Error).message})`, 'check the path given with --config or HEARTH_SERVE_CONFIG, or leave both unset to use the embedded defaults');
  }
  const lines = new LineCounter();
  const document = parseDocument(textContent, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const first = document.errors[0];
  if (first) {
    const position = lines.linePos(first.pos[0]);
    throw configError(path, `line ${position.line}`, `is not valid YAML: ${first.message.split('\n')[0]}`, 'fix the YAML syntax at that line');
  }
  return { document, lines };
}

/** Walks one mapping of the file against the key table, recording each leaf it finds. */
function collectFromFile(source: string, document: Document.Parsed, lines: LineCounter, node: unknown, prefix: string, into: Map<ServeConfigKey, Provided>): void {
  const lineOf = (target: unknown): number => {
    const range = (target as Node | null)?.range;
    return range ? lines.linePos(range[0]).line : 1;
  };
  if (node === null || node === undefined || (isScalar(node) && node.value === null)) return;
  const where = prefix || 'the top level';
  if (!isMap(node)) throw configError(source, prefix || '(top level)', `must be a mapping of key: value lines (line ${lineOf(node)})`, `write ${where} as indented key: value lines`);
  const valid = childrenOf(prefix);
  for (const pair of node.items) {
    const name = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const path = prefix ? `${prefix}.${name}` : name;
    if (!valid.includes(name)) {
      const guess = nearest(name, valid);
      // Suggest only a near miss or a truncation; for anything else the list says more.
      const near = distanceTo(name)(guess) <= Math.max(2, name.length / 3) || guess.toLowerCase().startsWith(name.toLowerCase());
      const validKeys = `valid keys of ${where}: ${valid.join(', ')}`;
      const hint = near ? `did you mean ${prefix ? `${prefix}.` : ''}${guess}? (${validKeys})` : validKeys;
      throw configError(source, path, `is not a known key (line ${lineOf(pair.key)})`, hint);
    }
    if (isKey(path)) {
      const value = pair.value as Node | null;
      into.set(path, { from: 'file', source, line: lineOf(value ?? pair.key), raw: value === null ? null : value.toJS(document) });
    } else {
      collectFromFile(source, document, lines, pair.value, path, into);
    }
  }
}

function collectFromEnv(env: NodeJS.ProcessEnv, into: Map<ServeConfigKey, Provided>): string[] {
  const names = [...SERVE_CONFIG_ENV.values()];
  for (const name of Object.keys(env)) {
    const section = ENV_PREFIXES.find((prefix) => name.startsWith(prefix));
    if (section === undefined || names.includes(name)) continue;
    throw configError(name, 'variable', `matches no configuration key, though it starts with ${section}`, `did you mean ${nearest(name, names)}? Rename or unset ${name}`);
  }
  const applied: string[] = [];
  for (const [key, name] of SERVE_CONFIG_ENV) {
    const textValue = env[name];
    if (textValue === undefined) continue;
    into.set(key, { from: 'env', source: name, text: textValue });
    applied.push(name);
  }
  return applied;
}

function setPath(tree: Record<string, unknown>, key: string, value: unknown): void {
  const segments = key.split('.');
  let node = tree;
  for (const segment of segments.slice(0, -1)) node = (node[segment] ??= {}) as Record<string, unknown>;
  node[segments.at(-1)!] = value;
}

function getPath(tree: unknown, key: string): unknown {
  return key.split('.').reduce<unknown>((node, segment) => (node === null || typeof node !== 'object' ? undefined : (node as Record<string, unknown>)[segment]), tree);
}

// ---------------------------------------------------------------------------
// Loading

/**
 * Defaults, then the YAML file (options.path, else $HEARTH_SERVE_CONFIG, else none), then
 * HEARTH_* variables. Throws HEARTH_ERR_CONFIG for the first problem, naming its
 * source (file, variable or 'defaults'), the dotted key and a fix.
 */
export function loadServeConfig(options: { path?: string | undefined; env?: NodeJS.ProcessEnv; paths: HearthPaths }): LoadedConfig {
  const env = options.env ?? process.env;
  const chosenPath = options.path ?? (env.HEARTH_SERVE_CONFIG || undefined);
  const source = chosenPath === undefined ? null : resolve(chosenPath);
  const notes: string[] = [];
  const provided = new Map<ServeConfigKey, Provided>();

  let pools: PoolConfig[] = [];
  if (source === null) {
    notes.push('no config file: using embedded defaults');
  } else {
    const { document, lines } = readYamlFile(source);
    // pools: is a mapping of names, outside the key table; it is read on its own.
    const top = document.contents;
    if (isMap(top)) {
      const entry = top.items.find((pair) => isScalar(pair.key) && pair.key.value === 'pools');
      if (entry) {
        top.items = top.items.filter((pair) => pair !== entry);
        pools = parsePools((entry.value as Node | null)?.toJS(document) ?? null, source);
      }
    }
    collectFromFile(source, document, lines, document.contents, '', provided);
  }
  if (env.HEARTH_POOLS !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(env.HEARTH_POOLS);
    } catch {
      throw configError('HEARTH_POOLS', 'pools', 'is not JSON', 'set HEARTH_POOLS to a JSON object of pool name to settings, e.g. {"fast":{"mode":"snapshot","minIdle":2}}');
    }
    pools = parsePools(parsed, 'HEARTH_POOLS');
  }
  const overrides = collectFromEnv(env, provided);
  if (env.HEARTH_POOLS !== undefined) overrides.push('HEARTH_POOLS');

  const defaults = defaultServeConfig(options.paths);
  const tree: Record<string, unknown> = {};
  for (const key of KEYS) {
    const given = provided.get(key);
    if (!given) {
      setPath(tree, key, getPath(defaults, key) ?? null);
      continue;
    }
    const field = FIELDS[key];
    const result = accept(field, given.from === 'env' ? fromEnvText(field, given.text) : given.raw);
    if ('reason' in result) {
      const place = placeOf(key, given);
      throw configError(place.source, key, result.reason + place.suffix, `set ${place.target} to ${field.expect}`);
    }
    setPath(tree, key, result.value);
  }
  const sourceOf = (key: ServeConfigKey): string => placeOf(key, provided.get(key)).source;

  const server = tree.server as { tls: { certPath: string | null; keyPath: string | null } | null };
  const tls = server.tls!;
  if ((tls.certPath === null) !== (tls.keyPath === null)) {
    const [missing, present] = tls.certPath === null ? (['server.tls.certPath', 'server.tls.keyPath'] as const) : (['server.tls.keyPath', 'server.tls.certPath'] as const);
    throw configError(sourceOf(present), missing, `is not set, but ${present} is`, `set both ${missing} and ${present} to serve HTTPS, or neither to serve plain HTTP behind a proxy`);
  }
  // Both or neither, so one null means no TLS.
  if (tls.certPath === null) server.tls = null;

  // FIELDS names every key of ServeConfig (its type says so) and each value passed its field.
  const config = tree as unknown as ServeConfig;
  config.pools = pools;
  notes.push(...describeChoices(config));
  checkGithub(config, sourceOf, notes);
  checkGitlab(config, sourceOf, notes);
  checkCluster(config, sourceOf, notes);
  return { config, source, overrides, notes };
}

type SourceOf = (key: ServeConfigKey) => string;

function checkGithub(config: ServeConfig, sourceOf: SourceOf, notes: string[]): void {
  const { github } = config;
  const appKeys = ['github.app.id', 'github.app.privateKeyPath', 'github.app.installationId'] as const;
  const appSet = appKeys.filter((key) => getPath(config, key) !== null);
  if (appSet.length > 0 && appSet.length < appKeys.length) {
    const missing = appKeys.filter((key) => !appSet.includes(key));
    throw configError(sourceOf(appSet[0]!), missing[0]!, `is not set, but ${appSet.join(' and ')} ${appSet.length === 1 ? 'is' : 'are'}`, `set all of github.app.id, github.app.privateKeyPath and github.app.installationId to use a GitHub App, or none of them (missing: ${missing.join(', ')})`);
  }
  const hasAuth = github.token !== null || appSet.length === appKeys.length;
  const targets = github.repos.length > 0 ? 'github.repos' : github.orgs.length > 0 ? 'github.orgs' : null;
  if (targets && !hasAuth) {
    throw configError(sourceOf(targets), 'github.token', `is not set and github.app is not configured, but ${targets} lists where to register runners`, 'set github.token (or HEARTH_GITHUB_TOKEN) to a fine-grained PAT with Administration: write on those repositories, or configure github.app (id, privateKeyPath, installationId)');
  }
  if (github.webhookSecret.length === 0) notes.push('GitHub webhooks disabled (no github.webhookSecret)');
  else if (!hasAuth) notes.push('GitHub webhooks are accepted, but with no github.token or github.app Hearth cannot register runners for their jobs');
  if (hasAuth) notes.push(`GitHub: authenticating with ${github.token !== null ? 'github.token' : `the App ${github.app.id}`}${github.token !== null && appSet.length > 0 ? ' (github.app is also set)' : ''} against ${github.apiUrl}`);
}

function checkGitlab(config: ServeConfig, sourceOf: SourceOf, notes: string[]): void {
  const { gitlab } = config;
  const targets = gitlab.projects.length > 0 ? 'gitlab.projects' : gitlab.groups.length > 0 ? 'gitlab.groups' : null;
  if (targets && gitlab.token === null) {
    throw configError(sourceOf(targets), 'gitlab.token', `is not set, but ${targets} lists where to register runners`, 'set gitlab.token (or HEARTH_GITLAB_TOKEN) to a token with the create_runner scope on those projects or groups');
  }
  const webhooks = gitlab.webhookToken !== null || gitlab.signingSecret.length > 0;
  if (!webhooks) notes.push('GitLab webhooks disabled (no gitlab.webhookToken or gitlab.signingSecret)');
  else if (gitlab.token === null) notes.push('GitLab webhooks are accepted, but with no gitlab.token Hearth cannot register runners for their jobs');
}

function checkCluster(config: ServeConfig, sourceOf: SourceOf, notes: string[]): void {
  const { cluster } = config;
  if (cluster.role !== 'all' && storeTarget(config.store.url).kind !== 'postgres') {
    throw configError(sourceOf('cluster.role'), 'cluster.role', `is ${cluster.role}, which shares the ledger with other processes, but store.url is a SQLite file`, 'set store.url to a PostgreSQL URL (postgres://USER:PASSWORD@HOST:5432/DATABASE) shared by every replica and host, or set cluster.role to all for a single machine');
  }
  if (cluster.heartbeatSeconds * 2 >= cluster.hostTimeoutSeconds) {
    throw configError(sourceOf('cluster.hostTimeoutSeconds'), 'cluster.hostTimeoutSeconds', `(${cluster.hostTimeoutSeconds}) must be more than twice cluster.heartbeatSeconds (${cluster.heartbeatSeconds}), or one late heartbeat would lose a healthy host`, `set cluster.hostTimeoutSeconds to at least ${cluster.heartbeatSeconds * 3}`);
  }
  if (cluster.role !== 'all') notes.push(`cluster: role ${cluster.role}${cluster.role === 'host' ? ` as host ${cluster.hostId}` : ''}, ${cluster.placement} placement`);
}

/** Notes on defaults an operator may not expect. */
function describeChoices(config: ServeConfig): string[] {
  const notes: string[] = [];
  const { server, runners } = config;
  const store = storeTarget(config.store.url);
  if (store.kind === 'sqlite') notes.push(`store: SQLite at ${store.path}`);
  else {
    const url = new URL(store.url);
    notes.push(`store: PostgreSQL at ${url.host}${url.pathname}`);
  }
  notes.push(`server: ${server.tls ? 'https' : 'http'} on ${server.host}:${server.port === 0 ? '(any free port)' : server.port}${server.tls ? '' : ' (no server.tls: put a TLS proxy in front)'}`);
  const open = (['webhooks', 'api', 'metrics'] as const).filter((group) => server.allow[group].length === 0);
  if (open.length > 0) notes.push(`server.allow: ${open.join(', ')} open to every address`);
  if (server.rateLimitPerMinute === 0) notes.push('server: rate limit disabled (server.rateLimitPerMinute is 0)');
  if (config.api.token === null) notes.push('API /api/v1 disabled (no api.token)');
  if (runners.maxConcurrent === 0) notes.push('runners: concurrency decided from host capacity (runners.maxConcurrent is 0)');
  return notes;
}

// ---------------------------------------------------------------------------
// Printing

const REDACTED = '[redacted]';

/** A copy safe to print: secrets replaced when set (lists keep their length), store passwords hidden. */
export function redactedConfig(config: ServeConfig): unknown {
  const copy = structuredClone(config) as unknown as Record<string, unknown>;
  for (const key of KEYS) {
    if (!FIELDS[key].secret) continue;
    const value = getPath(copy, key);
    if (Array.isArray(value)) setPath(copy, key, value.map(() => REDACTED));
    else if (value !== null && value !== undefined) setPath(copy, key, REDACTED);
  }
  setPath(copy, 'store.url', redactStoreUrl(config.store.url));
  // Printed as the file writes it: a mapping of pool name to settings.
  copy.pools = Object.fromEntries(config.pools.map(({ name, ...settings }) => [name, settings]));
  return copy;
}

function redactStoreUrl(value: string): string {
  if (!/^postgres(?:ql)?:\/\//i.test(value)) return value;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return REDACTED;
  }
  if (url.searchParams.has('password')) url.searchParams.set('password', 'redacted');
  const credentials = url.username ? `${url.username}${url.password ? `:${REDACTED}` : ''}@` : '';
  return `${url.protocol}//${credentials}${url.host}${url.pathname}${url.search}`;
}
