import { createSign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { HearthError } from '../../errors.ts';

export interface GithubAppCredentials {
  readonly appId: string;
  readonly privateKeyPem: string;
  readonly installationId: string;
}

function base64url(value: Buffer | string): string {
  return Buffer.from(value).toString('base64url');
}

/** A GitHub App JWT (RS256): issued a minute in the past for clock skew, valid 9 minutes. */
export function appJwt(appId: string, privateKeyPem: string, nowSeconds: number = Math.floor(Date.now() / 1000)): string {
  const header = base64url(JSON.stringify({ alg: 'RS256', typ: 'JWT' }));
  const payload = base64url(JSON.stringify({ iat: nowSeconds - 60, exp: nowSeconds + 9 * 60, iss: appId }));
  const signature = createSign('RSA-SHA256').update(`${header}.${payload}`).sign(privateKeyPem);
  return `${header}.${payload}.${base64url(signature)}`;
}

/**
 * Authorization for GitHub's REST API: a fine-grained PAT as is, or a GitHub App's
 * installation token, fetched with the app's JWT and cached until five minutes
 * before it expires (tokens live an hour). Concurrent callers share one fetch.
 */
export class GithubAuth {
  private cached: { token: string; expiresAt: number } | undefined;
  private pending: Promise<string> | undefined;

  private constructor(
    private readonly apiUrl: string,
    private readonly pat: string | null,
    private readonly app: GithubAppCredentials | null,
  ) {}

  static fromConfig(
    apiUrl: string,
    token: string | null,
    app: { id: string | null; privateKeyPath: string | null; installationId: string | null },
  ): GithubAuth {
    if (app.id && app.privateKeyPath && app.installationId) {
      let pem: string;
      try {
        pem = readFileSync(app.privateKeyPath, 'utf8');
      } catch (error) {
        throw new HearthError('HEARTH_ERR_CONFIG', {
          source: app.privateKeyPath,
          key: 'github.app.privateKeyPath',
          reason: `cannot be read (${(error as Error).message})`,
          hint: 'point it at the .pem file GitHub gave when you generated the app key',
        });
      }
      return new GithubAuth(apiUrl, null, { appId: app.id, privateKeyPem: pem, installationId: app.installationId });
    }
    return new GithubAuth(apiUrl, token, null);
  }

  get configured(): boolean {
    return this.pat !== null || this.app !== null;
  }

  async headers(): Promise<Record<string, string>> {
    const token = await this.token();
    return { authorization: `Bearer ${token}`, 'x-github-api-version': '2022-11-28' };
  }

  private async token(): Promise<string> {
    if (this.pat) return this.pat;
    if (!this.app)
      throw new HearthError('HEARTH_ERR_CONFIG', {
        source: 'github',
        key: 'github.token',
        reason: 'is not set and no GitHub App is configured',
        hint: 'set github.token (HEARTH_GITHUB_TOKEN) to a fine-grained PAT, or github.app.id, privateKeyPath and installationId',
      });
    if (this.cached && this.cached.expiresAt - 5 * 60_000 > Date.now()) return this.cached.token;
    this.pending ??= this.fetchInstallationToken(this.app).finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async fetchInstallationToken(app: GithubAppCredentials): Promise<string> {
    const path = `/app/installations/${encodeURIComponent(app.installationId)}/access_tokens`;
    const response = await fetch(this.apiUrl.replace(/\/+$/, '') + path, {
      method: 'POST',
      headers: { authorization: `Bearer ${appJwt(app.appId, app.privateKeyPem)}`, accept: 'application/vnd.github+json', 'user-agent': 'hearth' },
      signal: AbortSignal.timeout(30_000),
    });
    const body = (await response.json().catch(() => ({}))) as { token?: string; expires_at?: string; message?: string };
    if (response.status !== 201 || !body.token) {
      throw new HearthError('HEARTH_ERR_FORGE_API', {
        forge: 'github',
        method: 'POST',
        path,
        status: response.status,
        reason: body.message ?? 'no token in the answer',
        hint: 'check github.app.id, the private key and github.app.installationId (the number in the installation URL)',
      });
    }
    const expiresAt = body.expires_at ? Date.parse(body.expires_at) : Date.now() + 60 * 60_000;
    this.cached = { token: body.token, expiresAt };
    return body.token;
  }
}
