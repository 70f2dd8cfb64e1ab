import { homedir } from 'node:os';
import { join } from 'node:path';
import { IMAGE_NAMES } from '../image/store.ts';
import { VM_BOUNDS } from '../vm/bounds.ts';
import {
  apiToken,
  appId,
  cidr,
  egressEntry,
  githubOrg,
  githubRepo,
  hostAddress,
  hostId,
  httpUrl,
  imageName,
  ipv4Address,
  nonEmpty,
  numericId,
  pemPrivateKey,
  readableFile,
  rootImage,
  signingSecret,
  storeUrl,
  tcpPort,
} from './checks.ts';
import {
  choice,
  envNameOf,
  flag,
  integer,
  list,
  optionalInteger,
  optionalText,
  text,
  type DefaultContext,
  type KeyPaths,
  type Setting,
  type SettingTable,
} from './engine.ts';
import type { PoolConfig } from './pools-config.ts';

/**
 * Every setting of Hearth, once: its key, type, bounds, default, environment
 * variable, flag, description and whether it is a secret. The engine
 * (src/config/engine.ts) reads them; `hearth config check` prints them with
 * where each value came from; docs/configuration.md lists them (a test keeps
 * it complete); redaction (src/redact.ts) takes its secrets from here.
 *
 * Four tables, by where their values may come from:
 * - SERVE_SETTINGS: `hearth serve`, from its YAML file, HEARTH_<SECTION>_<KEY> and flags;
 * - HOST_SETTINGS: this machine's directories and VMM drivers, from the environment and flags;
 * - IMAGE_SETTINGS: how images are built, from the JSON file at cli.imagesConfig (and the environment);
 * - POOL_SETTINGS: each pool under pools.NAME in the serve file (or HEARTH_POOLS as JSON).
 */

// ---------------------------------------------------------------------------
// hearth serve

export interface ServeConfig {
  server: {
    host: string;
    /** 0 asks the kernel for any free port. */
    port: number;
    /** GitHub sends payloads of up to 25 MB. */
    bodyLimitBytes: number;
    /** Requests per minute per client address; 0 disables the limit. */
    rateLimitPerMinute: number;
    tls: { certPath: string; keyPath: string } | null;
    /** CIDRs allowed to reach each route group; an empty list lets everyone in. */
    allow: { webhooks: string[]; api: string[]; metrics: string[] };
  };
  /** A filesystem path or `sqlite:PATH` (SQLite), or a `postgres://` URL. */
  store: { url: string };
  /** Bearer token for /api/v1; null leaves the API off. */
  api: { token: string | null };
  driver: { name: 'auto' | 'qemu' | 'firecracker' | 'flintlock'; accel: 'auto' | 'kvm' | 'tcg' };
  runners: {
    image: string;
    /** Runners need egress to reach their forge. */
    network: boolean;
    maxCpus: number;
    maxMemoryMib: number;
    /** 0 leaves the limit to what the host can hold. */
    maxConcurrent: number;
    bootTimeoutSeconds: number;
    jobTimeoutMinutes: number;
    /** Egress allowlist (CIDR or CIDR:PORT); set, networked runners get a TAP device with default-deny egress. */
    egress: string[];
    /** Host TCP ports runner VMs may reach at their gateway (a cache); only with egress set. */
    egressHostPorts: string[];
    /** The resolver runner VMs use on a TAP network. */
    dns: string;
  };
  reconcile: { intervalSeconds: number; stuckAfterSeconds: number; maxAttempts: number };
  github: {
    apiUrl: string;
    /** Tried in order: the current secret first, older ones still accepted while a rotation settles. */
    webhookSecret: string[];
    token: string | null;
    app: { id: string | null; privateKeyPath: string | null; installationId: string | null };
    repos: string[];
    orgs: string[];
    runnerGroupId: number;
    runnerCommand: string;
  };
  gitlab: {
    url: string;
    /** How the runner inside the VM reaches GitLab; null means `url`. */
    runnerUrl: string | null;
    webhookToken: string | null;
    /** Standard Webhooks secrets, `whsec_<base64>` or bare base64; a list for rotation. */
    signingSecret: string[];
    token: string | null;
    projects: string[];
    groups: string[];
    runnerCommand: string;
    waitTimeoutSeconds: number;
  };
  log: {
    level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
    /** Job logs (runner output) are kept this many days, then deleted. */
    jobRetentionDays: number;
    /** Lines kept per job; the rest is dropped with a note. */
    jobMaxLines: number;
  };
  /** Scale-out: what this process does, and how hosts are placed and watched (PostgreSQL only for roles other than all). */
  cluster: {
    role: 'all' | 'controller' | 'host';
    /** This host's id in the ledger; unique per VM host. */
    hostId: string;
    placement: 'binpack' | 'spread';
    heartbeatSeconds: number;
    hostTimeoutSeconds: number;
  };
  /** Warm and snapshot pools (POOL_SETTINGS): a mapping of names, read by src/config/pools-config.ts. */
  pools: PoolConfig[];
}

export type ServeConfigKey = KeyPaths<Omit<ServeConfig, 'pools'>>;

const CIDRS = 'a list of CIDRs, e.g. [10.0.0.0/8, "::1/128"] (empty lets every address in)';

export const SERVE_SETTINGS: { readonly [K in ServeConfigKey]: Setting } = {
  'server.host': text('an address to listen on, e.g. 0.0.0.0 or 127.0.0.1', '0.0.0.0', hostAddress, { description: 'Address the HTTP server listens on.' }),
  'server.port': integer(0, 65_535, 8080, { description: 'TCP port of the HTTP server; 0 asks the kernel for any free port.' }),
  'server.bodyLimitBytes': integer(1024, 1_073_741_824, 26_214_400, { description: 'Largest request body accepted (GitHub sends payloads of up to 25 MB).' }),
  'server.rateLimitPerMinute': integer(0, 1_000_000, 6000, { description: 'Requests per minute per client address; 0 disables the limit.' }),
  'server.tls.certPath': optionalText('the path of a readable PEM certificate file, e.g. /etc/hearth/tls/cert.pem', readableFile, {
    description: 'PEM certificate for HTTPS; set with keyPath, or neither to serve plain HTTP behind a proxy.',
  }),
  'server.tls.keyPath': optionalText('the path of a readable PEM key file, e.g. /etc/hearth/tls/key.pem', readableFile, {
    description: 'PEM private key for HTTPS.',
  }),
  'server.allow.webhooks': list(CIDRS, cidr, { description: 'Client CIDRs allowed to reach /webhooks; empty lets every address in.' }),
  'server.allow.api': list(CIDRS, cidr, { description: 'Client CIDRs allowed to reach /api/v1 and the dashboard; empty lets every address in.' }),
  'server.allow.metrics': list(CIDRS, cidr, { description: 'Client CIDRs allowed to reach /metrics; empty lets every address in.' }),
  'store.url': text(
    'an absolute SQLite path (/var/lib/hearth/hearth.db or sqlite:/var/lib/hearth/hearth.db) or postgres://USER:PASSWORD@HOST:5432/DATABASE',
    (context) => `${context.dataDir}/hearth.db`,
    storeUrl,
    {
      description:
        'The ledger: an absolute SQLite path (sqlite:PATH) or a postgres:// URL (its password is redacted when printed). Default: DATA_DIR/hearth.db.',
    },
  ),
  'api.token': optionalText('a random string of at least 16 characters, e.g. from `openssl rand -hex 32`', apiToken, {
    secret: true,
    description: 'Bearer token for /api/v1 and the dashboard; unset leaves the API off.',
  }),
  'driver.name': choice(['auto', 'qemu', 'firecracker', 'flintlock'], 'auto', {
    description: 'Where runner VMs run; auto is QEMU (KVM where it works, else TCG).',
  }),
  'driver.accel': choice(['auto', 'kvm', 'tcg'], 'auto', { description: 'QEMU accelerator; auto probes KVM with a boot.' }),
  'runners.image': text(`an image name: ${IMAGE_NAMES.join(', ')} or one published with hearth image build --name`, 'debian', imageName, {
    description: 'Image runner VMs boot.',
  }),
  'runners.network': flag(true, { description: 'Give runner VMs network access (they need egress to reach their forge).' }),
  'runners.maxCpus': integer(VM_BOUNDS.cpus.min, VM_BOUNDS.cpus.max, 8, { description: 'Most vCPUs one job may ask for.' }),
  'runners.maxMemoryMib': integer(VM_BOUNDS.memoryMib.min, VM_BOUNDS.memoryMib.max, 16_384, { description: 'Most memory (MiB) one job may ask for.' }),
  'runners.maxConcurrent': integer(0, 10_000, 0, { description: 'Most runners at once; 0 leaves it to what the host can hold.' }),
  'runners.bootTimeoutSeconds': integer(1, 3600, 120, { description: 'How long a runner VM may take to boot.' }),
  'runners.jobTimeoutMinutes': integer(1, 10_080, 360, { description: 'How long a job may run before its VM is destroyed.' }),
  'runners.egress': list('a list of IPv4 CIDR or CIDR:PORT entries, e.g. [140.82.112.0/20:443, 1.1.1.1:53] (empty: egress not limited)', egressEntry, {
    description: 'Egress allowlist; set, networked runners get a TAP device with default-deny egress.',
  }),
  'runners.egressHostPorts': list('a list of TCP ports, e.g. ["3128"]', tcpPort, {
    description: 'Host TCP ports runner VMs may reach at their gateway (a cache); only with egress set.',
  }),
  'runners.dns': text('an IPv4 address, e.g. 1.1.1.1', '1.1.1.1', ipv4Address, { description: 'Resolver runner VMs use on a TAP network.' }),
  'reconcile.intervalSeconds': integer(1, 3600, 30, { description: 'How often the controller compares the ledger with the forges and the VMs.' }),
  'reconcile.stuckAfterSeconds': integer(1, 86_400, 900, { description: 'A job in one state this long is looked at again.' }),
  'reconcile.maxAttempts': integer(1, 100, 3, { description: 'Attempts to provision a job before it is given up.' }),
  'github.apiUrl': text('an https:// URL, e.g. https://api.github.com or https://ghe.example.com/api/v3', 'https://api.github.com', httpUrl, {
    description: 'GitHub REST API (GitHub Enterprise: https://HOST/api/v3).',
  }),
  'github.webhookSecret': list('a list of webhook secrets, current first, e.g. from `openssl rand -hex 32`', nonEmpty, {
    secret: true,
    description: 'Webhook secrets, current first; older ones are still accepted while a rotation settles. Unset: GitHub webhooks off.',
  }),
  'github.token': optionalText('a fine-grained personal access token (github_pat_…)', nonEmpty, {
    secret: true,
    description: 'Token that registers runners (Administration: write), or use github.app.',
  }),
  'github.app.id': optionalText('the App ID shown on the GitHub App settings page, e.g. 123456', appId, {
    integerAsText: true,
    description: 'GitHub App ID (or client ID), with privateKeyPath and installationId.',
  }),
  'github.app.privateKeyPath': optionalText('the path of the App private key (.pem) downloaded from its settings page', pemPrivateKey, {
    description: 'GitHub App private key (.pem).',
  }),
  'github.app.installationId': optionalText('the numeric installation id from the installation URL, e.g. 12345678', numericId, {
    integerAsText: true,
    description: 'GitHub App installation id.',
  }),
  'github.repos': list('a list of owner/repo names, e.g. [octo-org/app]', githubRepo, { description: 'Repositories whose jobs Hearth registers runners for.' }),
  'github.orgs': list('a list of organisation names, e.g. [octo-org]', githubOrg, { description: 'Organisations whose jobs Hearth registers runners for.' }),
  'github.runnerGroupId': integer(1, 2_147_483_647, 1, { description: 'Runner group of organisation runners.' }),
  'github.runnerCommand': text('the runner program inside the image, e.g. /opt/actions-runner/run.sh', '/opt/actions-runner/run.sh', nonEmpty, {
    description: 'The GitHub runner program inside the image.',
  }),
  'gitlab.url': text('an https:// URL, e.g. https://gitlab.com', 'https://gitlab.com', httpUrl, { description: 'GitLab instance.' }),
  'gitlab.runnerUrl': optionalText('the URL the VM uses to reach GitLab, e.g. https://gitlab.internal', httpUrl, {
    description: 'How the runner inside the VM reaches GitLab; unset means gitlab.url.',
  }),
  'gitlab.webhookToken': optionalText("the webhook's secret token as entered in GitLab", nonEmpty, {
    secret: true,
    description: "The webhook's secret token (X-Gitlab-Token).",
  }),
  'gitlab.signingSecret': list("a list of the webhook's signing secrets (whsec_<base64>), current first", signingSecret, {
    secret: true,
    description: 'Standard Webhooks signing secrets (whsec_<base64>), current first.',
  }),
  'gitlab.token': optionalText('a GitLab token with the create_runner scope (glpat-…)', nonEmpty, {
    secret: true,
    description: 'Token that registers runners (create_runner scope).',
  }),
  'gitlab.projects': list('a list of numeric project ids, e.g. [1234]', numericId, {
    integerAsText: true,
    description: 'Projects whose jobs Hearth registers runners for.',
  }),
  'gitlab.groups': list('a list of numeric group ids, e.g. [56]', numericId, {
    integerAsText: true,
    description: 'Groups whose jobs Hearth registers runners for.',
  }),
  'gitlab.runnerCommand': text('the runner program inside the image, e.g. gitlab-runner', 'gitlab-runner', nonEmpty, {
    description: 'The GitLab runner program inside the image.',
  }),
  'gitlab.waitTimeoutSeconds': integer(1, 3600, 120, { description: 'How long a GitLab runner waits for its job.' }),
  'log.level': choice(['trace', 'debug', 'info', 'warn', 'error', 'fatal'], 'info', { description: 'Level of the JSON log lines `hearth serve` writes.' }),
  'log.jobRetentionDays': integer(1, 3650, 7, { description: 'Job logs are kept this many days, then deleted.' }),
  'log.jobMaxLines': integer(100, 10_000_000, 20_000, { description: 'Lines kept per job; the rest is dropped with a note.' }),
  'cluster.role': choice(['all', 'controller', 'host'], 'all', {
    flag: '--role',
    description: 'What this process does: all (one machine), controller or host (PostgreSQL only).',
  }),
  'cluster.hostId': text('a host id of letters, digits, ".", "_" or "-", e.g. vm-host-1', (context) => context.hostname, hostId, {
    description: "This host's id in the ledger; unique per VM host. Default: the host name.",
  }),
  'cluster.placement': choice(['binpack', 'spread'], 'binpack', { description: 'How jobs are placed on hosts.' }),
  'cluster.heartbeatSeconds': integer(1, 300, 5, { description: 'How often a host reports in.' }),
  'cluster.hostTimeoutSeconds': integer(3, 3600, 30, { description: 'A host silent this long is taken as lost; more than twice heartbeatSeconds.' }),
};

// ---------------------------------------------------------------------------
// This machine: directories, the CLI's choices, the VMM drivers

export interface HostConfig {
  paths: { cache: string; data: string; runtime: string };
  cli: { driver: string; serveConfig: string | null; imagesConfig: string; url: string | null };
  qemu: { binary: string | null; accel: 'auto' | 'kvm' | 'tcg' };
  firecracker: { binary: string | null };
  jailer: { binary: string | null; uid: number | null; gid: number | null; chroot: string | null; netns: string | null };
  flintlock: {
    endpoint: string;
    namespace: string | null;
    owner: string | null;
    agentListen: string;
    agentUrl: string | null;
    kernelImage: string | null;
    kernelFilename: string | null;
    initrdImage: string | null;
    rootImages: string[];
  };
  image: { kernelDeb: string | null };
}

export type HostConfigKey = KeyPaths<HostConfig>;

const home = (context: DefaultContext): string => context.env.HOME ?? homedir();
const uid = process.getuid?.() ?? 0;
const DIRECTORY = 'a directory path, e.g. /var/lib/hearth';

export const HOST_SETTINGS: { readonly [K in HostConfigKey]: Setting } = {
  'paths.cache': text(DIRECTORY, (context) => join(context.env.XDG_CACHE_HOME ?? join(home(context), '.cache'), 'hearth'), nonEmpty, {
    env: 'HEARTH_CACHE_DIR',
    description: 'Reproducible artefacts (kernel packages, images), safe to delete. Default: $XDG_CACHE_HOME/hearth.',
  }),
  'paths.data': text(DIRECTORY, (context) => join(context.env.XDG_DATA_HOME ?? join(home(context), '.local', 'share'), 'hearth'), nonEmpty, {
    env: 'HEARTH_DATA_DIR',
    description: 'What a user made and wants kept (snapshots, the SQLite ledger). Default: $XDG_DATA_HOME/hearth.',
  }),
  'paths.runtime': text(DIRECTORY, (context) => join(uid === 0 ? '/run' : (context.env.XDG_RUNTIME_DIR ?? join('/tmp', `hearth-${uid}`)), 'hearth'), nonEmpty, {
    env: 'HEARTH_RUNTIME_DIR',
    description: 'Live VMs (sockets, overlays, logs); the registry `vm gc` reads. Default: /run/hearth as root, else $XDG_RUNTIME_DIR/hearth.',
  }),
  'cli.driver': text('a driver name: qemu, firecracker or flintlock', 'qemu', nonEmpty, {
    env: 'HEARTH_DRIVER',
    flag: '--driver',
    description: 'Driver the CLI runs VMs on (hearth serve uses driver.name).',
  }),
  'cli.serveConfig': optionalText('the path of a YAML file, e.g. /etc/hearth/hearth.yaml', undefined, {
    env: 'HEARTH_SERVE_CONFIG',
    flag: '--config',
    description: 'YAML file of `hearth serve`; unset: the embedded defaults.',
  }),
  'cli.imagesConfig': text(
    'the path of a JSON file',
    (context) => join(context.env.XDG_CONFIG_HOME ?? join(home(context), '.config'), 'hearth', 'config.json'),
    nonEmpty,
    {
      env: 'HEARTH_CONFIG',
      description: 'JSON file of image settings (images.*); a missing file is fine. Default: $XDG_CONFIG_HOME/hearth/config.json.',
    },
  ),
  'cli.url': optionalText('an http:// or https:// URL, e.g. http://127.0.0.1:8080', httpUrl, {
    env: 'HEARTH_URL',
    flag: '--url',
    description: 'The server `hearth status`, `jobs` and `logs` ask; unset: the serve config address.',
  }),
  'qemu.binary': optionalText('a path or a name on PATH, e.g. qemu-system-x86_64', nonEmpty, {
    env: 'HEARTH_QEMU',
    description: 'The QEMU binary; unset: qemu-system-x86_64 on PATH.',
  }),
  'qemu.accel': choice(['auto', 'kvm', 'tcg'], 'auto', { env: 'HEARTH_ACCEL', description: 'QEMU accelerator for the CLI; auto probes KVM with a boot.' }),
  'firecracker.binary': optionalText('a path or a name on PATH, e.g. /usr/local/bin/firecracker', nonEmpty, {
    env: 'HEARTH_FIRECRACKER',
    description: 'The firecracker binary; unset: firecracker on PATH.',
  }),
  'jailer.binary': optionalText('the path of the jailer from the same Firecracker release, e.g. /usr/local/bin/jailer', nonEmpty, {
    env: 'HEARTH_JAILER',
    description: 'Run each Firecracker VMM through this jailer; set, jailer.uid and jailer.gid are required.',
  }),
  'jailer.uid': optionalInteger(1, 4_294_967_294, '$(id -u firecracker)', { description: 'Unprivileged user Firecracker runs as under the jailer.' }),
  'jailer.gid': optionalInteger(1, 4_294_967_294, '$(id -g firecracker)', { description: 'Unprivileged group Firecracker runs as under the jailer.' }),
  'jailer.chroot': optionalText('a directory path, e.g. /srv/jailer', nonEmpty, {
    description: "Base directory of the jailer's chroots; unset: the jailer's own default.",
  }),
  'jailer.netns': optionalText('a network namespace path, e.g. /var/run/netns/hearth', nonEmpty, {
    description: 'Network namespace the VMM joins (only for VMs without network).',
  }),
  'flintlock.endpoint': text("flintlockd's gRPC HOST:PORT, e.g. 10.0.0.2:9090", 'localhost:9090', nonEmpty, {
    description: "flintlockd's --grpc-endpoint. Setting any flintlock.* key turns the flintlock driver's settings on.",
  }),
  'flintlock.namespace': optionalText('a namespace name, e.g. hearth', nonEmpty, { description: 'Namespace of the microVMs in flintlockd.' }),
  'flintlock.owner': optionalText('an owner name, e.g. hearth', nonEmpty, { description: 'Owner label of the microVMs in flintlockd.' }),
  'flintlock.agentListen': text('IP:PORT, e.g. 0.0.0.0:7071', '0.0.0.0:7071', nonEmpty, {
    description: 'Where Hearth listens for guest agents dialling back.',
  }),
  'flintlock.agentUrl': optionalText('a URL a guest can dial, e.g. tcp://10.0.0.1:7071', nonEmpty, {
    description: 'The listener as guests reach it (an IP address).',
  }),
  'flintlock.kernelImage': optionalText('a container image with the guest kernel, e.g. ghcr.io/liquidmetal-dev/flintlock-kernel:5.10.77', nonEmpty, {
    description: 'Container image holding the guest kernel.',
  }),
  'flintlock.kernelFilename': optionalText('a file name in the kernel image, e.g. boot/vmlinux', nonEmpty, { description: 'Kernel file inside kernelImage.' }),
  'flintlock.initrdImage': optionalText('a container image with an initrd', nonEmpty, {
    description: 'Container image holding an initrd, if the kernel needs one.',
  }),
  'flintlock.rootImages': list('a list of NAME=IMAGE, e.g. debian=ghcr.io/acme/hearth-debian:12,minimal=ghcr.io/acme/hearth-minimal:1', rootImage, {
    description: 'Root filesystem image for each Hearth image name.',
  }),
  'image.kernelDeb': optionalText('the path of a downloaded linux-image-*-cloud-amd64 .deb', nonEmpty, {
    env: 'HEARTH_KERNEL_DEB',
    description: 'Guest kernel package to use instead of fetching one with apt-get download.',
  }),
};

// ---------------------------------------------------------------------------
// Image builds: the JSON file at cli.imagesConfig

export interface ImagesConfig {
  images: { debian: { packages: string[]; mirror: string | null; suite: string | null } };
}

export type ImagesConfigKey = KeyPaths<ImagesConfig>;

export const IMAGE_SETTINGS: { readonly [K in ImagesConfigKey]: Setting } = {
  'images.debian.packages': list(
    'a list of Debian package names, e.g. ["jq", "make"]',
    (value) => (/^[a-z0-9][a-z0-9+.-]*$/.test(value) ? { value } : { reason: `has ${JSON.stringify(value)}, which is not a Debian package name` }),
    {
      description: 'Packages added to the debian image (besides those CI jobs expect).',
    },
  ),
  'images.debian.mirror': optionalText('an http:// or https:// URL, e.g. http://deb.debian.org/debian', httpUrl, {
    description: 'Debian mirror debootstrap fetches from.',
  }),
  'images.debian.suite': optionalText('a Debian suite, e.g. bookworm', nonEmpty, { description: 'Debian release of the debian image.' }),
};

// ---------------------------------------------------------------------------
// Pools: pools.NAME.KEY in the serve file

export type PoolSettingKey = Exclude<keyof PoolConfig, 'name'>;

export const POOL_SETTINGS: { readonly [K in PoolSettingKey]: Setting } = {
  labels: list('a list of labels, e.g. [hearth, fast]', nonEmpty, {
    description: 'A job goes to this pool when it carries hearth/pool=NAME, or all of these labels.',
  }),
  cpus: integer(VM_BOUNDS.cpus.min, VM_BOUNDS.cpus.max, 2, { description: 'vCPUs of each VM.' }),
  memoryMib: integer(VM_BOUNDS.memoryMib.min, VM_BOUNDS.memoryMib.max, 2048, { description: 'Memory (MiB) of each VM.' }),
  image: text('a built image, e.g. debian', 'debian', imageName, { description: 'Image the VMs boot.' }),
  mode: choice(['booted', 'snapshot'], 'booted', {
    description: 'booted: VMs cold-booted and idling; snapshot: clones restored from a template snapshot (fastest).',
  }),
  minIdle: integer(0, 256, 1, { description: 'Idle VMs kept ready.' }),
  maxSize: integer(1, 1024, 4, { description: 'Most VMs in the pool, busy or idle.' }),
  maxIdleAgeSeconds: integer(10, 30 * 86_400, 3600, { description: 'Idle VMs older than this are recycled (fresh guest clock and entropy).' }),
  templateMaxAgeSeconds: integer(60, 365 * 86_400, 86_400, {
    description: 'snapshot mode: the template is rebuilt this often even when the image did not change.',
  }),
  autoscale: flag(false, { description: 'Let minIdle follow demand (an EWMA of arrivals) between minIdle and maxIdle.' }),
  maxIdle: integer(0, 256, 4, { description: 'Most idle VMs with autoscale.' }),
  demandWindowSeconds: integer(10, 7 * 86_400, 3600, { description: "The demand EWMA's time constant." }),
};

// ---------------------------------------------------------------------------
// The whole schema

export interface SchemaTable {
  readonly name: string;
  /** Where its values come from, for the docs. */
  readonly from: string;
  /** How keys are written in the docs: `pools.NAME.` for pools. */
  readonly prefix: string;
  readonly settings: SettingTable;
}

export const SCHEMA: readonly SchemaTable[] = [
  {
    name: 'hearth serve',
    from: 'the YAML file (--config or HEARTH_SERVE_CONFIG), then HEARTH_<SECTION>_<KEY>, then flags',
    prefix: '',
    settings: SERVE_SETTINGS,
  },
  { name: 'pools', from: 'pools.NAME in the serve file, or HEARTH_POOLS holding the same mapping as JSON', prefix: 'pools.NAME.', settings: POOL_SETTINGS },
  { name: 'this host', from: 'environment variables, then flags', prefix: '', settings: HOST_SETTINGS },
  { name: 'image builds', from: 'the JSON file at cli.imagesConfig (HEARTH_CONFIG), then environment variables', prefix: '', settings: IMAGE_SETTINGS },
];

/** Every environment variable of the schema (pools have one, HEARTH_POOLS, for all). */
export const KNOWN_ENV: readonly string[] = [
  ...[SERVE_SETTINGS, HOST_SETTINGS, IMAGE_SETTINGS].flatMap((table: SettingTable) => Object.entries(table).map(([key, setting]) => envNameOf(key, setting))),
  'HEARTH_POOLS',
];

/** Keys of a table whose values are secrets: never printed, masked in job logs. */
export function secretKeys(table: SettingTable): string[] {
  return Object.entries(table)
    .filter(([, setting]) => setting.secret)
    .map(([key]) => key);
}
