import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HearthError } from '../errors.ts';
import { runProgram } from '../system/run.ts';

export const AGENT_SOURCE = join(dirname(fileURLToPath(import.meta.url)), '..', 'guest', 'agent', 'hearth-agent.c');

/**
 * Compiles the guest agent as a static binary, cached by the hash of its source
 * and the compiler's version, so images rebuild only when either changes.
 */
export async function buildGuestAgent(cacheDir: string): Promise<{ path: string; sha256: string }> {
  const source = await readFile(AGENT_SOURCE);
  let compiler: string;
  try {
    compiler = (await runProgram('cc', ['--version'])).stdout.split('\n')[0] ?? 'cc';
  } catch (error) {
    throw new HearthError('HEARTH_ERR_AGENT_COMPILE', { reason: 'no C compiler (cc) found' }, { cause: error });
  }
  const key = createHash('sha256').update(source).update(compiler).digest('hex').slice(0, 16);
  const out = join(cacheDir, 'agent', key, 'hearth-agent');
  try {
    await stat(out);
  } catch {
    await mkdir(dirname(out), { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`;
    try {
      await runProgram('cc', ['-static', '-Os', '-s', '-Wall', '-o', tmp, AGENT_SOURCE]);
    } catch (error) {
      throw new HearthError('HEARTH_ERR_AGENT_COMPILE', { reason: (error as Error).message }, { cause: error });
    }
    await rename(tmp, out);
  }
  const sha256 = createHash('sha256')
    .update(await readFile(out))
    .digest('hex');
  return { path: out, sha256 };
}
