// GitHub App authentication as GitHub checks it: an RS256 JWT from the app
// buys installation tokens (ghs_...) that are valid one hour.
import { createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';

const DOCS = 'https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app';
/** GitHub allows exp at most 10 minutes after iat; the sim adds a minute of slack for clock drift. */
const MAX_LIFETIME_S = 600 + 60;
const TOKEN_LIFETIME_MS = 60 * 60 * 1000;
const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export type JwtCheck = { ok: true } | { ok: false; message: string };

export class GithubApp {
  private readonly key: KeyObject;
  private readonly tokens = new Map<string, number>();

  constructor(
    readonly appId: string,
    publicKeyPem: string,
    readonly installationId: string,
  ) {
    this.key = createPublicKey(publicKeyPem);
  }

  /** Checks signature, algorithm, issuer and lifetime; messages are GitHub's. */
  checkJwt(jwt: string, nowSeconds = Date.now() / 1000): JwtCheck {
    const parts = jwt.split('.');
    const undecodable: JwtCheck = { ok: false, message: 'A JSON web token could not be decoded' };
    if (parts.length !== 3) return undecodable;
    const [rawHeader, rawPayload, rawSignature] = parts as [string, string, string];
    let header: Record<string, unknown>;
    let payload: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(rawHeader, 'base64url').toString('utf8')) as Record<string, unknown>;
      payload = JSON.parse(Buffer.from(rawPayload, 'base64url').toString('utf8')) as Record<string, unknown>;
    } catch {
      return undecodable;
    }
    if (header.alg !== 'RS256') return undecodable;
    if (!verify('RSA-SHA256', Buffer.from(`${rawHeader}.${rawPayload}`), this.key, Buffer.from(rawSignature, 'base64url'))) return undecodable;
    if (String(payload.iss) !== this.appId) return { ok: false, message: `'Issuer' claim ('iss') must be an Integer` };
    const { iat, exp } = payload;
    if (typeof iat !== 'number' || iat > nowSeconds + 60)
      return { ok: false, message: `'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued.` };
    if (typeof exp !== 'number' || exp <= nowSeconds)
      return { ok: false, message: `'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires.` };
    if (exp > iat + MAX_LIFETIME_S) return { ok: false, message: `'Expiration time' claim ('exp') is too far in the future.` };
    return { ok: true };
  }

  get documentationUrl(): string {
    return DOCS;
  }

  issueToken(): { token: string; expiresAt: Date } {
    // Token lengths are changing at GitHub; a different length than a PAT catches fixed-length assumptions.
    const token = `ghs_${Array.from(randomBytes(40), (b) => BASE62[b % BASE62.length]).join('')}`;
    const expiresAt = new Date(Date.now() + TOKEN_LIFETIME_MS);
    this.tokens.set(token, expiresAt.getTime());
    return { token, expiresAt };
  }

  acceptsToken(token: string): boolean {
    const expiresAt = this.tokens.get(token);
    return expiresAt !== undefined && expiresAt > Date.now();
  }
}
