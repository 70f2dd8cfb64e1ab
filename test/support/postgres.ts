import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { waitFor } from './wait.ts';
import { freePort } from './net.ts';

/**
 * A throw-away PostgreSQL server from Debian's package (`postgresql`, which
 * `npm test` installs as root): its own data directory and port, trust auth on
 * 127.0.0.1 only, gone when stopped. Root cannot run postgres, so as root the
 * server runs as the package's `postgres` user.
 */
export interface PostgresServer {
  readonly port: number;
  /** A connection URL for `database` (default: postgres). */
  url(database?: string): string;
  createDatabase(name: string): Promise<string>;
  /** A fast shutdown (SIGINT), then a start on the same data: acknowledged commits must survive. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const USER = 'hearth';

function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, 'bin', 'postgres'))) : [];
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  if (!newest) {
    throw new Error(
      "PostgreSQL's server binaries are not installed (no /usr/lib/postgresql/<version>/bin/postgres): run `npm test` as root, which installs Debian's postgresql package, or run `sudo apt-get install -y postgresql` first",
    );
  }
  return join(root, newest, 'bin');
}

const asRoot = process.getuid?.() === 0;

/** Spawn options that run a program as the server's owner: `postgres` when we are root. */
function owner(cwd: string): { uid?: number; gid?: number; cwd: string } {
  return asRoot ? { uid: uidOf('postgres'), gid: gidOf('postgres'), cwd } : { cwd };
}

function run(cmd: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { ...owner(cwd), stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.once('error', reject);
    proc.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${code}: ${stderr.slice(-2000)}`))));
  });
}

export async function startPostgres(): Promise<PostgresServer> {
  const bin = binDir();
  const dir = await mkdtemp(join(tmpdir(), 'hearth-pg-'));
  const data = join(dir, 'data');
  const sockets = join(dir, 'run');
  await mkdir(sockets);
  if (asRoot) {
    await chown(dir, uidOf('postgres'), gidOf('postgres'));
    await chown(sockets, uidOf('postgres'), gidOf('postgres'));
  }
  await run(join(bin, 'initdb'), ['-D', data, '-U', USER, '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions'], dir);
  const port = await freePort();
  let child: ChildProcess | undefined;
  const settings = [
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    `unix_socket_directories=${sockets}`,
    '-c',
    'max_connections=300',
    '-c',
    'shared_buffers=64MB',
    '-c',
    'fsync=off',
    '-c',
    'full_page_writes=off',
  ];

  const start = async (): Promise<void> => {
    const proc = spawn(join(bin, 'postgres'), ['-D', data, '-p', String(port), ...settings], { ...owner(dir), stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    let lastError = '';
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`PostgreSQL exited with ${proc.exitCode} while starting on port ${port}: ${stderr}`);
        const client = new pg.Client({ host: '127.0.0.1', port, user: USER, database: 'postgres' });
        try {
          await client.connect();
          return true;
        } catch (error) {
          lastError = (error as Error).message;
          return false;
        } finally {
          // A client that never connected has nothing to end; a failure here only means that.
          await client.end().catch((error: unknown) => (lastError ||= `closing the probe connection: ${(error as Error).message}`));
        }
      },
      { what: `PostgreSQL to accept connections on port ${port}`, timeout: 30_000, interval: 100, detail: () => `last error: ${lastError}\n${stderr}` },
    );
  };

  const stopServer = async (): Promise<void> => {
    const proc = child;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    // SIGINT is postgres's fast shutdown: clients are disconnected, commits are on disk.
    proc.kill('SIGINT');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
  };

  const onExit = (): void => {
    child?.kill('SIGKILL');
  };
  process.once('exit', onExit);
  await start();
  return {
    port,
    url: (database = 'postgres') => `postgres://${USER}@127.0.0.1:${port}/${database}`,
    async createDatabase(name: string) {
      const client = new pg.Client({ host: '127.0.0.1', port, user: USER, database: 'postgres' });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`);
      } finally {
        await client.end();
      }
      return `postgres://${USER}@127.0.0.1:${port}/${name}`;
    },
    async restart() {
      await stopServer();
      await start();
    },
    async stop() {
      process.removeListener('exit', onExit);
      await stopServer();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function idOf(flag: '-u' | '-g', name: string): number {
  const result = spawnSyncText('id', [flag, name]);
  const id = Number(result.trim());
  if (!Number.isInteger(id)) throw new Error(`no ${name} user: install Debian's postgresql package (it creates the user)`);
  return id;
}

const uidOf = (name: string): number => idOf('-u', name);
const gidOf = (name: string): number => idOf('-g', name);

function spawnSyncText(cmd: string, args: string[]): string {
  return spawnSync(cmd, args, { encoding: 'utf8' }).stdout ?? '';
}
