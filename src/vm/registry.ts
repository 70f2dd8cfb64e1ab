import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VmRecord } from './driver.ts';

/**
 * Live VMs on disk: <runtime>/vms/<id>/vm.json, next to the VM's sockets,
 * overlay and logs. A process that was killed with -9 leaves its entries
 * behind; a later process finds them here and destroys them (`hearth vm gc`).
 * Processes are identified by pid *and* start time, so a recycled pid is
 * never mistaken for the original.
 */
export interface RegistryEntry {
  readonly id: string;
  readonly driver: string;
  pid: number;
  pidStart: string;
  readonly ownerPid: number;
  readonly ownerStart: string;
  readonly image: string;
  readonly cpus: number;
  readonly memoryMib: number;
  readonly network: boolean;
  readonly accel: 'kvm' | 'tcg';
  readonly createdAt: string;
}

/** The registry entry of a VM this process is starting: no VMM pid yet, owned by this process. */
export function newRegistryEntry(vm: Pick<RegistryEntry, 'id' | 'driver' | 'image' | 'cpus' | 'memoryMib' | 'network' | 'accel'>): RegistryEntry {
  return { ...vm, pid: 0, pidStart: '', ownerPid: process.pid, ownerStart: processStartTime(process.pid) ?? '', createdAt: new Date().toISOString() };
}

/** Field 22 of /proc/PID/stat (start time in clock ticks), or undefined if the process is gone or a zombie. */
export function processStartTime(pid: number): string | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces and parentheses: fields start after the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

export function isSameProcess(pid: number, start: string): boolean {
  return processStartTime(pid) === start;
}

export class VmRegistry {
  constructor(readonly root: string) {}

  get vmsDir(): string {
    return join(this.root, 'vms');
  }

  dirOf(id: string): string {
    return join(this.vmsDir, id);
  }

  /** Creates the VM's runtime directory (mode 0700: it holds the agent socket). */
  async create(id: string): Promise<string> {
    const dir = this.dirOf(id);
    await mkdir(this.vmsDir, { recursive: true, mode: 0o700 });
    await mkdir(dir, { mode: 0o700 });
    return dir;
  }

  async write(entry: RegistryEntry): Promise<void> {
    const path = join(this.dirOf(entry.id), 'vm.json');
    await writeFile(`${path}.tmp`, JSON.stringify(entry, null, 2) + '\n');
    await rename(`${path}.tmp`, path);
  }

  async read(id: string): Promise<RegistryEntry | undefined> {
    try {
      return JSON.parse(await readFile(join(this.dirOf(id), 'vm.json'), 'utf8')) as RegistryEntry;
    } catch {
      return undefined;
    }
  }

  async remove(id: string): Promise<void> {
    await rm(this.dirOf(id), { recursive: true, force: true });
  }

  async ids(): Promise<string[]> {
    try {
      return (await readdir(this.vmsDir)).filter((name) => !name.startsWith('.'));
    } catch {
      return [];
    }
  }

  async list(): Promise<VmRecord[]> {
    const records: VmRecord[] = [];
    for (const id of await this.ids()) {
      const entry = await this.read(id);
      const runtimeDir = this.dirOf(id);
      if (!entry) {
        // A directory without vm.json: a boot that died before registering.
        records.push({
          id,
          driver: 'unknown',
          pid: 0,
          ownerPid: 0,
          image: '?',
          cpus: 0,
          memoryMib: 0,
          network: false,
          accel: 'tcg',
          createdAt: '',
          runtimeDir,
          alive: false,
          leaked: true,
        });
        continue;
      }
      const { pidStart: _p, ownerStart: _o, ...rest } = entry;
      records.push({
        ...rest,
        runtimeDir,
        alive: isSameProcess(entry.pid, entry.pidStart),
        leaked: !isSameProcess(entry.ownerPid, entry.ownerStart),
      });
    }
    return records.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }
}
