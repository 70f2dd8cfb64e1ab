import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';

/**
 * Resolves kernel modules and their dependencies into load order.
 * Debian's .deb ships no modules.dep, so dependencies come from each module's
 * own `.modinfo` strings (`depends=a,b`), the same source depmod reads.
 */
export interface ModuleFile {
  readonly name: string;
  /** Path relative to the modules directory, e.g. kernel/drivers/virtio/virtio.ko */
  readonly path: string;
}

async function indexModules(modulesDir: string): Promise<Map<string, string>> {
  const index = new Map<string, string>();
  const entries = await readdir(join(modulesDir, 'kernel'), { recursive: true, withFileTypes: true });
  for (const entry of entries) {
    if (!entry.isFile() || !entry.name.endsWith('.ko')) continue;
    const full = join(entry.parentPath, entry.name);
    index.set(entry.name.slice(0, -3).replaceAll('-', '_'), relative(modulesDir, full));
  }
  return index;
}

export function modinfoDepends(module: Buffer): string[] {
  const key = Buffer.from('\0depends=');
  const at = module.indexOf(key);
  if (at < 0) return [];
  const start = at + key.length;
  const end = module.indexOf(0, start);
  const value = module.subarray(start, end < 0 ? undefined : end).toString('utf8');
  return value ? value.split(',').map((d) => d.replaceAll('-', '_')) : [];
}

/** Returns `wanted` plus everything they depend on, dependencies first. */
export async function resolveModuleOrder(modulesDir: string, wanted: readonly string[]): Promise<ModuleFile[]> {
  const index = await indexModules(modulesDir);
  const order: ModuleFile[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = async (name: string, neededBy: string): Promise<void> => {
    const seen = state.get(name);
    if (seen === 'done') return;
    if (seen === 'visiting') throw new Error(`kernel module dependency cycle at ${name}`);
    const path = index.get(name);
    if (!path) throw new Error(`kernel module ${name} (needed by ${neededBy}) is not in ${modulesDir}; is this a linux-image-*-cloud-amd64 kernel?`);
    state.set(name, 'visiting');
    for (const dep of modinfoDepends(await readFile(join(modulesDir, path)))) await visit(dep, name);
    state.set(name, 'done');
    order.push({ name, path });
  };
  for (const name of wanted) await visit(name, 'the image');
  return order;
}
