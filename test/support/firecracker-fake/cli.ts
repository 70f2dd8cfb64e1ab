// The command line of the stand-in `firecracker` binary (bin/firecracker).
// It takes Firecracker's flags, serves the fake API with the agent emulated,
// and exits on SIGTERM/SIGINT as the real process does. Run by the stand-in
// jailer (jailer.ts), it reads every path inside the jail's chroot.
import { appendFileSync } from 'node:fs';
import { FakeFirecracker } from './server.ts';
import { FAKE_VMM_VERSION, hostPath } from './vmm.ts';

// Firecracker's flags that take a value; the fake reads --api-sock and --id and ignores the rest.
const VALUE_FLAGS = new Set([
  'api-sock',
  'id',
  'log-path',
  'level',
  'module',
  'seccomp-level',
  'seccomp-filter',
  'metrics-path',
  'http-api-max-payload-size',
  'mmds-size-limit',
  'start-time-us',
  'start-time-cpu-us',
  'parent-cpu-time-us',
]);
const SWITCHES = new Set(['boot-timer', 'show-level', 'show-log-origin', 'no-seccomp']);
// These change what the process does; ignoring them would fake a success the driver never earned.
const UNSUPPORTED = new Set(['config-file', 'no-api', 'describe-snapshot', 'snapshot-version']);

function fail(message: string): never {
  process.stderr.write(`firecracker (fake): ${message}\n`);
  process.exit(1);
}

function parseArgs(argv: readonly string[]): Map<string, string> {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith('--')) fail(`unexpected argument ${arg}`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (name === 'version') {
      process.stdout.write(`Firecracker v${FAKE_VMM_VERSION}\n`);
      process.exit(0);
    }
    if (UNSUPPORTED.has(name)) fail(`--${name} is not supported by the fake`);
    if (SWITCHES.has(name)) continue;
    if (!VALUE_FLAGS.has(name)) fail(`unknown flag --${name}`);
    const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined) fail(`--${name} needs a value`);
    // The jailer already passes --id: a driver that adds its own after `--` would be refused.
    if (values.has(name)) fail(`--${name} was given more than once`);
    values.set(name, value);
  }
  return values;
}

const args = parseArgs(process.argv.slice(2));
const logPath = process.env.FAKE_FIRECRACKER_LOG;
const root = process.env.FAKE_FIRECRACKER_ROOT;
// One line per IDENTITY the emulated agent applied: which VMM, the hostname and any network it was given.
const agentLogPath = process.env.FAKE_FIRECRACKER_AGENT_LOG;
const fake = await FakeFirecracker.start(hostPath(root, args.get('api-sock') ?? '/run/firecracker.socket'), {
  vsockAgent: true,
  id: args.get('id'),
  checkHostPaths: process.env.FAKE_FIRECRACKER_CHECK_PATHS !== '0',
  ...(root ? { root } : {}),
  onRequest: logPath ? (entry) => appendFileSync(logPath, `${JSON.stringify(entry)}\n`) : undefined,
  ...(process.env.FAKE_FIRECRACKER_AGENT_FLAGS === undefined ? {} : { agentHelloFlags: Number(process.env.FAKE_FIRECRACKER_AGENT_FLAGS) }),
  onIdentity: agentLogPath
    ? (identity) => appendFileSync(agentLogPath, `${JSON.stringify({ vmm: args.get('id'), hostname: identity.hostname, network: identity.network })}\n`)
    : undefined,
}).catch((error: NodeJS.ErrnoException) => fail(`cannot open the API socket: ${error.code ?? error.message}`));

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void fake.close().finally(() => process.exit(0));
  });
}
