import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { appJwt, GithubAuth } from '../../src/forge/github/auth.ts';
import { GithubForge } from '../../src/forge/github/client.ts';
import { createLogger } from '../../src/log.ts';
import { ForgeSimulator } from '../support/forge-sim/index.ts';
import { REPO, SECRETS } from '../support/serve-host.ts';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
let dir: string;
let sim: ForgeSimulator;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hearth-app-'));
  await writeFile(join(dir, 'app.pem'), privateKey.export({ type: 'pkcs1', format: 'pem' }));
  sim = await ForgeSimulator.start({
    ...SECRETS,
    githubAppId: '4242',
    githubAppPublicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    githubInstallationId: '777',
  });
});
after(async () => {
  await sim.close();
  await rm(dir, { recursive: true, force: true });
});

test('a GitHub App signs an RS256 JWT, gets an installation token once and reuses it', async () => {
  const auth = GithubAuth.fromConfig(sim.githubApiUrl, null, { id: '4242', privateKeyPath: join(dir, 'app.pem'), installationId: '777' });
  const forge = new GithubForge({
    apiUrl: sim.githubApiUrl,
    auth,
    repos: [REPO],
    orgs: [],
    runnerGroupId: 1,
    runnerCommand: 'run.sh',
    logger: createLogger({ level: 'silent' }),
  });
  await forge.listRunners();
  await forge.listRunners();
  const tokenCalls = sim.apiLog.filter((e) => e.path === '/app/installations/777/access_tokens');
  assert.deepEqual(
    tokenCalls.map((c) => c.status),
    [201],
    'one installation token for both calls',
  );
  assert.ok(sim.apiLog.filter((e) => e.path.endsWith('/actions/runners')).every((e) => e.status === 200));
});

test('the JWT claims: issued a minute back for clock skew, expiring within ten minutes, issuer the app', () => {
  const jwt = appJwt('4242', privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(), 1_000_000);
  const [header, payload] = jwt
    .split('.')
    .slice(0, 2)
    .map((p) => JSON.parse(Buffer.from(p!, 'base64url').toString('utf8')) as Record<string, unknown>);
  assert.deepEqual(header, { alg: 'RS256', typ: 'JWT' });
  assert.deepEqual(payload, { iat: 999_940, exp: 1_000_540, iss: '4242' });
});

test('a wrong key is refused by the forge with a fix that names the app settings', async () => {
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  await writeFile(join(dir, 'wrong.pem'), other.export({ type: 'pkcs1', format: 'pem' }));
  const auth = GithubAuth.fromConfig(sim.githubApiUrl, null, { id: '4242', privateKeyPath: join(dir, 'wrong.pem'), installationId: '777' });
  await assert.rejects(
    auth.headers(),
    (error: Error & { code?: string; fix?: string }) => error.code === 'HEARTH_ERR_FORGE_API' && /github\.app/.test(error.fix ?? ''),
  );
});
