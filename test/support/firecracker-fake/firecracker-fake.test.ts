import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  FrameDecoder,
  FrameType,
  decodeExit,
  decodeHello,
  decodeOutput,
  encodeExec,
  encodeFrame,
  encodeIdentity,
  HELLO_FLAG_IDENTITY_NETWORK,
  type Frame,
  type FrameTypeCode,
} from '../../../src/guest/protocol.ts';
import { FakeFirecracker, type FakeFirecrackerOptions } from './server.ts';
import { specOperations, validateRequest } from './spec.ts';
import { IMPLEMENTED_OPERATIONS } from './vmm.ts';
import { waitFor } from '../wait.ts';

const BIN = fileURLToPath(new URL('./bin/firecracker', import.meta.url));
const AGENT_PORT = 52;

const dirs: string[] = [];
const fakes: FakeFirecracker[] = [];
after(async () => {
  await Promise.all(fakes.map((f) => f.close()));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A scratch dir with the host files a boot needs (the fake checks they exist). */
function workdir(): { dir: string; kernel: string; rootfs: string } {
  const dir = mkdtempSync(join(tmpdir(), 'fc-fake-'));
  dirs.push(dir);
  const kernel = join(dir, 'vmlinux');
  const rootfs = join(dir, 'rootfs.ext4');
  writeFileSync(kernel, 'kernel');
  writeFileSync(rootfs, 'rootfs');
  return { dir, kernel, rootfs };
}

async function startFake(dir: string, name: string, options: FakeFirecrackerOptions = { vsockAgent: true }): Promise<FakeFirecracker> {
  const fake = await FakeFirecracker.start(join(dir, name), options);
  fakes.push(fake);
  return fake;
}

interface Answer {
  status: number;
  contentType: string | undefined;
  json: unknown;
}

function api(socketPath: string, method: string, path: string, body?: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = request(
      { socketPath, method, path, headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], json: text ? JSON.parse(text) : undefined });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function expect204(socketPath: string, method: string, path: string, body?: unknown): Promise<void> {
  const answer = await api(socketPath, method, path, body);
  assert.equal(answer.status, 204, `${method} ${path}: ${JSON.stringify(answer.json)}`);
}

async function expectFault(socketPath: string, method: string, path: string, body: unknown, status: number, fault: RegExp): Promise<void> {
  const answer = await api(socketPath, method, path, body);
  assert.equal(answer.status, status, `${method} ${path}: ${JSON.stringify(answer.json)}`);
  assert.equal(answer.contentType, 'application/json');
  assert.match((answer.json as { fault_message: string }).fault_message, fault);
}

/** The host end of a vsock connection, after the `CONNECT` handshake, reading agent frames. */
class GuestLink {
  private readonly decoder = new FrameDecoder();
  private readonly frames: Frame[] = [];
  private wake: (() => void) | undefined;
  ended = false;

  private constructor(
    private readonly socket: Socket,
    readonly hostPort: number,
  ) {}

  static open(udsPath: string, port: number): Promise<GuestLink> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(udsPath);
      let head = Buffer.alloc(0);
      socket.on('error', reject);
      socket.on('close', () => reject(new Error('vsock closed before OK')));
      const onData = (chunk: Buffer): void => {
        head = Buffer.concat([head, chunk]);
        const nl = head.indexOf(0x0a);
        if (nl < 0) return;
        socket.off('data', onData);
        const ok = /^OK (\d+)$/.exec(head.subarray(0, nl).toString());
        if (!ok) return reject(new Error(`bad handshake: ${head.toString()}`));
        const link = new GuestLink(socket, Number(ok[1]));
        socket.removeAllListeners('close');
        socket.on('close', () => {
          link.ended = true;
          link.wake?.();
        });
        socket.on('data', (c: Buffer) => link.take(c));
        link.take(head.subarray(nl + 1));
        resolve(link);
      };
      socket.on('data', onData);
      socket.write(`CONNECT ${port}\n`);
    });
  }

  private take(chunk: Buffer): void {
    this.frames.push(...this.decoder.push(chunk));
    this.wake?.();
  }

  send(type: FrameTypeCode, id: number, payload?: Buffer): void {
    this.socket.write(encodeFrame(type, id, payload));
  }

  async next(timeoutMs = 2000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length === 0) {
      if (this.ended) throw new Error('vsock closed');
      if (Date.now() > deadline) throw new Error('no frame from the agent');
      await Promise.race([new Promise<void>((r) => (this.wake = r)), sleep(20)]);
    }
    return this.frames.shift() as Frame;
  }

  pending(): number {
    return this.frames.length;
  }

  /** Runs one command and collects what the agent sent for it. */
  async exec(id: number, argv: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
    this.send(FrameType.EXEC, id, encodeExec({ argv, env: { CI: 'true' }, cwd: '/', timeoutMs: 1000 }));
    let stdout = '';
    let stderr = '';
    for (;;) {
      const frame = await this.next();
      assert.equal(frame.id, id);
      if (frame.type === FrameType.STDOUT) stdout += decodeOutput(frame.payload).data.toString();
      else if (frame.type === FrameType.STDERR) stderr += decodeOutput(frame.payload).data.toString();
      else if (frame.type === FrameType.EXIT) return { stdout, stderr, code: decodeExit(frame.payload).code };
      else assert.fail(`unexpected frame type ${frame.type}`);
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Configures a bootable microVM: kernel, 2 vCPUs, a root drive and a vsock. */
async function configure(sock: string, files: { dir: string; kernel: string; rootfs: string }): Promise<string> {
  const udsPath = join(files.dir, 'v.sock');
  await expect204(sock, 'PUT', '/boot-source', { kernel_image_path: files.kernel, boot_args: 'console=ttyS0 reboot=k panic=1' });
  await expect204(sock, 'PUT', '/machine-config', { vcpu_count: 2, mem_size_mib: 256 });
  await expect204(sock, 'PUT', '/drives/rootfs', { drive_id: 'rootfs', path_on_host: files.rootfs, is_root_device: true, is_read_only: false });
  await expect204(sock, 'PUT', '/vsock', { guest_cid: 3, uds_path: udsPath });
  return udsPath;
}

describe('FakeFirecracker lifecycle', () => {
  it('boots, runs commands through the vsock agent, snapshots, and restores into a fresh process', async () => {
    const files = workdir();
    const first = await startFake(files.dir, 'api-1.sock');
    const sock = first.apiSocketPath;

    assert.deepEqual((await api(sock, 'GET', '/')).json, { id: 'anonymous-instance', state: 'Not started', vmm_version: '1.7.0', app_name: 'Firecracker' });
    const udsPath = await configure(sock, files);
    await expect204(sock, 'PUT', '/actions', { action_type: 'InstanceStart' });
    assert.equal(((await api(sock, 'GET', '/')).json as { state: string }).state, 'Running');

    const machine = await api(sock, 'GET', '/machine-config');
    assert.equal(machine.status, 200);
    assert.deepEqual(machine.json, { vcpu_count: 2, mem_size_mib: 256, smt: false, track_dirty_pages: false, huge_pages: 'None' });
    const config = (await api(sock, 'GET', '/vm/config')).json as Record<string, unknown>;
    assert.deepEqual(config.drives, [{ drive_id: 'rootfs', path_on_host: files.rootfs, is_root_device: true, is_read_only: false }]);
    assert.deepEqual(config.vsock, { guest_cid: 3, uds_path: udsPath });
    assert.equal((config['boot-source'] as { kernel_image_path: string }).kernel_image_path, files.kernel);

    // Cold boot: the agent's one unprompted HELLO goes to the first connection.
    const link = await GuestLink.open(udsPath, AGENT_PORT);
    assert.ok(link.hostPort >= 2 ** 30);
    const hello = await link.next();
    assert.equal(hello.type, FrameType.HELLO);
    assert.deepEqual(decodeHello(hello.payload), { version: 1, agent: 'hearth-agent/1', flags: HELLO_FLAG_IDENTITY_NETWORK });
    link.send(FrameType.IDENTITY, 1, encodeIdentity({ unixTimeUs: 1n, hostname: 'runner-1', machineId: 'a'.repeat(32), seed: Buffer.alloc(32, 7) }));
    assert.deepEqual(await link.next(), { type: FrameType.IDENTITY_OK, id: 1, payload: Buffer.alloc(0) });
    assert.deepEqual(await link.exec(2, ['echo', 'hello', 'world']), { stdout: 'hello world\n', stderr: '', code: 0 });
    assert.deepEqual(await link.exec(3, ['sh', '-c', 'exit 3']), { stdout: '', stderr: '', code: 3 });
    const missing = await link.exec(4, ['make', 'test']);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /cannot run make/);
    assert.deepEqual(
      first.execs.map((e) => e.argv),
      [
        ['echo', 'hello', 'world'],
        ['sh', '-c', 'exit 3'],
        ['make', 'test'],
      ],
    );
    assert.deepEqual(first.execs[0]?.env, { CI: 'true' });

    await expect204(sock, 'PATCH', '/vm', { state: 'Paused' });
    assert.equal(((await api(sock, 'GET', '/')).json as { state: string }).state, 'Paused');
    await expectFault(sock, 'PUT', '/boot-source', { kernel_image_path: files.kernel }, 400, /not supported after starting the microVM/);
    const snapshotPath = join(files.dir, 'vm.snap');
    const memPath = join(files.dir, 'vm.mem');
    await expect204(sock, 'PUT', '/snapshot/create', { snapshot_path: snapshotPath, mem_file_path: memPath, snapshot_type: 'Full' });
    assert.ok(existsSync(snapshotPath) && existsSync(memPath));
    link.close();
    assert.deepEqual(first.rejected, []);
    assert.deepEqual(
      first.requests.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.path} ${r.status}`),
      [
        'PUT /boot-source 204',
        'PUT /machine-config 204',
        'PUT /drives/rootfs 204',
        'PUT /vsock 204',
        'PUT /actions 204',
        'PATCH /vm 204',
        'PUT /boot-source 400',
        'PUT /snapshot/create 204',
      ],
    );

    const second = await startFake(files.dir, 'api-2.sock');
    const sock2 = second.apiSocketPath;
    const clonePath = join(files.dir, 'clone-v.sock');
    await expect204(sock2, 'PUT', '/snapshot/load', {
      snapshot_path: snapshotPath,
      mem_backend: { backend_type: 'File', backend_path: memPath },
      resume_vm: true,
      vsock_override: { uds_path: clonePath },
    });
    assert.equal(((await api(sock2, 'GET', '/')).json as { state: string }).state, 'Running');
    assert.deepEqual((await api(sock2, 'GET', '/machine-config')).json, machine.json);
    assert.equal(second.vsockPath, clonePath);

    // A restored agent said HELLO before the snapshot; it answers PING only.
    // Frames arrive in order: an unprompted HELLO would come before the PING's answer and then be left over.
    const clone = await GuestLink.open(clonePath, AGENT_PORT);
    clone.send(FrameType.PING, 0);
    assert.equal((await clone.next()).type, FrameType.HELLO);
    assert.deepEqual(await clone.exec(1, ['echo', 'restored']), { stdout: 'restored\n', stderr: '', code: 0 });
    assert.equal(clone.pending(), 0, 'one HELLO only: the answer to PING');
    clone.close();
    assert.deepEqual(second.rejected, []);
  });

  it('holds guest traffic while paused and refuses vsock connections before boot', async () => {
    const files = workdir();
    const fake = await startFake(files.dir, 'api.sock');
    const udsPath = await configure(fake.apiSocketPath, files);
    await assert.rejects(GuestLink.open(udsPath, AGENT_PORT), /closed before OK/);

    await expect204(fake.apiSocketPath, 'PUT', '/actions', { action_type: 'InstanceStart' });
    const link = await GuestLink.open(udsPath, AGENT_PORT);
    assert.equal((await link.next()).type, FrameType.HELLO);
    await expect204(fake.apiSocketPath, 'PATCH', '/vm', { state: 'Paused' });
    link.send(FrameType.PING, 0);
    await waitFor(() => fake.parkedGuestWork > 0, { what: 'the paused guest to receive the PING', timeout: 5_000, interval: 5 });
    assert.equal(link.pending(), 0, 'a paused guest must not answer');
    await expect204(fake.apiSocketPath, 'PATCH', '/vm', { state: 'Resumed' });
    assert.equal((await link.next()).type, FrameType.HELLO);
    link.close();
  });

  it('enforces the state rules of the real VMM', async () => {
    const files = workdir();
    const fake = await startFake(files.dir, 'api.sock');
    const sock = fake.apiSocketPath;
    await expectFault(sock, 'PUT', '/actions', { action_type: 'InstanceStart' }, 400, /without kernel configuration/);
    await expectFault(sock, 'PATCH', '/vm', { state: 'Paused' }, 400, /not supported before starting/);
    await expectFault(sock, 'PUT', '/boot-source', { kernel_image_path: join(files.dir, 'nope') }, 400, /nope: No such file/);
    await configure(sock, files);
    await expectFault(
      sock,
      'PUT',
      '/snapshot/load',
      { snapshot_path: '/x', mem_backend: { backend_type: 'File', backend_path: '/y' } },
      400,
      /not allowed after configuring/,
    );
    await expectFault(sock, 'PUT', '/vsock', { guest_cid: 3, uds_path: files.rootfs }, 400, /EADDRINUSE/);
    await expect204(sock, 'PUT', '/actions', { action_type: 'InstanceStart' });
    await expectFault(sock, 'PUT', '/actions', { action_type: 'InstanceStart' }, 400, /after starting/);
    await expectFault(sock, 'PUT', '/snapshot/create', { snapshot_path: join(files.dir, 's'), mem_file_path: join(files.dir, 'm') }, 400, /must be paused/);
    assert.equal(existsSync(join(files.dir, 's')), false);

    const fresh = await startFake(files.dir, 'api-fresh.sock');
    await expect204(fresh.apiSocketPath, 'PUT', '/logger', { log_path: join(files.dir, 'fc.log'), level: 'Debug' });
    await expectFault(
      fresh.apiSocketPath,
      'PUT',
      '/snapshot/load',
      { snapshot_path: join(files.dir, 'absent.snap'), mem_backend: { backend_type: 'File', backend_path: files.rootfs } },
      400,
      /Load snapshot error: .*absent\.snap/,
    );
    await expectFault(
      fresh.apiSocketPath,
      'PUT',
      '/snapshot/load',
      { snapshot_path: files.kernel, mem_backend: { backend_type: 'File', backend_path: files.rootfs } },
      400,
      /Load snapshot error/,
    );
  });
});

describe('FakeFirecracker spec validation', () => {
  it('answers bodies the spec forbids with 400 and a fault naming the field', async () => {
    const files = workdir();
    const fake = await startFake(files.dir, 'api.sock');
    const sock = fake.apiSocketPath;
    await expectFault(sock, 'PUT', '/machine-config', { vcpu_count: '2', mem_size_mib: 256 }, 400, /`vcpu_count`.*integer/);
    await expectFault(sock, 'PUT', '/machine-config', { vcpu_count: 33, mem_size_mib: 256 }, 400, /`vcpu_count`/);
    await expectFault(sock, 'PUT', '/machine-config', { vcpu_count: 2, mem_size_mb: 256 }, 400, /`mem_size_mib`/);
    await expectFault(sock, 'PUT', '/machine-config', { vcpu_count: 2, mem_size_mib: 256, vcpus: 2 }, 400, /unknown field `vcpus`/);
    await expectFault(
      sock,
      'PUT',
      '/drives/rootfs',
      { drive_id: 'rootfs', path_on_host: files.rootfs, is_root_device: true },
      400,
      /missing field `is_read_only`/,
    );
    await expectFault(
      sock,
      'PUT',
      '/drives/rootfs',
      { drive_id: 'data', path_on_host: files.rootfs, is_root_device: true, is_read_only: true },
      400,
      /id from the path does not match/,
    );
    await expectFault(sock, 'PUT', '/vsock', { guest_cid: 2, uds_path: join(files.dir, 'v.sock') }, 400, /`guest_cid`/);
    await expectFault(sock, 'PUT', '/actions', { action_type: 'Boot' }, 400, /`action_type`.*InstanceStart/);
    await expectFault(sock, 'PUT', '/boot-source', undefined, 400, /Empty PUT request/);
    await expectFault(sock, 'PUT', '/boot-source', '{"kernel_image_path": ', 400, /deserializing the json body/);
    await expectFault(sock, 'GET', '/made-up', undefined, 404, /Invalid request method and\/or path: GET \/made-up/);
    await expectFault(sock, 'DELETE', '/drives/rootfs', undefined, 405, /DELETE \/drives\/rootfs/);

    assert.deepEqual(fake.requests, [], 'rejected requests never reach the VMM');
    assert.equal(fake.rejected.length, 12);
    assert.equal(fake.state, 'Not started');
  });

  it('validates against the API schema written in the repository', () => {
    assert.deepEqual(validateRequest('PUT', '/drives/data', { drive_id: 'data', path_on_host: '/d', is_root_device: false, is_read_only: true }), {
      ok: true,
      operation: 'putGuestDriveByID',
      params: { drive_id: 'data' },
    });
    assert.equal(validateRequest('PATCH', '/machine-config', { mem_size_mib: 512 }).ok, true, 'PATCH takes a subset');
    assert.equal(validateRequest('PUT', '/machine-config', { vcpu_count: 3, mem_size_mib: 128, smt: true }).ok, false);
    assert.equal(validateRequest('PUT', '/snapshot/load', { snapshot_path: '/s' }).ok, false, 'needs a memory source');
    assert.equal(validateRequest('PUT', '/mmds/config', { network_interfaces: [], ipv4_address: '10.0.0.1' }).ok, false);
    assert.equal(
      validateRequest('PUT', '/drives/d', {
        drive_id: 'd',
        is_root_device: false,
        rate_limiter: { bandwidth: { size: 1 } },
        path_on_host: '/d',
        is_read_only: true,
      }).ok,
      false,
    );
  });

  it('implements every operation in the API schema', () => {
    const missing = specOperations().filter((op) => !IMPLEMENTED_OPERATIONS.includes(op.operation));
    assert.deepEqual(missing, []);
  });
});

describe('bin/firecracker stand-in', () => {
  it('serves the fake on --api-sock, logs requests, and exits on SIGTERM', async () => {
    const files = workdir();
    const sock = join(files.dir, 'fc.sock');
    const log = join(files.dir, 'requests.jsonl');
    const child = spawn(BIN, ['--id', 'vm-7', '--api-sock', sock, '--level', 'Debug', '--log-path', join(files.dir, 'fc.log'), '--seccomp-level', '0'], {
      env: { ...process.env, FAKE_FIRECRACKER_LOG: log },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor(
        () => {
          if (child.exitCode !== null) assert.fail(`the stand-in exited with ${child.exitCode} before opening its socket: ${output}`);
          return existsSync(sock);
        },
        { what: 'the stand-in to open its API socket', timeout: 15_000, interval: 20, detail: () => output },
      );
      assert.equal(((await api(sock, 'GET', '/')).json as { id: string }).id, 'vm-7');
      await expect204(sock, 'PUT', '/boot-source', { kernel_image_path: files.kernel });
      await expectFault(sock, 'PUT', '/machine-config', { vcpu_count: 'one', mem_size_mib: 128 }, 400, /vcpu_count/);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0);
    assert.equal(existsSync(sock), false);
    assert.equal(output, '');
    const lines = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { method: string; path: string; status: number; valid: boolean });
    assert.deepEqual(
      lines.map((l) => [l.method, l.path, l.status, l.valid]),
      [
        ['GET', '/', 200, true],
        ['PUT', '/boot-source', 204, true],
        ['PUT', '/machine-config', 400, false],
      ],
    );
  });
});
