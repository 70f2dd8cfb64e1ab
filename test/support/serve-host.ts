import { mkdtemp, rm, writeFile, copyFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { defaultServeConfig, type ServeConfig } from '../../src/config/serve-config.ts';
import { resolvePaths, type HearthPaths } from '../../src/config/paths.ts';
import { addRunnersToImage } from '../../src/image/runner-payload.ts';
import { loadImage } from '../../src/image/store.ts';
import { GithubAuth } from '../../src/forge/github/auth.ts';
import { GithubForge, type GithubForgeOptions } from '../../src/forge/github/client.ts';
import { GitlabForge, type GitlabForgeOptions } from '../../src/forge/gitlab/client.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { startHearthService, type HearthService } from '../../src/server/service.ts';
import { runProgram } from '../../src/system/run.ts';
import { ForgeSimulator, GITHUB_RUNNER_STAND_IN, GITLAB_RUNNER_STAND_IN } from './forge-sim/index.ts';

export const SECRETS = {
  githubWebhookSecret: 'gh-webhook-secret-for-tests',
  gitlabWebhookToken: 'gl-webhook-token-for-tests',
  githubToken: 'github_pat_TESTONLY0123456789',
  gitlabToken: 'glpat-TESTONLY0123456789',
  apiToken: 'api-token-for-tests-0123456789',
};

export const REPO = 'octo-org/hello-world';
export const PROJECT = 4242;
/** Labels of a job Hearth owns, sized for the minimal image. */
/** A GitHub client of the simulator's API for REPO, with the test token; `change` overrides options. */
export function simGithubForge(sim: ForgeSimulator, logger: Logger, change: Partial<GithubForgeOptions> = {}): GithubForge {
  return new GithubForge({
    apiUrl: sim.githubApiUrl,
    auth: GithubAuth.fromConfig(sim.githubApiUrl, SECRETS.githubToken, { id: null, privateKeyPath: null, installationId: null }),
    repos: [REPO],
    orgs: [],
    runnerGroupId: 1,
    runnerCommand: '/opt/actions-runner/run.sh',
    logger,
    ...change,
  });
}

/** A GitLab client of the simulator's API for PROJECT, with the test token; `change` overrides options. */
export function simGitlabForge(sim: ForgeSimulator, logger: Logger, change: Partial<GitlabForgeOptions> = {}): GitlabForge {
  return new GitlabForge({
    url: sim.gitlabUrl,
    runnerUrl: sim.guestGitlabUrl,
    token: SECRETS.gitlabToken,
    projects: [String(PROJECT)],
    groups: [],
    runnerCommand: 'gitlab-runner',
    waitTimeoutSeconds: 10,
    logger,
    ...change,
  });
}

export const OWNED_LABELS = ['self-hosted', 'hearth', 'hearth-1cpu-512mb'];
export const STAND_IN_IMAGE = 'hearth-stand-ins';

/**
 * The test image: `minimal` plus the runner stand-ins, put in place exactly as
 * `hearth image build --github-runner/--gitlab-runner` puts the official runners.
 */
export async function ensureStandInImage(cacheDir: string = resolvePaths().cache): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'hearth-standin-'));
  try {
    await mkdir(join(work, 'runner'));
    await copyFile(GITHUB_RUNNER_STAND_IN, join(work, 'runner', 'run.sh'));
    // A byte-identical tarball every time: the image id hashes it, and test files running side
    // by side must not see the image change under them (a pool would rebuild its template).
    await runProgram('sh', [
      '-c',
      `tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C '${join(work, 'runner')}' -cf - . | gzip -n > '${join(work, 'runner.tar.gz')}'`,
    ]);
    await addRunnersToImage(
      cacheDir,
      await loadImage(cacheDir, 'minimal'),
      { githubRunner: join(work, 'runner.tar.gz'), gitlabRunner: GITLAB_RUNNER_STAND_IN },
      STAND_IN_IMAGE,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export function testServeConfig(paths: HearthPaths, sim: ForgeSimulator, change: (c: ServeConfig) => void = () => {}): ServeConfig {
  const config = defaultServeConfig(paths);
  config.server.host = '127.0.0.1';
  config.server.port = 0;
  config.server.rateLimitPerMinute = 0;
  config.store.url = join(paths.data, 'hearth.db');
  config.api.token = SECRETS.apiToken;
  config.driver.accel = process.env.HEARTH_ACCEL === 'kvm' ? 'kvm' : process.env.HEARTH_ACCEL === 'tcg' ? 'tcg' : 'auto';
  config.runners.image = STAND_IN_IMAGE;
  config.runners.bootTimeoutSeconds = 60;
  config.runners.jobTimeoutMinutes = 5;
  config.reconcile.intervalSeconds = 2;
  config.reconcile.stuckAfterSeconds = 120;
  config.github.apiUrl = sim.githubApiUrl;
  config.github.webhookSecret = [SECRETS.githubWebhookSecret];
  config.github.token = SECRETS.githubToken;
  config.github.repos = [REPO];
  config.gitlab.url = sim.gitlabUrl;
  config.gitlab.runnerUrl = sim.guestGitlabUrl;
  config.gitlab.webhookToken = SECRETS.gitlabWebhookToken;
  config.gitlab.token = SECRETS.gitlabToken;
  config.gitlab.projects = [String(PROJECT)];
  config.gitlab.waitTimeoutSeconds = 60;
  change(config);
  return config;
}

export interface ServeHarness {
  readonly sim: ForgeSimulator;
  readonly service: HearthService;
  readonly paths: HearthPaths;
  readonly logLines: string[];
  api<T>(path: string): Promise<T>;
  close(): Promise<void>;
}

/** A forge simulator and an in-process `hearth serve` wired to it, each in its own directories. */
export async function startServeHarness(options: { jobDurationMs?: number; seed?: number; change?: (c: ServeConfig) => void } = {}): Promise<ServeHarness> {
  const root = await mkdtemp(join(tmpdir(), 'hearth-serve-'));
  const paths: HearthPaths = { cache: resolvePaths().cache, data: join(root, 'data'), runtime: join(root, 'run') };
  const sim = await ForgeSimulator.start({ ...SECRETS, jobDurationMs: options.jobDurationMs ?? 300, seed: options.seed ?? 7 });
  const logLines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      callback();
    },
  });
  const config = testServeConfig(paths, sim, options.change);
  const service = await startHearthService({ config, paths, logger: createLogger({ level: 'debug', destination }), capacity: { cpus: 4, memoryMib: 4096 } });
  sim.setWebhookTargets({ github: `${service.url}/webhooks/github`, gitlab: `${service.url}/webhooks/gitlab` });
  return {
    sim,
    service,
    paths,
    logLines,
    async api<T>(path: string): Promise<T> {
      const response = await fetch(`${service.url}/api/v1${path}`, { headers: { authorization: `Bearer ${SECRETS.apiToken}` } });
      if (!response.ok) throw new Error(`API ${path}: ${response.status} ${await response.text()}`);
      return (await response.json()) as T;
    },
    async close() {
      await service.close('test finished');
      await sim.close();
      await writeFile(join(root, '.done'), '');
      await rm(root, { recursive: true, force: true });
    },
  };
}
