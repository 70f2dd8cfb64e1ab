// The real compiled hearth-agent in connect-back mode, run as an ordinary
// process against the host's listener: handshake, frames, refusals, retries.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { resolvePaths } from '../../src/config/paths.ts';
import { isHearthError } from '../../src/errors.ts';
import { AgentChannel } from '../../src/guest/channel.ts';
import { AgentConnectListener, parseAgentUrl } from '../../src/guest/connect-listener.ts';
import { buildGuestAgent } from '../../src/image/agent.ts';
import { createLogger } from '../../src/log.ts';
import { captureOutput } from '../support/env.ts';
import { waitFor } from '../support/wait.ts';
import { freePort } from '../support/net.ts';

interface Agent {
  readonly child: ChildProcess;
  readonly stderr: () => string;
  readonly exited: Promise<number | null>;
}

function startAgent(binary: string, args: string[], env: NodeJS.ProcessEnv): Agent {
  const child = spawn(binary, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, stderr: () => stderr, exited };
}

describe('hearth-agent --connect (connect-back)', () => {
  let agentBinary: string;
  let listener: AgentConnectListener;
  const logLines: string[] = [];
  const agents: Agent[] = [];
  const url = (): string => `tcp://127.0.0.1:${listener.port}`;

  before(async () => {
    agentBinary = (await buildGuestAgent(resolvePaths().cache)).path;
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        callback();
      },
    });
    listener = await AgentConnectListener.listen({ listen: '127.0.0.1:0', logger: createLogger({ level: 'debug', destination }), helloTimeoutMs: 2_000 });
  });
  after(async () => {
    for (const agent of agents) agent.child.kill('SIGKILL');
    await listener.close();
  });

  it('still refuses to start by hand without --connect, and names the way to run it', () => {
    const result = spawnSync(agentBinary, [], { encoding: 'utf8' });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /runs as PID 1/);
    assert.match(result.stderr, /--connect tcp:\/\/HOST:PORT/);
  });

  it('refuses a URL it cannot dial and a missing token, with exit status 2', () => {
    const badUrl = spawnSync(agentBinary, ['--connect', 'https://example.org:443'], { encoding: 'utf8', env: { HEARTH_AGENT_TOKEN: 'x' } });
    assert.equal(badUrl.status, 2);
    assert.match(badUrl.stderr, /is not tcp:\/\/IPV4:PORT/);
    const noToken = spawnSync(agentBinary, ['--connect', 'tcp://127.0.0.1:9'], { encoding: 'utf8', env: {} });
    assert.equal(noToken.status, 2);
    assert.match(noToken.stderr, /no token/);
  });

  it('authenticates, speaks the framed protocol (stdout and stderr apart, exit codes), keeps the token from its children, and exits when the host ends the session', async () => {
    const expectation = listener.expect('vm-agent1', { timeoutMs: 10_000, advertisedUrl: url() });
    const agent = startAgent(agentBinary, ['--connect', url()], { HEARTH_AGENT_TOKEN: expectation.token });
    agents.push(agent);
    const channel = AgentChannel.fromSocket(await expectation.connected);
    const hello = await channel.hello(true);
    assert.equal(hello.version, 1);
    assert.equal(hello.agent, 'hearth-agent/1');

    const out = captureOutput();
    const result = await channel.exec(
      { argv: ['sh', '-c', 'echo out; echo err >&2; exit 3'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, cwd: '/', timeoutMs: 0 },
      out.sink,
    );
    assert.equal(result.exitCode, 3);
    assert.deepEqual(out.text(), { stdout: 'out\n', stderr: 'err\n' });

    // Neither in a command's environment nor in what /proc shows of the agent's own.
    const env = captureOutput();
    await channel.exec(
      { argv: ['sh', '-c', 'env; tr "\\0" "\\n" < /proc/$PPID/environ'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, cwd: '/', timeoutMs: 0 },
      env.sink,
    );
    assert.ok(!env.text().stdout.includes(expectation.token), 'token leaked into the environment');
    assert.doesNotMatch(env.text().stdout, /HEARTH_AGENT_TOKEN=./);
    assert.ok(!(await readFile(`/proc/${agent.child.pid}/environ`, 'latin1')).includes(expectation.token));

    // The host vouches for a VM only once: the same token is refused from now on.
    const replay = await rawHello(listener.port, `HEARTH-CONNECT 1 ${expectation.token}\n`);
    assert.equal(replay, 'DENIED unknown-token\n');

    channel.close();
    assert.equal(await agent.exited, 0, agent.stderr());
    assert.match(agent.stderr(), /the host ended the session/);
    assert.ok(!agent.stderr().includes(expectation.token), 'the agent logged its token');
  });

  it('closes a connection with an unknown token or a bad hello, logging why but never the token', async () => {
    assert.equal(await rawHello(listener.port, 'HEARTH-CONNECT 1 not-a-real-token-0123456789\n'), 'DENIED unknown-token\n');
    assert.equal(await rawHello(listener.port, 'HEARTH-CONNECT 2 whatever\n'), 'DENIED version\n');
    assert.equal(await rawHello(listener.port, 'GET / HTTP/1.1\r\n'), 'DENIED bad-hello\n');
    assert.equal(await rawHello(listener.port, 'x'.repeat(400)), 'DENIED bad-hello\n');
    const refusals = logLines.filter((line) => line.includes('agent connection refused'));
    assert.ok(
      refusals.some((line) => line.includes('unknown token')),
      refusals.join('\n'),
    );
    assert.ok(!logLines.some((line) => line.includes('not-a-real-token')), 'a presented token reached the log');
  });

  it('keeps dialing with backoff while refused, and never logs the token it sends', async () => {
    const agent = startAgent(agentBinary, ['--connect', url()], { HEARTH_AGENT_TOKEN: 'wrong-token-abcdef' });
    agents.push(agent);
    await waitFor(() => (agent.stderr().match(/refused this agent/g) ?? []).length >= 2, { timeout: 10_000, interval: 20, what: 'two refusals' });
    assert.match(agent.stderr(), /refused this agent \(DENIED unknown-token\)/);
    assert.match(agent.stderr(), /retrying in \d+ ms/);
    assert.ok(!agent.stderr().includes('wrong-token-abcdef'));
    assert.equal(agent.child.exitCode, null, 'still running');
    agent.child.kill('SIGKILL');
  });

  it('dials with backoff until the host listens, then connects', async () => {
    const port = await freePort();
    const agent = startAgent(agentBinary, ['--connect', `tcp://127.0.0.1:${port}`], { HEARTH_AGENT_TOKEN: 'late-host-token' });
    agents.push(agent);
    await waitFor(() => (agent.stderr().match(/connect to .*Connection refused/g) ?? []).length >= 3, {
      timeout: 10_000,
      interval: 20,
      what: 'three failed dials',
    });
    const waits = [...agent.stderr().matchAll(/retrying in (\d+) ms/g)].map((m) => Number(m[1]));
    assert.ok(waits[1]! > waits[0]! && waits[2]! > waits[1]!, `backoff grows: ${waits.join(', ')}`);
    // A host by hand: read the hello line, answer OK, then it is the framed protocol.
    const server = createServer();
    server.listen(port, '127.0.0.1');
    try {
      const [socket] = (await once(server, 'connection')) as [Socket];
      let line = '';
      while (!line.includes('\n')) line += ((await once(socket, 'data')) as [Buffer])[0].toString('latin1');
      assert.equal(line, 'HEARTH-CONNECT 1 late-host-token\n');
      socket.pause();
      socket.write('OK\n');
      const channel = AgentChannel.fromSocket(socket);
      assert.equal((await channel.hello(true)).version, 1);
      channel.close();
      assert.equal(await agent.exited, 0);
      assert.match(agent.stderr(), /connected to tcp:\/\/127\.0\.0\.1:\d+ after [4-9] attempts/);
    } finally {
      server.close();
    }
  });

  it('times out naming the VM, the URL it was told and what to check', async () => {
    const expectation = listener.expect('vm-silent', { timeoutMs: 200, advertisedUrl: 'tcp://10.9.9.9:7071' });
    await assert.rejects(expectation.connected, (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_AGENT_NO_CONNECT'), String(error));
      assert.match(error.message, /vm-silent did not connect back to tcp:\/\/10\.9\.9\.9:7071 within 0\.2s/);
      assert.match(error.fix, /cloud-init/);
      assert.match(error.fix, /127\.0\.0\.1:\d+/, 'names the address the listener is bound to');
      return true;
    });
    assert.deepEqual(listener.waiting, []);
  });

  it('accepts only tcp://IP:PORT as the advertised URL', () => {
    assert.deepEqual(parseAgentUrl('tcp://10.0.0.1:7071'), { host: '10.0.0.1', port: 7071 });
    assert.deepEqual(parseAgentUrl('tcp://[fd00::1]:7071'), { host: 'fd00::1', port: 7071 });
    for (const bad of ['http://10.0.0.1:7071', 'tcp://hearth.local:7071', 'tcp://10.0.0.1', 'tcp://0.0.0.0:7071', 'tcp://10.0.0.1:0']) {
      assert.throws(
        () => parseAgentUrl(bad),
        (error) => isHearthError(error, 'HEARTH_ERR_BAD_OPTION'),
        bad,
      );
    }
  });
});

/** Sends one hello line by hand and returns everything the listener answers before closing. */
async function rawHello(port: number, line: string): Promise<string> {
  const socket: Socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(line);
  let answer = '';
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
  await once(socket, 'close');
  return answer;
}
