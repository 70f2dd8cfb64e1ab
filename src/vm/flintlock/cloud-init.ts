import { stringify } from 'yaml';
import { HearthError } from '../../errors.ts';

export interface AgentBootstrapOptions {
  /** Where the guest's hearth-agent connects back to. */
  readonly agentUrl: string;
  /** The agent's bootstrap secret. Goes into user-data only, never into labels or the kernel cmdline, which the host shows to anyone. */
  readonly token: string;
  /** The guest's hostname (RFC 1123); unique per runner, so it doubles as cloud-init's instance-id. */
  readonly hostname: string;
  readonly sshAuthorizedKeys?: readonly string[];
}

export const AGENT_ENV_PATH = '/etc/hearth/agent.env';
export const AGENT_BINARY = '/usr/local/sbin/hearth-agent';
/** The agent's own log in the guest (it never writes its token there). */
export const AGENT_LOG_PATH = '/var/log/hearth-agent.log';

/**
 * The cloud-init documents (for FlintlockMicroVmSpec.metadata, base64 as
 * flintlockd expects) that bring up the Hearth agent in a fresh microVM:
 * meta-data names the instance, user-data writes the agent's config to
 * /etc/hearth/agent.env (root only) and starts the agent with it.
 */
export function agentBootstrapMetadata(options: AgentBootstrapOptions): Record<string, string> {
  const { agentUrl, token, hostname } = options;
  checkHostname(hostname);
  checkAgentUrl(agentUrl);
  checkToken(token);
  const keys = options.sshAuthorizedKeys ?? [];
  for (const key of keys) {
    if (/[\r\n]/.test(key) || key.trim() === '') {
      throw new HearthError('HEARTH_ERR_BAD_OPTION', {
        option: 'sshAuthorizedKeys',
        reason: 'holds an empty or multi-line entry',
        hint: 'give one public key per entry, e.g. "ssh-ed25519 AAAA... user@host"',
      });
    }
  }

  const metaData = stringify({ 'instance-id': hostname, 'local-hostname': hostname });
  const cloudConfig = {
    hostname,
    write_files: [
      {
        path: AGENT_ENV_PATH,
        owner: 'root:root',
        // A string, because YAML would read a bare 0600 as the number 600.
        permissions: '0600',
        content: `HEARTH_AGENT_URL=${shellQuote(agentUrl)}\nHEARTH_AGENT_TOKEN=${shellQuote(token)}\n`,
      },
    ],
    ...(keys.length > 0 && { ssh_authorized_keys: [...keys] }),
    // Argv form, so cloud-init passes it to sh untouched; `set -a` exports the
    // file's variables to the agent, which reads its token from the environment
    // (and drops it from there). In the background, with its own output, because
    // cloud-init waits for runcmd and for everything holding its output pipe, and
    // the agent runs until Hearth is done with the VM.
    runcmd: [
      ['sh', '-c', `(set -a && . ${AGENT_ENV_PATH} && set +a && exec ${AGENT_BINARY} --connect "$HEARTH_AGENT_URL") </dev/null >>${AGENT_LOG_PATH} 2>&1 &`],
    ],
  };
  const userData = `#cloud-config\n${stringify(cloudConfig)}`;

  return { 'meta-data': base64(metaData), 'user-data': base64(userData) };
}

// RFC 1123: dot-separated labels of letters, digits and inner hyphens, at most 63 each, 253 in all.
const HOSTNAME_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

function checkHostname(hostname: string): void {
  if (hostname.length > 0 && hostname.length <= 253 && hostname.split('.').every((label) => HOSTNAME_LABEL.test(label))) return;
  throw new HearthError('HEARTH_ERR_BAD_OPTION', {
    option: `hostname "${hostname}"`,
    reason: 'is not an RFC 1123 hostname',
    hint: 'use letters, digits and inner hyphens, at most 63 per dot-separated label, e.g. hearth-runner-42',
  });
}

function checkAgentUrl(agentUrl: string): void {
  if (URL.canParse(agentUrl) && !/[\r\n]/.test(agentUrl)) return;
  throw new HearthError('HEARTH_ERR_BAD_OPTION', {
    option: 'agentUrl',
    reason: `"${agentUrl}" is not a URL`,
    hint: 'give an absolute URL the guest can reach, e.g. https://10.0.0.1:8443',
  });
}

function checkToken(token: string): void {
  // The value is never echoed back: it is a secret.
  // eslint-disable-next-line no-control-regex
  if (token !== '' && !/[\u0000-\u001f\u007f]/.test(token)) return;
  throw new HearthError('HEARTH_ERR_BAD_OPTION', {
    option: 'token',
    reason: 'is empty or holds control characters',
    hint: 'pass the token exactly as Hearth issued it',
  });
}

/** Single quotes for sh, which the env file is sourced by; a quote inside becomes '\''. */
function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

function base64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}
