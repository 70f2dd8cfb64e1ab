import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../log.ts';
import { clearedSessionCookie, issueSession, sessionMatches, sessionSetCookie } from './session.ts';
import { constantTimeEqual } from '../forge/constant-time.ts';

export interface DashboardOptions {
  /** api.token; null leaves the dashboard saying how to enable it. */
  readonly token: string | null;
  readonly logger: Logger;
  /** Served over HTTPS: the cookie gets `Secure`. */
  readonly secure: boolean;
  /** Where index.html, app.js and the rest live; the repository's web/ by default. */
  readonly webDir?: string;
}

/** The page index.html opens on; style.css shows the matching section, app.js takes it from there. */
export const DASHBOARD_PAGES = ['app', 'login', 'disabled'] as const;
export type DashboardPage = (typeof DASHBOARD_PAGES)[number];

export const WRONG_TOKEN_MESSAGE = 'That is not the API token. Check api.token (HEARTH_API_TOKEN) and try again.';

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
};

/** Only what the page itself loads, from this origin; nothing may frame it. */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

const DEFAULT_WEB_DIR = fileURLToPath(new URL('../../web/', import.meta.url));

/** Every servable file of `dir` (flat, by name), read once: requests never touch the filesystem. */
function loadAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const type = CONTENT_TYPES[extname(entry.name)];
    if (!entry.isFile() || !type || entry.name.startsWith('.')) continue;
    const body = readFileSync(join(dir, entry.name));
    assets.set(entry.name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
  }
  return assets;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** index.html with its two slots filled: the page to open on and the login error, if any. */
function renderPage(template: string, page: DashboardPage, error = ''): string {
  return template.replace('{{page}}', page).replace('{{error}}', escapeHtml(error));
}

/** The token from a login form or JSON body; anything else is no token. */
function submittedToken(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const token = (body as { token?: unknown }).token;
  return typeof token === 'string' ? token : undefined;
}

/**
 * The dashboard: `/` (one page; app.js drives the API with the session cookie),
 * `/assets/<file>` from web/, and `/login` / `/logout` to get and drop that
 * cookie. It registers itself as an encapsulated plugin, so its form-body
 * parser and security headers stay inside its own routes.
 */
export async function registerDashboard(app: FastifyInstance, options: DashboardOptions): Promise<void> {
  await app.register(async (scope) => dashboardRoutes(scope, options));
}

function dashboardRoutes(scope: FastifyInstance, options: DashboardOptions): void {
  const { token, logger, secure } = options;
  const dir = options.webDir ?? DEFAULT_WEB_DIR;
  let template: string;
  try {
    template = readFileSync(join(dir, 'index.html'), 'utf8');
  } catch (error) {
    // web/ ships with Hearth; without it the checkout or package is broken, not the configuration.
    throw new Error(`the dashboard's files are missing: ${join(dir, 'index.html')} cannot be read (${(error as Error).message}); reinstall Hearth`, {
      cause: error,
    });
  }
  const assets = loadAssets(dir);
  assets.delete('index.html');
  const pages: Record<DashboardPage | 'wrong-token', string> = {
    app: renderPage(template, 'app'),
    login: renderPage(template, 'login'),
    disabled: renderPage(template, 'disabled'),
    'wrong-token': renderPage(template, 'login', WRONG_TOKEN_MESSAGE),
  };

  scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  scope.addHook('onSend', async (_request, reply, payload) => {
    reply.headers(SECURITY_HEADERS);
    return payload;
  });

  const sendPage = (reply: FastifyReply, status: number, page: keyof typeof pages) =>
    reply.code(status).header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-store').send(pages[page]);

  scope.get('/', async (request, reply) => {
    if (!token) return sendPage(reply, 200, 'disabled');
    return sendPage(reply, 200, sessionMatches(request.headers.cookie, token) ? 'app' : 'login');
  });

  scope.get('/assets/:file', async (request: FastifyRequest<{ Params: { file: string } }>, reply) => {
    // A lookup by exact name among files read at start: no path is ever built from the request.
    const asset = assets.get(request.params.file);
    if (!asset) return reply.code(404).send({ error: `no dashboard asset ${request.params.file}` });
    reply.header('content-type', asset.type).header('cache-control', 'no-cache').header('etag', asset.etag);
    if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send();
    return reply.send(asset.body);
  });

  scope.post('/login', async (request, reply) => {
    if (!token) return sendPage(reply, 503, 'disabled');
    const submitted = submittedToken(request.body);
    if (submitted === undefined || !constantTimeEqual(submitted, token)) {
      logger.warn({ ip: request.ip, route: '/login' }, `rejected: dashboard login from ${request.ip} with a wrong token`);
      if (request.headers['content-type']?.startsWith('application/json')) return reply.code(401).send({ error: WRONG_TOKEN_MESSAGE });
      return sendPage(reply, 401, 'wrong-token');
    }
    logger.info({ ip: request.ip }, `dashboard login from ${request.ip}`);
    return reply
      .code(303)
      .header('set-cookie', sessionSetCookie(issueSession(token), secure))
      .header('location', '/')
      .send();
  });

  scope.post('/logout', async (_request, reply) => {
    return reply.code(303).header('set-cookie', clearedSessionCookie(secure)).header('location', '/').send();
  });
}
