// One Hearth replica as its own process, for scale-out tests (test/support/cluster.ts
// starts it): `node --import tsx test/support/replica-main.ts` with the whole config
// as JSON in $HEARTH_REPLICA. Prints one line on stdout once it listens,
// `{"ready":true,"url":…,"pid":…}`, logs pino JSON on stderr, and closes
// cleanly on SIGTERM or SIGINT (a second signal exits at once).
import { defaultServeConfig, type ServeConfig } from '../../src/config/serve-config.ts';
import { resolvePaths } from '../../src/config/paths.ts';
import { createLogger } from '../../src/log.ts';
import { startHearthService } from '../../src/server/service.ts';
import type { ReplicaConfig } from './cluster.ts';
import { FakeDriver } from './fake-driver.ts';

type Plain = Record<string, unknown>;

function isPlain(value: unknown): value is Plain {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `over` on top of `base`, object by object; arrays and scalars are replaced whole. */
function merge(base: Plain, over: Plain): Plain {
  const out: Plain = { ...base };
  for (const [key, value] of Object.entries(over)) out[key] = isPlain(value) && isPlain(base[key]) ? merge(base[key], value) : value;
  return out;
}

function readConfig(): ReplicaConfig {
  const text = process.env.HEARTH_REPLICA;
  if (!text) throw new Error('HEARTH_REPLICA is not set: it holds the replica config as JSON (see test/support/cluster.ts)');
  const parsed: unknown = JSON.parse(text);
  if (!isPlain(parsed)) throw new Error('HEARTH_REPLICA is not a JSON object');
  return parsed as unknown as ReplicaConfig;
}

async function main(): Promise<void> {
  const { fakeDriver, paths: given, capacity, name, ...serve } = readConfig();
  const paths = given ?? resolvePaths();
  // Keys the JSON leaves out keep their defaults, so a config written before a key existed still starts.
  const config = merge(defaultServeConfig(paths) as unknown as Plain, serve as unknown as Plain) as unknown as ServeConfig;
  const logger = createLogger({ level: config.log.level }).child({ replica: name ?? `pid-${process.pid}` });
  const driver = fakeDriver
    ? new FakeDriver({
        runtimeDir: paths.runtime,
        rewriteUrl: (url) => (url.startsWith(fakeDriver.rewriteFrom) ? `${fakeDriver.rewriteTo}${url.slice(fakeDriver.rewriteFrom.length)}` : url),
        logger: logger.child({ component: 'fake-driver' }),
        ...(fakeDriver.bootDelayMs !== undefined ? { bootDelayMs: fakeDriver.bootDelayMs } : {}),
        ...(fakeDriver.pollIntervalMs !== undefined ? { pollIntervalMs: fakeDriver.pollIntervalMs } : {}),
      })
    : undefined;

  const service = await startHearthService({ config, paths, logger, capacity, driver });
  logger.info({ url: service.url, choices: service.choices }, 'replica listening');
  process.stdout.write(`${JSON.stringify({ ready: true, url: service.url, pid: process.pid })}\n`);

  const stop = (signal: NodeJS.Signals): void => {
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
    process.once('SIGINT', () => process.exit(130));
    process.once('SIGTERM', () => process.exit(143));
    logger.info({ signal }, 'stopping');
    service.close(`received ${signal}`).then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`replica failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
