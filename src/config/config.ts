import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { HearthError } from '../errors.ts';

/**
 * Optional user configuration, JSON at $HEARTH_CONFIG or
 * ~/.config/hearth/config.json. Everything has a default; a missing file is fine.
 *
 *   { "images": { "debian": { "packages": ["jq", "make"], "mirror": "http://deb.debian.org/debian" } } }
 */
export interface HearthConfig {
  readonly images?: {
    readonly debian?: { readonly packages?: readonly string[]; readonly mirror?: string; readonly suite?: string };
  };
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.HEARTH_CONFIG ?? join(env.XDG_CONFIG_HOME ?? join(env.HOME ?? homedir(), '.config'), 'hearth', 'config.json');
}

export async function loadConfig(env: NodeJS.ProcessEnv = process.env): Promise<HearthConfig> {
  const path = configPath(env);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return {};
  }
  try {
    return JSON.parse(text) as HearthConfig;
  } catch (error) {
    throw new HearthError('HEARTH_ERR_BAD_OPTION', { option: path, reason: `is not valid JSON: ${(error as Error).message}`, hint: 'fix the file, or move it away to use the defaults' }, { cause: error });
  }
}
