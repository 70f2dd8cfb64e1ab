import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HearthPaths } from '../../src/config/paths.ts';
import { defaultServeConfig, loadServeConfig, redactedConfig, SERVE_CONFIG_ENV, storeTarget } from '../../src/config/serve-config.ts';
import { isHearthError, type HearthError } from '../../src/errors.ts';
import { HEARTH_BIN } from '../support/env.ts';

const dir = mkdtempSync(join(tmpdir(), 'hearth-serve-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const paths: HearthPaths = { cache: join(dir, 'cache'), data: join(dir, 'data'), runtime: join(dir, 'run') };
let files = 0;

function yamlFile(text: string): string {
  const path = join(dir, `config-${++files}.yaml`);
  writeFileSync(path, text);
  return path;
}

function load(text: string | null, env: NodeJS.ProcessEnv = {}) {
  return loadServeConfig({ ...(text === null ? {} : { path: yamlFile(text) }), env, paths });
}

/** The HEARTH_ERR_CONFIG a load throws, for checking its fields. */
function configError(text: string | null, env: NodeJS.ProcessEnv = {}): HearthError {
  try {
    load(text, env);
  } catch (error) {
    assert.ok(isHearthError(error, 'HEARTH_ERR_CONFIG'), String(error));
    return error;
  }
  assert.fail('the config loaded without an error');
}

const PEM = '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n';
const keyFile = join(dir, 'app.pem');
writeFileSync(keyFile, PEM);

test('no file and no environment gives the defaults, with a note saying so', () => {
  const loaded = load(null);
  assert.deepEqual(loaded.config, defaultServeConfig(paths));
  assert.equal(loaded.source, null);
  assert.deepEqual(loaded.overrides, []);
  assert.equal(loaded.config.store.url, `${paths.data}/hearth.db`);
  assert.ok(loaded.notes.includes('no config file: using embedded defaults'));
  assert.ok(loaded.notes.includes(`store: SQLite at ${paths.data}/hearth.db`));
  assert.ok(loaded.notes.includes('GitHub webhooks disabled (no github.webhookSecret)'));
  assert.ok(loaded.notes.includes('GitLab webhooks disabled (no gitlab.webhookToken or gitlab.signingSecret)'));
});

test('HEARTH_SERVE_CONFIG names the file when no path is given', () => {
  const path = yamlFile('server:\n  port: 9000\n');
  const loaded = loadServeConfig({ env: { HEARTH_SERVE_CONFIG: path }, paths });
  assert.equal(loaded.source, path);
  assert.equal(loaded.config.server.port, 9000);
  assert.throws(
    () => loadServeConfig({ path: join(dir, 'missing.yaml'), env: {}, paths }),
    (error: HearthError) => error.context.key === 'file' && /does not exist/.test(error.message),
  );
});

test('values from the YAML file replace the defaults, the rest stay', () => {
  const loaded = load(`
server:
  host: 127.0.0.1
  port: 9090
  allow:
    metrics: [127.0.0.1/32, "::1/128", 10.1.2.3]
runners:
  network: false
  maxConcurrent: 4
github:
  webhookSecret: [new-secret, old-secret]
  app:
    id: 123456
    privateKeyPath: ${keyFile}
    installationId: 7890
  repos: [octo-org/app]
gitlab:
  token: glpat-abc
  projects: [1234, "5678"]
log:
  level: debug
`);
  const { config } = loaded;
  assert.equal(config.server.host, '127.0.0.1');
  assert.equal(config.server.port, 9090);
  assert.equal(config.server.bodyLimitBytes, 26_214_400);
  assert.deepEqual(config.server.allow, { webhooks: [], api: [], metrics: ['127.0.0.1/32', '::1/128', '10.1.2.3/32'] });
  assert.equal(config.runners.network, false);
  assert.equal(config.runners.maxConcurrent, 4);
  assert.deepEqual(config.github.webhookSecret, ['new-secret', 'old-secret']);
  assert.deepEqual(config.github.app, { id: '123456', privateKeyPath: keyFile, installationId: '7890' });
  assert.deepEqual(config.gitlab.projects, ['1234', '5678']);
  assert.equal(config.log.level, 'debug');
  assert.ok(!loaded.notes.some((note) => note.startsWith('GitHub webhooks disabled')));
});

test('environment variables win over the file and are parsed by type', () => {
  const loaded = load('server:\n  port: 9090\nrunners:\n  network: true\n', {
    HEARTH_SERVER_PORT: '7070',
    HEARTH_RUNNERS_NETWORK: 'no',
    HEARTH_GITHUB_WEBHOOK_SECRET: 'current, previous',
    HEARTH_SERVER_ALLOW_WEBHOOKS: '192.30.252.0/22,2606:50c0::/32',
    HEARTH_GITHUB_APP_PRIVATE_KEY_PATH: '',
    HEARTH_API_TOKEN: 'a-token-of-32-characters-0123456',
    HEARTH_GITHUB_API_URL: 'https://ghe.example.com/api/v3/',
    HEARTH_CACHE_DIR: '/elsewhere',
  });
  const { config } = loaded;
  assert.equal(config.server.port, 7070);
  assert.equal(config.runners.network, false);
  assert.deepEqual(config.github.webhookSecret, ['current', 'previous']);
  assert.deepEqual(config.server.allow.webhooks, ['192.30.252.0/22', '2606:50c0::/32']);
  assert.equal(config.github.app.privateKeyPath, null);
  assert.equal(config.api.token, 'a-token-of-32-characters-0123456');
  assert.equal(config.github.apiUrl, 'https://ghe.example.com/api/v3');
  assert.deepEqual(loaded.overrides, [
    'HEARTH_SERVER_PORT',
    'HEARTH_SERVER_ALLOW_WEBHOOKS',
    'HEARTH_API_TOKEN',
    'HEARTH_RUNNERS_NETWORK',
    'HEARTH_GITHUB_API_URL',
    'HEARTH_GITHUB_WEBHOOK_SECRET',
    'HEARTH_GITHUB_APP_PRIVATE_KEY_PATH',
  ]);

  const notANumber = configError(null, { HEARTH_SERVER_PORT: '80.5' });
  assert.equal(notANumber.context.source, 'HEARTH_SERVER_PORT');
  assert.equal(notANumber.context.key, 'server.port');
  assert.match(notANumber.fix, /^set HEARTH_SERVER_PORT to a whole number from 0 to 65535/);
  assert.match(configError(null, { HEARTH_RUNNERS_NETWORK: 'maybe' }).message, /runners\.network must be true or false/);
});

test('every key has its own environment variable', () => {
  const names = [...SERVE_CONFIG_ENV.values()];
  assert.equal(new Set(names).size, names.length);
  for (const name of [
    'HEARTH_SERVER_PORT',
    'HEARTH_STORE_URL',
    'HEARTH_API_TOKEN',
    'HEARTH_GITLAB_WEBHOOK_TOKEN',
    'HEARTH_GITLAB_URL',
    'HEARTH_SERVER_TLS_CERT_PATH',
  ])
    assert.ok(names.includes(name), name);
});

test('an unknown key names itself, its line and the valid keys of its section', () => {
  const error = configError('server:\n  host: 0.0.0.0\n  prot: 8080\n');
  assert.equal(error.context.key, 'server.prot');
  assert.match(error.message, /server\.prot is not a known key \(line 3\)/);
  assert.match(error.fix, /did you mean server\.port\?/);
  assert.match(error.fix, /host, port, bodyLimitBytes, rateLimitPerMinute, tls, allow/);
  assert.equal(configError('sever:\n  port: 1\n').context.key, 'sever');
});

test('a HEARTH_ variable that looks like config but matches no key is an error naming the nearest', () => {
  const error = configError(null, { HEARTH_GITHUB_WEBHOOK_SECRETS: 'x' });
  assert.equal(error.context.source, 'HEARTH_GITHUB_WEBHOOK_SECRETS');
  assert.match(error.fix, /did you mean HEARTH_GITHUB_WEBHOOK_SECRET\?/);
  // Variables read elsewhere are left alone.
  assert.doesNotThrow(() => load(null, { HEARTH_DATA_DIR: '/x', HEARTH_ACCEL: 'tcg', HEARTH_KERNEL_DEB: '/k.deb', HEARTH_QEMU: 'qemu' }));
});

test('a bad port says what is wrong and what to write instead', () => {
  const outside = configError('server:\n  port: 70000\n');
  assert.equal(outside.context.key, 'server.port');
  assert.match(outside.message, /server\.port is 70000, outside 0 to 65535 \(line 2\)/);
  assert.equal(outside.fix, 'set server.port to a whole number from 0 to 65535, e.g. 8080');
  assert.match(configError('server:\n  port: "8080"\n').message, /must be a whole number, got "8080"/);
});

test('allow lists accept IPv4 and IPv6 CIDRs only', () => {
  const error = configError('server:\n  allow:\n    api: [10.0.0.0/8, 10.0.0.0/33]\n');
  assert.equal(error.context.key, 'server.allow.api');
  assert.match(error.message, /"10\.0\.0\.0\/33", whose prefix length must be 0 to 32/);
  assert.match(configError('server:\n  allow:\n    metrics: [localhost]\n').message, /not an IPv4 or IPv6 CIDR/);
  assert.match(configError(null, { HEARTH_SERVER_ALLOW_API: '::1/129' }).message, /0 to 128 for IPv6/);
});

test('tls needs both files, and they must exist', () => {
  const half = configError(`server:\n  tls:\n    certPath: ${keyFile}\n`);
  assert.equal(half.context.key, 'server.tls.keyPath');
  assert.match(half.fix, /set both server\.tls\.keyPath and server\.tls\.certPath/);
  const missing = configError(`server:\n  tls:\n    certPath: ${keyFile}\n    keyPath: ${join(dir, 'nope.pem')}\n`);
  assert.equal(missing.context.key, 'server.tls.keyPath');
  assert.match(missing.message, /does not exist/);
  assert.deepEqual(load(`server:\n  tls:\n    certPath: ${keyFile}\n    keyPath: ${keyFile}\n`).config.server.tls, { certPath: keyFile, keyPath: keyFile });
});

test('a GitHub App needs all three settings and a PEM key', () => {
  const partial = configError('github:\n  app:\n    id: 123\n');
  assert.equal(partial.context.key, 'github.app.privateKeyPath');
  assert.match(partial.fix, /missing: github\.app\.privateKeyPath, github\.app\.installationId/);
  const notPem = join(dir, 'not-a-key.txt');
  writeFileSync(notPem, 'hello\n');
  assert.match(
    configError(`github:\n  app:\n    id: 1\n    privateKeyPath: ${notPem}\n    installationId: 2\n`).message,
    /does not look like a PEM private key/,
  );
});

test('repositories or projects without credentials are errors naming the missing token', () => {
  const github = configError('github:\n  repos: [octo-org/app]\n');
  assert.equal(github.context.key, 'github.token');
  assert.match(github.fix, /github\.token \(or HEARTH_GITHUB_TOKEN\).*or configure github\.app/);
  assert.equal(configError('github:\n  orgs: [octo-org]\n').context.key, 'github.token');
  assert.match(configError('github:\n  repos: [not-a-repo]\n').message, /not in the form owner\/repo/);
  const gitlab = configError(null, { HEARTH_GITLAB_GROUPS: '56' });
  assert.equal(gitlab.context.key, 'gitlab.token');
  assert.equal(gitlab.context.source, 'HEARTH_GITLAB_GROUPS');
  assert.match(configError('gitlab:\n  token: t\n  projects: [group/project]\n').message, /not a numeric id/);
});

test('secrets are redacted when set and never echoed in errors', () => {
  const config = load(`
api:
  token: api-token-0123456789
github:
  webhookSecret: [gh-secret-1, gh-secret-2]
  token: github_pat_secret
gitlab:
  webhookToken: gl-hook-secret
  signingSecret: [whsec_c2lnbmluZy1zZWNyZXQ=]
  token: glpat-secret
store:
  url: postgres://hearth:pg-password@db.internal:5432/hearth
`).config;
  const printed = JSON.stringify(redactedConfig(config));
  for (const secret of ['api-token-0123456789', 'gh-secret', 'github_pat_secret', 'gl-hook-secret', 'whsec_', 'glpat-secret', 'pg-password'])
    assert.ok(!printed.includes(secret), secret);
  const redacted = redactedConfig(config) as { github: { webhookSecret: string[] }; store: { url: string }; api: { token: string } };
  assert.deepEqual(redacted.github.webhookSecret, ['[redacted]', '[redacted]']);
  assert.equal(redacted.api.token, '[redacted]');
  assert.equal(redacted.store.url, 'postgres://hearth:[redacted]@db.internal:5432/hearth');
  assert.equal((redactedConfig(defaultServeConfig(paths)) as { api: { token: null } }).api.token, null);

  const short = configError(null, { HEARTH_API_TOKEN: 'tiny-secret' });
  assert.match(short.message, /api\.token is 11 characters long; it must be at least 16/);
  assert.ok(!short.message.includes('tiny-secret') && !short.fix.includes('tiny-secret'));
  assert.ok(!configError('gitlab:\n  signingSecret: [whsec_not base64!]\n').message.includes('not base64!'));
});

test('store.url takes a path, sqlite:PATH or a postgres URL', () => {
  assert.deepEqual(storeTarget('/var/lib/hearth/hearth.db'), { kind: 'sqlite', path: '/var/lib/hearth/hearth.db' });
  assert.deepEqual(storeTarget('sqlite:/var/lib/hearth/x.db'), { kind: 'sqlite', path: '/var/lib/hearth/x.db' });
  assert.deepEqual(storeTarget('sqlite:///var/lib/hearth/x.db'), { kind: 'sqlite', path: '/var/lib/hearth/x.db' });
  assert.deepEqual(storeTarget('postgresql://h@db/hearth'), { kind: 'postgres', url: 'postgresql://h@db/hearth' });
  const loaded = load('store:\n  url: postgres://hearth:pw@db.internal:5432/hearth\n');
  assert.ok(loaded.notes.includes('store: PostgreSQL at db.internal:5432/hearth'));
  assert.match(configError('store:\n  url: mysql://db/hearth\n').message, /scheme "mysql"/);
  assert.match(configError(null, { HEARTH_STORE_URL: 'hearth.db' }).message, /relative path/);
});

test('the example config in deploy/ is valid and shows every key', () => {
  const example = join(import.meta.dirname, '..', '..', 'deploy', 'hearth.example.yaml');
  assert.doesNotThrow(() => loadServeConfig({ path: example, env: {}, paths }));
  const text = readFileSync(example, 'utf8');
  for (const [key, name] of SERVE_CONFIG_ENV) {
    assert.match(text, new RegExp(`\\b${key.split('.').at(-1)}:`), key);
    if (/token|secret/i.test(key)) assert.ok(text.includes(name), name);
  }
});

/** The real CLI, with no HEARTH_* configuration leaking in from the test's own environment. */
function hearthConfigCheck(configPath: string) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('HEARTH_')));
  return spawnSync(process.execPath, [HEARTH_BIN, 'config', 'check', '--config', configPath], {
    env: { ...env, HEARTH_DATA_DIR: paths.data },
    encoding: 'utf8',
    timeout: 60_000,
  });
}

test('hearth config check prints the effective config without secrets, and exits 125 on a bad file', () => {
  const good = hearthConfigCheck(yamlFile('api:\n  token: do-not-print-this-token\nserver:\n  port: 9191\n'));
  assert.equal(good.status, 0, good.stderr);
  assert.match(good.stdout, /port: 9191/);
  assert.match(good.stdout, /token: "?\[redacted\]"?/);
  assert.ok(!good.stdout.includes('do-not-print-this-token'));

  const bad = hearthConfigCheck(yamlFile('runners:\n  maxCpu: 4\n'));
  assert.equal(bad.status, 125, bad.stdout);
  assert.match(bad.stderr, /HEARTH_ERR_CONFIG/);
  assert.match(bad.stderr, /runners\.maxCpu is not a known key/);
});

test('cluster roles other than all need a shared PostgreSQL store; the host timeout must outlast missed heartbeats', () => {
  assert.match(
    configError('cluster:\n  role: host\n').message,
    /cluster\.role is host, which shares the ledger with other processes, but store\.url is a SQLite file/,
  );
  assert.match(configError(null, { HEARTH_CLUSTER_ROLE: 'controller' }).fix, /set store\.url to a PostgreSQL URL/);
  const loaded = load('store:\n  url: postgres://hearth@db/hearth\ncluster:\n  role: host\n  hostId: vm-host-1\n  placement: spread\n');
  assert.deepEqual([loaded.config.cluster.role, loaded.config.cluster.hostId, loaded.config.cluster.placement], ['host', 'vm-host-1', 'spread']);
  assert.match(configError('cluster:\n  heartbeatSeconds: 10\n  hostTimeoutSeconds: 15\n').message, /must be more than twice cluster\.heartbeatSeconds/);
  assert.match(configError('cluster:\n  hostId: "bad host"\n').message, /not a host id/);
});
