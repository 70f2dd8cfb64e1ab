import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { createLogger } from '../../src/log.ts';
import { WRONG_TOKEN_MESSAGE, registerDashboard } from '../../src/server/dashboard.ts';
import { SESSION_COOKIE, issueSession } from '../../src/server/session.ts';

const TOKEN = 'dashboard-route-token-0123456789';

async function build(token: string | null, secure = false): Promise<{ app: FastifyInstance; logLines: string[] }> {
  const logLines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      callback();
    },
  });
  const logger = createLogger({ level: 'info', destination });
  const app = Fastify({ loggerInstance: logger }) as unknown as FastifyInstance;
  await registerDashboard(app, { token, logger, secure });
  // A stand-in for the API beside it: the form parser must not leak out of the dashboard's scope.
  app.post('/api/v1/echo', async (request) => ({ body: request.body ?? null }));
  await app.ready();
  return { app, logLines };
}

const pageOf = (html: string) => /<body data-page="([a-z]+)">/.exec(html)?.[1];

describe('dashboard routes', () => {
  let app: FastifyInstance;
  let logLines: string[];
  before(async () => {
    ({ app, logLines } = await build(TOKEN));
  });
  after(() => app.close());

  test('GET / opens on the login page without a session, on the app with one', async () => {
    const anonymous = await app.inject({ method: 'GET', url: '/' });
    assert.equal(anonymous.statusCode, 200);
    assert.match(anonymous.headers['content-type'] as string, /^text\/html/);
    assert.equal(anonymous.headers['cache-control'], 'no-store');
    assert.match(anonymous.headers['content-security-policy'] as string, /script-src 'self'/);
    assert.equal(pageOf(anonymous.body), 'login');
    assert.ok(!anonymous.body.includes('{{'), 'every slot is filled');
    const signedIn = await app.inject({ method: 'GET', url: '/', headers: { cookie: `${SESSION_COOKIE}=${issueSession(TOKEN)}` } });
    assert.equal(pageOf(signedIn.body), 'app');
  });

  test('assets come from web/ with their content types and an ETag; anything else is 404', async () => {
    const script = await app.inject({ method: 'GET', url: '/assets/app.js' });
    assert.equal(script.statusCode, 200);
    assert.equal(script.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal(script.headers['cache-control'], 'no-cache');
    const css = await app.inject({ method: 'GET', url: '/assets/style.css' });
    assert.equal(css.headers['content-type'], 'text/css; charset=utf-8');
    const again = await app.inject({ method: 'GET', url: '/assets/app.js', headers: { 'if-none-match': script.headers.etag as string } });
    assert.equal(again.statusCode, 304);
    for (const url of [
      '/assets/..%2Fpackage.json',
      '/assets/%2E%2E%2Fsrc%2Fserver%2Fsession.ts',
      '/assets/../package.json',
      '/assets/index.html',
      '/assets/nope.js',
      '/assets/.eslintrc',
    ]) {
      const response = await app.inject({ method: 'GET', url });
      assert.equal(response.statusCode, 404, url);
      assert.ok(!response.body.includes('"private"'), url);
    }
  });

  test('a wrong token gets 401 and the login page with the error, and a warning naming the IP, never the token', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/login',
      payload: 'token=not-the-token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(response.statusCode, 401);
    assert.equal(pageOf(response.body), 'login');
    assert.ok(response.body.includes(WRONG_TOKEN_MESSAGE));
    assert.equal(response.headers['set-cookie'], undefined);
    const warning = logLines.find((line) => line.includes('dashboard login') && line.includes('"level":40'));
    assert.ok(warning, logLines.join('\n'));
    assert.match(warning, /127\.0\.0\.1/);
    assert.ok(!logLines.some((line) => line.includes('not-the-token') || line.includes(TOKEN)));
    const json = await app.inject({ method: 'POST', url: '/login', payload: { token: 'also-wrong' } });
    assert.equal(json.statusCode, 401);
    assert.deepEqual(json.json(), { error: WRONG_TOKEN_MESSAGE });
    const empty = await app.inject({ method: 'POST', url: '/login', payload: '', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(empty.statusCode, 401);
  });

  test('the right token (form or JSON) gets 303 to / and an HttpOnly, SameSite=Strict session cookie', async () => {
    for (const request of [
      { payload: `token=${encodeURIComponent(TOKEN)}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } },
      { payload: { token: TOKEN }, headers: {} },
    ]) {
      const response = await app.inject({ method: 'POST', url: '/login', ...request });
      assert.equal(response.statusCode, 303);
      assert.equal(response.headers.location, '/');
      const setCookie = response.headers['set-cookie'] as string;
      assert.match(setCookie, new RegExp(`^${SESSION_COOKIE}=\\d+\\.[A-Za-z0-9_-]+; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict$`));
      assert.ok(!setCookie.includes(TOKEN));
      const home = await app.inject({ method: 'GET', url: '/', headers: { cookie: setCookie.split(';')[0]! } });
      assert.equal(pageOf(home.body), 'app');
    }
  });

  test('logout clears the cookie', async () => {
    const response = await app.inject({ method: 'POST', url: '/logout', payload: '', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(response.statusCode, 303);
    assert.equal(response.headers.location, '/');
    assert.match(response.headers['set-cookie'] as string, new RegExp(`^${SESSION_COOKIE}=; Path=/; Max-Age=0`));
    const bare = await app.inject({ method: 'POST', url: '/logout' });
    assert.equal(bare.statusCode, 303);
  });

  test('the form-body parser stays inside the dashboard', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/api/v1/echo',
      payload: 'a=1',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(response.statusCode, 415);
  });

  test('over HTTPS the cookie is Secure', async () => {
    const secure = await build(TOKEN, true);
    const response = await secure.app.inject({ method: 'POST', url: '/login', payload: { token: TOKEN } });
    assert.match(response.headers['set-cookie'] as string, /; Secure$/);
    await secure.app.close();
  });

  test('without api.token the page says how to enable the dashboard, and login is refused', async () => {
    const disabled = await build(null);
    const page = await disabled.app.inject({ method: 'GET', url: '/' });
    assert.equal(pageOf(page.body), 'disabled');
    assert.match(page.body, /HEARTH_API_TOKEN/);
    const login = await disabled.app.inject({ method: 'POST', url: '/login', payload: { token: 'anything' } });
    assert.equal(login.statusCode, 503);
    assert.equal(login.headers['set-cookie'], undefined);
    await disabled.app.close();
  });
});
