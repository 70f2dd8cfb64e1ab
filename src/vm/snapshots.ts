import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { HearthError } from '../errors.ts';
import type { SnapshotInfo, VmSpec } from './driver.ts';

/**
 * Snapshots live in <data>/snapshots/<name>/: the VMM's saved state plus
 * snapshot.json, which records everything a restore must reproduce (the image
 * build, vCPUs, memory, devices, accelerator, VMM version).
 */
export interface SnapshotManifest {
  readonly name: string;
  readonly driver: string;
  readonly imageId: string;
  readonly spec: VmSpec;
  readonly accel: 'kvm' | 'tcg';
  readonly vmmVersion: string;
  readonly stateFile: string;
  /** Rootfs images: the root disk overlay as it was when the memory was saved. */
  readonly diskFile?: string;
  readonly sizeBytes: number;
  readonly createdAt: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function validateSnapshotName(name: string): void {
  if (!NAME.test(name)) {
    throw new HearthError('HEARTH_ERR_BAD_OPTION', {
      option: `snapshot name "${name}"`,
      reason: 'must be 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit',
      hint: 'pick a name like ci-base or node20',
    });
  }
}

export function snapshotsDir(dataDir: string): string {
  return join(dataDir, 'snapshots');
}

export function snapshotDir(dataDir: string, name: string): string {
  return join(snapshotsDir(dataDir), name);
}

export async function readSnapshot(dataDir: string, name: string): Promise<SnapshotManifest & { dir: string; statePath: string }> {
  validateSnapshotName(name);
  const dir = snapshotDir(dataDir, name);
  let manifest: SnapshotManifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, 'snapshot.json'), 'utf8')) as SnapshotManifest;
  } catch {
    throw new HearthError('HEARTH_ERR_SNAPSHOT_NOT_FOUND', { name });
  }
  return { ...manifest, dir, statePath: join(dir, manifest.stateFile) };
}

export async function snapshotExists(dataDir: string, name: string): Promise<boolean> {
  try {
    await stat(join(snapshotDir(dataDir, name), 'snapshot.json'));
    return true;
  } catch {
    return false;
  }
}

export async function listSnapshots(dataDir: string): Promise<SnapshotManifest[]> {
  let names: string[];
  try {
    names = (await readdir(snapshotsDir(dataDir))).filter((n) => !n.startsWith('.'));
  } catch {
    return [];
  }
  const found: SnapshotManifest[] = [];
  for (const name of names.sort()) {
    try {
      found.push(await readSnapshot(dataDir, name));
    } catch {
      // half-written or foreign directory: not a snapshot
    }
  }
  return found;
}

export async function removeSnapshot(dataDir: string, name: string): Promise<void> {
  await readSnapshot(dataDir, name);
  await rm(snapshotDir(dataDir, name), { recursive: true, force: true });
}

export function snapshotInfo(manifest: SnapshotManifest): SnapshotInfo {
  return { name: manifest.name, sizeBytes: manifest.sizeBytes, createdAt: manifest.createdAt };
}
