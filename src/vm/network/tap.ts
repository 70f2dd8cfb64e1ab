import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HearthError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { findExecutable, runProgram } from '../../system/run.ts';

/**
 * Guest networking on a TAP device per VM, for drivers that need one
 * (Firecracker) and for QEMU when egress must be limited. Each VM gets a /30
 * out of 172.30.0.0/16: the host end is .1, the guest .2, and an nftables table
 * of its own (`inet hearth_<device>`) besides the shared NAT (`ip hearth_nat`):
 * - VMs cannot reach each other, nor this host except the ports allowed;
 * - egress is NAT'ed; with an allowlist, everything else is dropped.
 */
export interface EgressPolicy {
  /** `CIDR` (any port) or `CIDR:PORT`; empty allows all egress. */
  readonly allow: readonly string[];
  /** Host TCP ports guests may reach at their gateway address (a cache, the forge in tests). */
  readonly hostPorts: readonly number[];
  readonly dns: string;
}

export interface TapNetwork {
  readonly device: string;
  readonly hostIp: string;
  readonly guestIp: string;
  readonly prefix: 30;
  readonly index: number;
}

const BLOCKS = 16_384; // /30s in 172.30.0.0/16
const TABLE = 'hearth';

function addressOf(index: number, host: 1 | 2): string {
  const base = index * 4;
  return `172.30.${(base >> 8) & 255}.${(base & 255) + host}`;
}

export function tapDeviceName(vmId: string): string {
  return `hth${vmId.replace(/^vm-/, '').slice(0, 10)}`; // within IFNAMSIZ (15)
}

/** Guest kernel arguments the agent reads to configure eth0. */
export function guestNetworkArgs(network: TapNetwork, policy: EgressPolicy): string[] {
  return ['hearth.net=1', `hearth.ip=${network.guestIp}/${network.prefix}`, `hearth.gw=${network.hostIp}`, `hearth.dns=${policy.dns}`];
}

function parseAllow(entry: string): { cidr: string; port?: number } {
  const match = /^(\d{1,3}(?:\.\d{1,3}){3})(?:\/(\d{1,2}))?(?::(\d{1,5}))?$/.exec(entry.trim());
  if (!match)
    throw new HearthError('HEARTH_ERR_BAD_OPTION', {
      option: `egress entry "${entry}"`,
      reason: 'is not CIDR or CIDR:PORT (IPv4)',
      hint: 'for example 140.82.112.0/20:443 or 1.1.1.1:53',
    });
  const cidr = `${match[1]}/${match[2] ?? '32'}`;
  return match[3] ? { cidr, port: Number(match[3]) } : { cidr };
}

/** NAT for every Hearth TAP network: the same for all VMs, so applying it again changes nothing. */
const NAT_RULESET = `table ip ${TABLE}_nat
delete table ip ${TABLE}_nat
table ip ${TABLE}_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat;
    ip saddr 172.30.0.0/16 oifname != "hth*" masquerade
  }
}
`;

/**
 * One VM's filter, as a table of its own matching only its device. nftables
 * runs every table's hooks and a drop in any of them wins, so each VM's policy
 * stands alone: VMs with different allowlists (or test files side by side)
 * never overwrite each other, and destroying a VM deletes exactly its table.
 */
export function vmFirewall(device: string, policy: EgressPolicy): string {
  const entries = policy.allow.map(parseAllow);
  const anyPort = entries.filter((e) => e.port === undefined).map((e) => e.cidr);
  const withPort = entries.filter((e) => e.port !== undefined).map((e) => `${e.cidr} . ${e.port}`);
  const restricted = policy.allow.length > 0;
  const elements = (list: string[]): string => (list.length > 0 ? ` elements = { ${list.join(', ')} };` : '');
  const dev = `"${device}"`;
  return `table inet ${TABLE}_${device}
delete table inet ${TABLE}_${device}
table inet ${TABLE}_${device} {
  set egress { type ipv4_addr; flags interval;${elements(anyPort)} }
  set egress_ports { type ipv4_addr . inet_service; flags interval;${elements(withPort)} }
  set host_ports { type inet_service;${elements(policy.hostPorts.map(String))} }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname ${dev} ct state established,related accept
    iifname ${dev} oifname "hth*" drop
${
  restricted
    ? `    iifname ${dev} ip daddr @egress accept
    iifname ${dev} ip daddr . tcp dport @egress_ports accept
    iifname ${dev} ip daddr . udp dport @egress_ports accept
    iifname ${dev} drop`
    : ''
}
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname ${dev} ct state established,related accept
    iifname ${dev} tcp dport @host_ports accept
    iifname ${dev} drop
  }
}
`;
}

async function requireTools(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new HearthError('HEARTH_ERR_NEEDS_ROOT', {
      what: 'a TAP network for a VM (ip tuntap, nftables)',
      command: 'sudo hearth …, or run hearth serve as root',
    });
  for (const [tool, pkg] of [
    ['ip', 'iproute2'],
    ['nft', 'nftables'],
  ] as const) {
    if (!(await findExecutable(tool))) throw new HearthError('HEARTH_ERR_TOOL_MISSING', { tool, package: pkg });
  }
}

/** Claims a free /30 by creating its lock file exclusively; the file names the VM. */
async function claimBlock(runtimeDir: string, vmId: string): Promise<number> {
  const dir = join(runtimeDir, 'net');
  await mkdir(dir, { recursive: true });
  const start = Math.floor(Math.random() * BLOCKS);
  for (let i = 0; i < BLOCKS; i++) {
    const index = ((start + i) % (BLOCKS - 1)) + 1;
    try {
      const handle = await open(join(dir, String(index)), 'wx');
      await handle.writeFile(vmId);
      await handle.close();
      return index;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  throw new Error('no free /30 left in 172.30.0.0/16');
}

/** Creates the VM's TAP device and (re)applies the firewall; the result is kept in <vm dir>/net.json. */
export async function setUpTap(runtimeDir: string, vmDir: string, vmId: string, policy: EgressPolicy): Promise<TapNetwork> {
  await requireTools();
  const index = await claimBlock(runtimeDir, vmId);
  const network: TapNetwork = { device: tapDeviceName(vmId), hostIp: addressOf(index, 1), guestIp: addressOf(index, 2), prefix: 30, index };
  await writeFile(join(vmDir, 'net.json'), JSON.stringify(network) + '\n');
  await runProgram('ip', ['tuntap', 'add', 'dev', network.device, 'mode', 'tap']);
  await runProgram('ip', ['addr', 'add', `${network.hostIp}/30`, 'dev', network.device]);
  await runProgram('ip', ['link', 'set', network.device, 'up']);
  await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
  await writeFile(join(vmDir, 'firewall.nft'), NAT_RULESET + vmFirewall(network.device, policy));
  await runProgram('nft', ['-f', join(vmDir, 'firewall.nft')]);
  return network;
}

/** Removes the VM's TAP device and frees its /30; safe to call for a VM that never had one. A step that fails is logged and the rest still runs. */
export async function tearDownTap(runtimeDir: string, vmDir: string, logger: Logger): Promise<void> {
  let network: TapNetwork;
  try {
    network = JSON.parse(await readFile(join(vmDir, 'net.json'), 'utf8')) as TapNetwork;
  } catch {
    return;
  }
  const step = async (program: string, args: string[]): Promise<void> => {
    try {
      await runProgram(program, args);
    } catch (error) {
      logger.warn(
        { device: network.device, err: (error as Error).message },
        `${program} ${args.join(' ')} failed while removing a VM's TAP network; remove it by hand if it lingers`,
      );
    }
  };
  await step('ip', ['link', 'del', network.device]);
  await step('nft', ['delete', 'table', 'inet', `${TABLE}_${network.device}`]);
  await rm(join(runtimeDir, 'net', String(network.index)), { force: true });
}
