import { HearthError } from '../../errors.ts';

/**
 * What a Firecracker guest may learn about its job from MMDS: names and
 * values of facts such as the repository, the workflow or the job id.
 */
export type JobMetadata = Readonly<Record<string, string>>;

/**
 * MMDS is readable by any process in the guest, including the job's own code,
 * and is not access-controlled per process: it is for facts, never for
 * credentials. These catch the obvious mistakes, by name or by the shape of
 * the tokens Hearth itself handles (GitHub and GitLab).
 */
const SECRET_NAME = /secret|token|passw(or)?d|credential|private[-_]?key|api[-_]?key/i;
const SECRET_VALUE = /^(gh[pousr]_|github_pat_|glpat-|glrt-|gldt-|-----BEGIN)/;

/** Refuses job metadata that is not a plain string or looks like a secret. */
export function checkJobMetadata(metadata: JobMetadata): void {
  for (const [name, value] of Object.entries(metadata)) {
    if (SECRET_NAME.test(name)) throw new HearthError('HEARTH_ERR_MMDS_SECRET', { name, why: 'its name says it is a credential' });
    if (typeof value !== 'string')
      throw new HearthError('HEARTH_ERR_BAD_OPTION', {
        option: `metadata.${name}`,
        reason: 'is not a string',
        hint: 'give job metadata as name=value strings',
      });
    if (SECRET_VALUE.test(value)) throw new HearthError('HEARTH_ERR_MMDS_SECRET', { name, why: 'its value has the shape of a token or key' });
  }
}

/** The MMDS data store for a VM: `/hearth/vm_id` and `/hearth/job/<name>`. */
export function mmdsContents(vmId: string, metadata: JobMetadata): { hearth: { vm_id: string; job: Record<string, string> } } {
  checkJobMetadata(metadata);
  return { hearth: { vm_id: vmId, job: { ...metadata } } };
}
