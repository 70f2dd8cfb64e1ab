import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { LoadBalancer } from './load-balancer.ts';

const servers: Server[] = [];
const balancers: LoadBalancer[] = [];
after(async () => {
  await Promise.all(balancers.map((b) => b.close()));
  for (const server of servers) server.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
});

async function backend(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handle);
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Answers with its name, the method and path it saw, and the request body. */
function echo(name: string): Promise<string> {
  return backend((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () =>
      res.end(
        JSON.stringify({ name, method: req.method, path: req.url, body: Buffer.concat(chunks).toString(), forwardedFor: req.headers['x-forwarded-for'] }),
      ),
    );
  });
}

/** A URL nobody listens on: connecting is refused. */
async function deadUrl(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

async function start(backends: string[], cooldownMs = 200): Promise<LoadBalancer> {
  const balancer = await LoadBalancer.start(backends, { cooldownMs });
  balancers.push(balancer);
  return balancer;
}

async function call(balancer: LoadBalancer, path = '/x', body?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${balancer.url}${path}`, body === undefined ? {} : { method: 'POST', body });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

test('round-robin over every backend, path, method and body passed through', async () => {
  const urls = await Promise.all(['a', 'b', 'c'].map(echo));
  const balancer = await start(urls);
  const seen: unknown[] = [];
  for (let i = 0; i < 6; i += 1) {
    const { status, json } = await call(balancer, `/webhooks/github?n=${i}`, `payload ${i}`);
    assert.equal(status, 200);
    assert.equal(json.method, 'POST');
    assert.equal(json.path, `/webhooks/github?n=${i}`);
    assert.equal(json.body, `payload ${i}`);
    assert.match(String(json.forwardedFor), /127\.0\.0\.1/);
    seen.push(json.name);
  }
  assert.deepEqual(seen, ['a', 'b', 'c', 'a', 'b', 'c']);
  assert.deepEqual(balancer.stats(), { forwarded: Object.fromEntries(urls.map((u) => [u, 2])), skipped: {}, failed: 0 });
});

test('a backend that refuses the connection is skipped, the body replayed to the next', async () => {
  const dead = await deadUrl();
  const alive = await echo('alive');
  const balancer = await start([dead, alive], 60_000);
  for (let i = 0; i < 4; i += 1) {
    const { status, json } = await call(balancer, '/', `body ${i}`);
    assert.equal(status, 200);
    assert.equal(json.name, 'alive');
    assert.equal(json.body, `body ${i}`);
  }
  // Passive health: after a refusal the dead one goes last until its cooldown ends.
  assert.equal(balancer.stats().skipped[dead], 1);
});

test('a backend that resets the connection before answering is skipped', async () => {
  const resetting = await backend((req) => req.socket.destroy());
  const alive = await echo('alive');
  const balancer = await start([resetting, alive]);
  const { status, json } = await call(balancer, '/', 'x'.repeat(100_000));
  assert.equal(status, 200);
  assert.equal(json.name, 'alive');
  assert.equal((json.body as string).length, 100_000);
  assert.equal(balancer.stats().skipped[resetting], 1);
});

test('setBackends swaps replicas at runtime; 502 only when every backend fails', async () => {
  const first = await echo('first');
  const balancer = await start([first]);
  assert.equal((await call(balancer)).json.name, 'first');

  balancer.setBackends([await deadUrl(), await deadUrl()]);
  const down = await call(balancer);
  assert.equal(down.status, 502);
  assert.equal((down.json.errors as string[]).length, 2);
  assert.match((down.json.errors as string[])[0]!, /ECONNREFUSED/);
  assert.equal(balancer.stats().failed, 1);

  const restarted = await echo('restarted');
  balancer.setBackends([restarted]);
  assert.deepEqual(balancer.backends, [restarted]);
  assert.equal((await call(balancer)).json.name, 'restarted');

  balancer.setBackends([]);
  assert.equal((await call(balancer)).status, 502);
});

test('bodies stream both ways: neither side waits for the other to end', async () => {
  let releaseResponse!: () => void;
  const responseHeld = new Promise<void>((resolve) => (releaseResponse = resolve));
  let firstRequestChunk!: (text: string) => void;
  const requestChunkSeen = new Promise<string>((resolve) => (firstRequestChunk = resolve));
  const streaming = await backend((req, res) => {
    req.once('data', (c: Buffer) => firstRequestChunk(c.toString()));
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first part;');
    void responseHeld.then(() => {
      req.resume();
      req.on('end', () => res.end('last part'));
    });
  });
  const balancer = await start([streaming]);

  const target = new URL(balancer.url);
  const upload = request({ host: target.hostname, port: target.port, method: 'POST', path: '/stream' });
  upload.write('uploaded start;');
  // The backend sees the first request bytes while the upload is still open.
  assert.equal(await requestChunkSeen, 'uploaded start;');
  const [response] = (await once(upload, 'response')) as [IncomingMessage];
  assert.equal(response.statusCode, 200);
  // ...and the client sees the first response bytes before the backend has ended.
  const [firstChunk] = (await once(response, 'data')) as [Buffer];
  assert.equal(firstChunk.toString(), 'first part;');
  releaseResponse();
  upload.end('uploaded end');
  const rest: Buffer[] = [];
  response.on('data', (c: Buffer) => rest.push(c));
  await once(response, 'end');
  assert.equal(Buffer.concat(rest).toString(), 'last part');
});
