import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { resolvePaths, type HearthPaths } from '../../src/config/paths.ts';
import { createLogger } from '../../src/log.ts';
import { QemuDriver } from '../../src/vm/qemu/driver.ts';

/**
 * Each test gets its own data and runtime directories (so registries and
 * snapshots never mix) but shares the image cache, which `npm test` built once.
 */
export interface TestHost {
  readonly paths: HearthPaths;
  readonly driver: QemuDriver;
  /** Every log line the driver wrote, for checks that secrets stay out of logs. */
  readonly logLines: string[];
  readonly env: NodeJS.ProcessEnv;
  cleanup(): Promise<void>;
}

export async function createTestHost(): Promise<TestHost> {
  const root = await mkdtemp(join(tmpdir(), 'hearth-test-'));
  const paths: HearthPaths = { cache: resolvePaths().cache, data: join(root, 'data'), runtime: join(root, 'run') };
  const logLines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      callback();
    },
  });
  const driver = new QemuDriver({ paths, logger: createLogger({ level: 'debug', destination }), accel: process.env.HEARTH_ACCEL });
  const env = { ...process.env, HEARTH_CACHE_DIR: paths.cache, HEARTH_DATA_DIR: paths.data, HEARTH_RUNTIME_DIR: paths.runtime };
  return {
    paths,
    driver,
    logLines,
    env,
    async cleanup() {
      await driver.destroyAll();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Collects a command's output as buffers, keeping stdout and stderr apart. */
export function captureOutput(): {
  stdout: Buffer[];
  stderr: Buffer[];
  sink: { stdout(b: Buffer): void; stderr(b: Buffer): void };
  text(): { stdout: string; stderr: string };
} {
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  return {
    stdout,
    stderr,
    sink: { stdout: (b) => stdout.push(Buffer.from(b)), stderr: (b) => stderr.push(Buffer.from(b)) },
    text: () => ({ stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') }),
  };
}

/** True when any process on the host has `needle` in its command line. */
export async function processListContains(needle: string): Promise<boolean> {
  const { readdir, readFile } = await import('node:fs/promises');
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if ((await readFile(`/proc/${pid}/cmdline`, 'utf8')).includes(needle)) return true;
    } catch {
      // exited meanwhile
    }
  }
  return false;
}

/** The `hearth` command for tests to spawn: bin/hearth.mjs (the compiled CLI), rebuilding dist/ first when src/ is newer. */
export const HEARTH_BIN = join(import.meta.dirname, 'hearth-cli.mjs');
