import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { HearthError, isHearthError } from '../errors.ts';
import { readImageById, type Image } from '../image/store.ts';
import { freshIdentity, type AgentVm } from './agent-vm.ts';
import type { SnapshotInfo } from './driver.ts';
import { readSnapshot, snapshotDir, snapshotExists, snapshotInfo, snapshotsDir, validateSnapshotName, type SnapshotManifest } from './snapshots.ts';

/**
 * The snapshot and restore flow every snapshotting driver shares, as a list of
 * named steps (as firecracker-go-sdk lists its handlers). A driver gives only
 * what its VMM does differently: how to save a running VM into a directory and
 * let it run on, and how to start a clone from what was saved.
 *
 * Taking a snapshot, in order:
 *  1. check-name        the name is valid and not taken
 *  2. check-vm          the VM is ready, has no source disk, and the driver has no objection (`refuse`)
 *  3. stage             a staging directory beside the snapshots, so a half-written one is never listed
 *  4. save              the VMM writes state, memory and disk into it (driver)
 *  5. write-manifest    snapshot.json: what a restore must reproduce
 *  6. publish           the staging directory is renamed into place, atomically
 *  7. resume            the source VM runs on (driver)
 *  8. fresh-identity    the source gets an identity apart from its future clones
 * A failure after `stage` removes the staging directory and resumes the VM.
 */
export const SNAPSHOT_STEPS = ['check-name', 'check-vm', 'stage', 'save', 'write-manifest', 'publish', 'resume', 'fresh-identity'] as const;
export type SnapshotStep = (typeof SNAPSHOT_STEPS)[number];

/** What the VMM wrote in `save`: the manifest fields only it knows. */
export interface SavedVmState {
  readonly stateFile: string;
  /** The root disk as it was when the memory was saved, if the VM has one. */
  readonly diskFile?: string;
  readonly sizeBytes: number;
  readonly accel: 'kvm' | 'tcg';
  readonly vmmVersion: string;
}

export interface SnapshotVmm {
  /** A reason this VM cannot be snapshotted (state and hint for HEARTH_ERR_VM_STATE), checked before anything is written. */
  refuse?(): Promise<{ readonly state: string; readonly hint: string } | undefined>;
  /** Writes the VM's state into `staging` (leaving it paused or running, as the VMM does). */
  save(staging: string): Promise<SavedVmState>;
  /** Lets the source VM run on; called after a snapshot and after a failed one. */
  resume(): Promise<void>;
}

export interface TakeSnapshot {
  readonly dataDir: string;
  readonly driver: string;
  /** The image build the VM runs (from its registry entry), recorded so a restore finds the same one. */
  readonly imageId: string;
  readonly live: AgentVm;
  readonly name: string;
  readonly vmm: SnapshotVmm;
}

/** Runs the snapshot steps for one VM; failures are HEARTH_ERR_SNAPSHOT_FAILED naming the step, unless already a HearthError. */
export async function takeSnapshot(request: TakeSnapshot): Promise<SnapshotInfo> {
  const { dataDir, live, name, vmm } = request;
  const vmId = live.vm.id;
  // check-name
  validateSnapshotName(name);
  // check-vm
  if (live.vm.spec.source)
    throw new HearthError('HEARTH_ERR_VM_STATE', {
      vmId,
      action: 'be snapshotted',
      state: 'attached to a source disk',
      hint: 'snapshot a VM booted without --source; give the source to the clones instead',
    });
  const refused = await vmm.refuse?.();
  if (refused) throw new HearthError('HEARTH_ERR_VM_STATE', { vmId, action: 'be snapshotted', ...refused });
  if (await snapshotExists(dataDir, name)) throw new HearthError('HEARTH_ERR_SNAPSHOT_EXISTS', { name });
  // stage
  await mkdir(snapshotsDir(dataDir), { recursive: true });
  const staging = join(snapshotsDir(dataDir), `.${name}.${process.pid}.${Date.now()}`);
  await mkdir(staging);
  live.vm.state = 'snapshotting';
  const started = performance.now();
  let step: SnapshotStep = 'save';
  try {
    const saved = await vmm.save(staging);
    step = 'write-manifest';
    const manifest: SnapshotManifest = {
      name,
      driver: request.driver,
      imageId: request.imageId,
      spec: live.vm.spec,
      accel: saved.accel,
      vmmVersion: saved.vmmVersion,
      stateFile: saved.stateFile,
      ...(saved.diskFile ? { diskFile: saved.diskFile } : {}),
      sizeBytes: saved.sizeBytes,
      createdAt: new Date().toISOString(),
    };
    await writeFile(join(staging, 'snapshot.json'), JSON.stringify(manifest, null, 2) + '\n');
    step = 'publish';
    await rename(staging, snapshotDir(dataDir, name));
    step = 'resume';
    await vmm.resume();
    live.vm.state = 'ready';
    step = 'fresh-identity';
    await live.channel?.setIdentity(freshIdentity(vmId));
    live.log.info({ snapshot: name, sizeBytes: manifest.sizeBytes, ms: Math.round(performance.now() - started) }, 'snapshot written');
    return snapshotInfo(manifest);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    if (step !== 'fresh-identity') {
      await vmm.resume().catch((resumeError: unknown) => live.log.error({ err: resumeError, step }, 'resuming the VM after its failed snapshot failed'));
    }
    if (live.vm.state === 'snapshotting') live.vm.state = 'ready';
    if (isHearthError(error)) throw error;
    throw new HearthError('HEARTH_ERR_SNAPSHOT_FAILED', { vmId, reason: `${step}: ${(error as Error).message}`, dir: snapshotsDir(dataDir) }, { cause: error });
  }
}

/** A snapshot read back for a restore: its manifest, directory and state file. */
export type LoadedSnapshot = SnapshotManifest & { dir: string; statePath: string };

/**
 * The restore steps every driver shares before its VMM starts the clone:
 *  1. read-manifest   snapshot.json, or HEARTH_ERR_SNAPSHOT_NOT_FOUND
 *  2. check-driver    taken by this driver
 *  3. check-network   `network`, when the caller asks, is what the driver can give the clone (driver's rule)
 *  4. find-image      the image build it was taken from is still in the cache
 * Anything that makes the snapshot unusable is HEARTH_ERR_SNAPSHOT_STALE with the reason.
 */
export async function loadSnapshotForRestore(request: {
  readonly dataDir: string;
  readonly cacheDir: string;
  readonly driver: string;
  readonly name: string;
  /** The driver's objection to restoring this snapshot (e.g. a network device it cannot add), if any. */
  readonly check?: (snapshot: LoadedSnapshot) => string | undefined;
}): Promise<{ snapshot: LoadedSnapshot; image: Image }> {
  const snapshot = await readSnapshot(request.dataDir, request.name);
  const stale = (reason: string): HearthError => new HearthError('HEARTH_ERR_SNAPSHOT_STALE', { name: request.name, reason });
  if (snapshot.driver !== request.driver) throw stale(`it was taken by the ${snapshot.driver} driver`);
  const objection = request.check?.(snapshot);
  if (objection) throw stale(objection);
  try {
    return { snapshot, image: await readImageById(request.cacheDir, snapshot.imageId) };
  } catch {
    throw stale(`its image build ${snapshot.imageId} is no longer in the cache`);
  }
}
