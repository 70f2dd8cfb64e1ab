// The command line of the stand-in `jailer` binary (bin/jailer). It reads its
// arguments as the real jailer does (Firecracker's docs/jailer.md and its
// argument parser): the required --id, --exec-file, --uid and --gid, an id of
// letters, digits and hyphens, an exec file whose name contains "firecracker",
// `<file>=<value>` cgroup settings, and everything after `--` passed on to
// Firecracker. It then builds the real layout, <chroot base>/<exec file name>/<id>/root
// with a copy of the exec file, a pid file and /dev, /dev/net and /run, and
// stands in for the exec: the fake Firecracker runs in this same process (as
// the real one keeps the jailer's pid), seeing the chroot as its `/`.
//
// Nothing privileged happens: no pivot_root, no mknod, no setns, no uid switch.
// The cgroup is an empty directory under FAKE_JAILER_CGROUP_ROOT, which stands
// in for the cgroup v2 mount the real jailer finds in /proc/mounts.
import { appendFileSync, chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { basename, isAbsolute, join } from 'node:path';

const VERSION = '1.7.0';
const VALUE_FLAGS = new Set(['id', 'exec-file', 'uid', 'gid', 'chroot-base-dir', 'netns', 'cgroup-version', 'parent-cgroup']);
const MULTI_FLAGS = new Set(['cgroup', 'resource-limit']);
// Real switches whose effect the fake cannot give: refusing them beats faking a success.
const UNSUPPORTED = new Set(['daemonize', 'new-pid-ns']);
const RESOURCES = new Set(['fsize', 'no-file']);

function fail(message: string): never {
  process.stderr.write(`jailer (fake): ${message}\n`);
  process.exit(1);
}

interface Parsed {
  readonly single: Map<string, string>;
  readonly multi: Map<string, string[]>;
  readonly extra: string[];
}

function parse(argv: readonly string[]): Parsed {
  const single = new Map<string, string>();
  const multi = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') return { single, multi, extra: argv.slice(i + 1) };
    if (!arg.startsWith('--')) fail(`unexpected argument ${arg}`);
    const name = arg.slice(2);
    if (name === 'version') {
      process.stdout.write(`Jailer v${VERSION}\n\n`);
      process.exit(0);
    }
    if (UNSUPPORTED.has(name)) fail(`--${name} is not supported by the fake`);
    if (!VALUE_FLAGS.has(name) && !MULTI_FLAGS.has(name)) fail(`Found argument '--${name}' which wasn't expected, or isn't valid in this context.`);
    const value = argv[++i];
    if (value === undefined || value.startsWith('--')) fail(`The argument '--${name}' requires a value, but none was supplied.`);
    if (MULTI_FLAGS.has(name)) multi.set(name, [...(multi.get(name) ?? []), value]);
    else if (single.has(name)) fail(`The argument '--${name}' was provided more than once.`);
    else single.set(name, value);
  }
  return { single, multi, extra: [] };
}

function required(args: Parsed, name: string): string {
  return args.single.get(name) ?? fail(`Missing argument: --${name}`);
}

function unixId(value: string, what: string): number {
  if (!/^\d+$/.test(value) || Number(value) >= 2 ** 32) fail(`Invalid ${what}: ${value}`);
  return Number(value);
}

function canonical(path: string, what: string): string {
  try {
    return realpathSync(path);
  } catch (error) {
    fail(`Failed to canonicalize path ${path} (${what}): ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}

/** A relative path with no `.`, `..` or empty parts: what the jailer accepts for cgroup files and the parent cgroup. */
function plainRelative(path: string): boolean {
  return !isAbsolute(path) && path.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

const args = parse(process.argv.slice(2));
if (process.env.FAKE_JAILER_LOG) appendFileSync(process.env.FAKE_JAILER_LOG, `${JSON.stringify({ argv: process.argv.slice(2) })}\n`);

const id = required(args, 'id');
if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) fail(`Invalid instance ID: ${id} (letters, digits and hyphens, at most 64)`);
const execFile = canonical(required(args, 'exec-file'), '--exec-file');
if (!statSync(execFile).isFile()) fail(`${execFile} is not a file`);
const execName = basename(execFile);
if (!execName.includes('firecracker')) fail(`Invalid filename. The filename of \`--exec-file\` option must contain "firecracker": ${execName}`);
const uid = unixId(required(args, 'uid'), 'uid');
const gid = unixId(required(args, 'gid'), 'gid');
const base = canonical(args.single.get('chroot-base-dir') ?? '/srv/jailer', '--chroot-base-dir');
if (!statSync(base).isDirectory()) fail(`${base} is not a directory`);
const netns = args.single.get('netns');
if (netns !== undefined && !existsSync(netns)) fail(`Failed to open file ${netns}: No such file or directory (os error 2)`);

const version = args.single.get('cgroup-version') ?? '1';
if (version !== '1' && version !== '2') fail(`${version} is an invalid cgroup version specifier`);
const parent = args.single.get('parent-cgroup') ?? execName;
if (!plainRelative(parent)) fail("Parent cgroup path is invalid. Path should not be absolute or contain '..' or '.'");
const cgroups = args.multi.get('cgroup') ?? [];
for (const setting of cgroups) {
  const parts = setting.split('=');
  if (parts.length !== 2 || !parts[1]) fail(`Invalid format for cgroups: ${setting}`);
  const file = parts[0] as string;
  if (!plainRelative(file) || file.includes('/') || file.split('.').length < 2) fail(`Cgroup invalid file: ${setting}`);
}
if (cgroups.length > 0 && version !== '2') fail('the fake jailer models cgroup v2 only: pass --cgroup-version 2');
for (const limit of args.multi.get('resource-limit') ?? []) {
  const [name, value] = limit.split(/=(.*)/s);
  if (value === undefined) fail(`Invalid format for resources limits: ${limit}`);
  if (!RESOURCES.has(name as string)) fail(`Invalid resource argument: ${name}`);
  if (!/^\d+$/.test(value)) fail(`Invalid limit value for resource: ${name}: ${value}`);
}

// The chroot, laid out as the jailer leaves it (an existing directory is reused, not an error).
const chroot = join(base, execName, id, 'root');
mkdirSync(chroot, { recursive: true });
chmodSync(chroot, 0o700);
copyFileSync(execFile, join(chroot, execName));
for (const dir of ['dev', 'dev/net', 'run']) mkdirSync(join(chroot, dir), { recursive: true, mode: 0o700 });
if (process.getuid?.() === 0) for (const dir of ['', 'dev', 'dev/net', 'run']) chownSync(join(chroot, dir), uid, gid);
try {
  writeFileSync(join(chroot, `${execName}.pid`), String(process.pid), { flag: 'wx' });
} catch (error) {
  fail(`Failed to open file ${join(chroot, `${execName}.pid`)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
}
const cgroupRoot = process.env.FAKE_JAILER_CGROUP_ROOT;
if (cgroups.length > 0 && cgroupRoot) mkdirSync(join(cgroupRoot, parent, id), { recursive: true });

// The jailer clears its environment before exec; the fake keeps only its own test hooks.
for (const key of Object.keys(process.env)) if (!key.startsWith('FAKE_FIRECRACKER_')) delete process.env[key];
process.env.FAKE_FIRECRACKER_ROOT = chroot;
process.chdir(chroot);
const startUs = Math.round(performance.timeOrigin * 1000);
process.argv = [
  process.argv[0] as string,
  join(chroot, execName),
  '--id',
  id,
  '--start-time-us',
  String(startUs),
  '--start-time-cpu-us',
  '0',
  '--parent-cpu-time-us',
  '0',
  ...args.extra,
];
await import('./cli.ts');
