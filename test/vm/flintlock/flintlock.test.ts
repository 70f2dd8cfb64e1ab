import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { isHearthError } from '../../../src/errors.ts';
import { agentBootstrapMetadata } from '../../../src/vm/flintlock/cloud-init.ts';
import { FlintlockClient } from '../../../src/vm/flintlock/client.ts';
import { packString } from '../../../src/vm/flintlock/convert.ts';
import { isFlintlockError } from '../../../src/vm/flintlock/errors.ts';
import type { FlintlockMicroVmSpec } from '../../../src/vm/flintlock/types.ts';
import { FakeFlintlock, type FakeErrorStyle } from '../../support/flintlock-fake/server.ts';

const TOKEN = 'hat_s3cr3t-t0ken';

function runnerSpec(id: string): FlintlockMicroVmSpec {
  return {
    id,
    namespace: 'hearth',
    labels: { 'hearth.dev/pool': 'default' },
    vcpu: 2,
    memoryInMb: 2048,
    kernel: { image: 'ghcr.io/hearth/kernel:6.1', filename: 'vmlinux', cmdline: { console: 'ttyS0' }, addNetworkConfig: true },
    rootVolume: { id: 'root', isReadOnly: false, source: { containerSource: 'ghcr.io/hearth/runner:ubuntu-24.04' } },
    interfaces: [{ deviceId: 'eth1', type: 'TAP' }],
    metadata: agentBootstrapMetadata({ agentUrl: 'https://10.0.0.1:8443/agent', token: TOKEN, hostname: id }),
  };
}

function decode(value: string | undefined): string {
  assert.ok(value !== undefined);
  return Buffer.from(value, 'base64').toString('utf8');
}

// Each error style once: the client must understand flintlockd as it is, and a stricter server too.
for (const errorStyle of ['flintlockd', 'canonical'] satisfies FakeErrorStyle[]) {
  describe(`Flintlock client against the fake (${errorStyle} errors)`, () => {
    let fake: FakeFlintlock;
    let client: FlintlockClient;

    before(async () => {
      fake = await FakeFlintlock.start({ errorStyle, createDelayMs: 300, deleteDelayMs: 300 });
      client = FlintlockClient.connect(fake.endpoint, { pollIntervalMs: 50 });
    });
    after(async () => {
      client.close();
      await fake.close();
    });

    it('creates, waits for CREATED, gets, lists, deletes, and then no longer finds the microVM', async () => {
      const created = await client.createMicroVm(runnerSpec('runner-1'), { requestedBy: 'hearth' });
      assert.match(created.uid, /^[0-9A-HJKMNP-TV-Z]{26}$/, 'a ULID');
      assert.equal(created.status.state, 'PENDING');
      assert.ok(created.createdAt instanceof Date);

      const sent = fake.requests.find((r) => r.method === 'CreateMicroVM')?.request as {
        microvm: Record<string, unknown>;
        metadata: Record<string, { type_url: string; value: Buffer }>;
      };
      assert.equal(sent.microvm.memory_in_mb, 2048, 'camelCase mapped to the proto field');
      assert.deepEqual(sent.microvm.kernel, {
        image: 'ghcr.io/hearth/kernel:6.1',
        cmdline: { console: 'ttyS0' },
        filename: 'vmlinux',
        add_network_config: true,
      });
      assert.equal(sent.metadata.requestedBy?.type_url, 'type.googleapis.com/google.protobuf.StringValue');

      const ready = await client.waitForState(created.uid, 'CREATED', 5_000);
      assert.equal(ready.status.state, 'CREATED');

      const got = await client.getMicroVm(created.uid);
      assert.equal(got.uid, created.uid);
      assert.equal(got.spec.memoryInMb, 2048);
      assert.equal(got.spec.rootVolume.source.containerSource, 'ghcr.io/hearth/runner:ubuntu-24.04');
      assert.deepEqual(got.spec.interfaces, [{ deviceId: 'eth1', type: 'TAP' }]);
      assert.deepEqual(got.spec.labels, { 'hearth.dev/pool': 'default' });

      const other = await client.createMicroVm({ ...runnerSpec('runner-2'), namespace: 'elsewhere' });
      assert.deepEqual(
        (await client.listMicroVms('hearth')).map((vm) => vm.uid),
        [created.uid],
      );
      assert.deepEqual(
        (await client.listMicroVms('elsewhere', 'runner-2')).map((vm) => vm.uid),
        [other.uid],
      );
      assert.deepEqual(await client.listMicroVms('elsewhere', 'runner-1'), []);

      await client.deleteMicroVm(created.uid);
      assert.equal((await client.getMicroVm(created.uid)).status.state, 'DELETING', 'flintlockd deletes in the background');
      await client.waitForDeletion(created.uid, 5_000);
      await assert.rejects(client.getMicroVm(created.uid), (error) => {
        assert.ok(isFlintlockError(error, 'not-found'), String(error));
        assert.equal(error.grpcCode, errorStyle === 'canonical' ? 'NOT_FOUND' : 'UNKNOWN');
        assert.equal(error.uid, created.uid);
        assert.match(error.message, /GetMicroVM/);
        return true;
      });
      await assert.rejects(client.deleteMicroVm(created.uid), (error) => isFlintlockError(error, 'not-found'));
    });

    it('rejects a spec without kernel.image, naming the field', async () => {
      const spec = runnerSpec('no-kernel');
      await assert.rejects(client.createMicroVm({ ...spec, kernel: { ...spec.kernel, image: '' } }), (error) => {
        assert.ok(isFlintlockError(error, 'invalid-spec'), String(error));
        assert.equal(error.grpcCode, errorStyle === 'canonical' ? 'INVALID_ARGUMENT' : 'UNKNOWN');
        assert.match(error.details, /kernel\.image/);
        assert.match(error.fix, /field named/);
        return true;
      });
    });

    it('rejects a spec with vcpu 0, naming the field', async () => {
      await assert.rejects(client.createMicroVm({ ...runnerSpec('no-cpu'), vcpu: 0 }), (error) => {
        assert.ok(isFlintlockError(error, 'invalid-spec'), String(error));
        assert.match(error.details, /vcpu/);
        return true;
      });
      assert.ok(![...fake.microvms.values()].some((vm) => vm.spec?.id === 'no-cpu'), 'a rejected spec is not stored');
    });

    it('reports a microVM flintlockd gave up on as failed, with its retry count', async () => {
      const created = await client.createMicroVm(runnerSpec('doomed'));
      fake.fail(created.uid, 7);
      await assert.rejects(client.waitForState(created.uid, 'CREATED', 5_000), (error) => {
        assert.ok(isFlintlockError(error, 'failed'), String(error));
        assert.match(error.details, /FAILED after 7/);
        return true;
      });
    });

    it('times out waiting when the microVM stays PENDING', async () => {
      const slow = await FakeFlintlock.start({ errorStyle, createDelayMs: 60_000 });
      const slowClient = FlintlockClient.connect(slow.endpoint, { pollIntervalMs: 20 });
      try {
        const created = await slowClient.createMicroVm(runnerSpec('slow'));
        await assert.rejects(
          slowClient.waitForState(created.uid, 'CREATED', 150),
          (error) => isFlintlockError(error, 'timeout') && /still PENDING/.test(error.details),
        );
      } finally {
        slowClient.close();
        await slow.close();
      }
    });
  });
}

describe('the fake checks specs like flintlockd', () => {
  let fake: FakeFlintlock;
  let client: FlintlockClient;
  before(async () => {
    fake = await FakeFlintlock.start({ errorStyle: 'canonical' });
    client = FlintlockClient.connect(fake.endpoint);
  });
  after(async () => {
    client.close();
    await fake.close();
  });

  const cases: [string, (spec: FlintlockMicroVmSpec) => FlintlockMicroVmSpec, RegExp][] = [
    ['id', (s) => ({ ...s, id: '' }), /^id is required/],
    ['namespace', (s) => ({ ...s, namespace: '' }), /^namespace is required/],
    ['memory_in_mb', (s) => ({ ...s, memoryInMb: 0 }), /^memory_in_mb/],
    ['root_volume.id', (s) => ({ ...s, rootVolume: { ...s.rootVolume, id: '' } }), /^root_volume\.id/],
    ['root_volume.source', (s) => ({ ...s, rootVolume: { ...s.rootVolume, source: {} } }), /^root_volume\.source\.container_source/],
    ['metadata keys', (s) => ({ ...s, metadata: { ...s.metadata, 'vendor-data': '', 'agent-token': 'eA==' } }), /metadata key "agent-token"/],
  ];
  for (const [field, change, expected] of cases) {
    it(`answers INVALID_ARGUMENT for a bad ${field}`, async () => {
      await assert.rejects(client.createMicroVm(change(runnerSpec('bad'))), (error) => {
        assert.ok(isFlintlockError(error, 'invalid-spec'), String(error));
        assert.equal(error.grpcCode, 'INVALID_ARGUMENT');
        assert.match(error.details, expected);
        return true;
      });
    });
  }
});

describe('agentBootstrapMetadata', () => {
  const metadata = agentBootstrapMetadata({
    agentUrl: 'https://10.0.0.1:8443/agent',
    token: TOKEN,
    hostname: 'runner-7',
    sshAuthorizedKeys: ['ssh-ed25519 AAAAC3Nza test@hearth'],
  });

  it('builds base64 meta-data naming the instance and a #cloud-config user-data that starts the agent', () => {
    assert.deepEqual(Object.keys(metadata).sort(), ['meta-data', 'user-data']);
    assert.deepEqual(parse(decode(metadata['meta-data'])), { 'instance-id': 'runner-7', 'local-hostname': 'runner-7' });

    const userData = decode(metadata['user-data']);
    assert.ok(userData.startsWith('#cloud-config\n'), 'cloud-init ignores user-data without the header');
    const config = parse(userData) as {
      write_files: { path: string; permissions: string; content: string }[];
      runcmd: string[][];
      ssh_authorized_keys: string[];
    };
    const [file] = config.write_files;
    assert.equal(file?.path, '/etc/hearth/agent.env');
    assert.equal(file?.permissions, '0600');
    assert.equal(file?.content, `HEARTH_AGENT_URL='https://10.0.0.1:8443/agent'\nHEARTH_AGENT_TOKEN='${TOKEN}'\n`);
    // Detached, with its output in its own log: cloud-init waits for runcmd and for whatever holds its output.
    assert.match(
      config.runcmd[0]?.at(-1) ?? '',
      /^\(set -a && \. \/etc\/hearth\/agent\.env .*exec \/usr\/local\/sbin\/hearth-agent --connect "\$HEARTH_AGENT_URL"\) <\/dev\/null >>\/var\/log\/hearth-agent\.log 2>&1 &$/,
    );
    assert.deepEqual(config.ssh_authorized_keys, ['ssh-ed25519 AAAAC3Nza test@hearth']);
  });

  it('puts the token in user-data only', () => {
    assert.ok(decode(metadata['user-data']).includes(TOKEN));
    assert.ok(!decode(metadata['meta-data']).includes(TOKEN));
    const spec = runnerSpec('runner-8');
    const elsewhere = JSON.stringify({ ...spec, metadata: { ...spec.metadata, 'user-data': undefined } });
    assert.ok(!elsewhere.includes(TOKEN), 'not in labels, kernel cmdline or meta-data');
  });

  it('keeps a quote in the token from breaking out of the env file', () => {
    const quoted = agentBootstrapMetadata({ agentUrl: 'https://h/', token: "a'b", hostname: 'h' });
    const content = (parse(decode(quoted['user-data'])) as { write_files: { content: string }[] }).write_files[0]?.content;
    assert.match(content ?? '', /^HEARTH_AGENT_TOKEN='a'\\''b'$/m);
  });

  for (const hostname of ['', '-runner', 'runner-', 'run_ner', 'a'.repeat(64), `${'a.'.repeat(127)}a`, 'bad..dots']) {
    it(`rejects the hostname ${JSON.stringify(hostname.length > 20 ? `${hostname.slice(0, 12)}...(${hostname.length})` : hostname)}`, () => {
      assert.throws(
        () => agentBootstrapMetadata({ agentUrl: 'https://h/', token: TOKEN, hostname }),
        (error) => isHearthError(error, 'HEARTH_ERR_BAD_OPTION') && /RFC 1123/.test(error.message),
      );
    });
  }

  it('accepts RFC 1123 hostnames, digits first and dotted included', () => {
    for (const hostname of ['runner-7', '7runner', 'a'.repeat(63), 'runner.ci.example.org']) {
      assert.doesNotThrow(() => agentBootstrapMetadata({ agentUrl: 'https://h/', token: TOKEN, hostname }));
    }
  });
});

it('packs a request metadata string as a google.protobuf.StringValue, multi-byte length included', () => {
  assert.deepEqual([...packString('hi').value], [0x0a, 2, 0x68, 0x69]);
  const long = packString('x'.repeat(300));
  // 300 = 0b10_0101100: low seven bits with the continuation bit, then 2.
  assert.deepEqual([...long.value.subarray(0, 3)], [0x0a, 0xac, 0x02]);
  assert.equal(long.value.length, 303);
});

it('tells where flintlockd was expected when nothing answers', async () => {
  // A port that was free a moment ago: nothing listens there now.
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
  const client = FlintlockClient.connect(`127.0.0.1:${port}`, { callTimeoutMs: 5_000 });
  try {
    await assert.rejects(client.getMicroVm('01ABC'), (error) => {
      assert.ok(isFlintlockError(error, 'unreachable'), String(error));
      assert.equal(error.grpcCode, 'UNAVAILABLE');
      assert.match(error.message, new RegExp(`is flintlockd running at 127\\.0\\.0\\.1:${port}\\?`));
      assert.match(error.message, /GetMicroVM of microVM 01ABC/);
      return true;
    });
  } finally {
    client.close();
  }
});
