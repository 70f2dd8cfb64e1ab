import { createHmac } from 'node:crypto';
import { constantTimeEqual } from '../forge/constant-time.ts';

/**
 * The dashboard's login cookie. Its value is `<expiry>.<mac>`: the expiry in
 * Unix seconds and an HMAC-SHA256 over it keyed by the API token. It proves
 * that whoever holds it once presented the token, without carrying the token,
 * and every session ends when the token is rotated.
 */
export const SESSION_COOKIE = 'hearth_session';
export const SESSION_LIFETIME_SECONDS = 12 * 60 * 60;

function mac(token: string, expiry: number): string {
  return createHmac('sha256', token).update(`hearth-session:${expiry}`).digest('base64url');
}

/** A fresh cookie value, good for SESSION_LIFETIME_SECONDS from `nowMs`. */
export function issueSession(token: string, nowMs: number = Date.now()): string {
  const expiry = Math.floor(nowMs / 1000) + SESSION_LIFETIME_SECONDS;
  return `${expiry}.${mac(token, expiry)}`;
}

/** The values of every cookie named `name` in a Cookie header, in order. */
export function cookieValues(header: string | undefined, name: string): string[] {
  if (!header) return [];
  const values: string[] = [];
  for (const pair of header.split(';')) {
    const at = pair.indexOf('=');
    if (at < 0 || pair.slice(0, at).trim() !== name) continue;
    values.push(pair.slice(at + 1).trim());
  }
  return values;
}

function valueMatches(value: string, token: string, nowMs: number): boolean {
  const match = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(value);
  if (!match) return false;
  const expiry = Number(match[1]);
  if (expiry * 1000 <= nowMs) return false;
  return constantTimeEqual(match[2]!, mac(token, expiry));
}

/**
 * Whether a Cookie header holds a session issued for `token` that has not
 * expired. The MAC is compared in constant time; a malformed value is no match.
 */
export function sessionMatches(cookieHeader: string | undefined, token: string, nowMs: number = Date.now()): boolean {
  return cookieValues(cookieHeader, SESSION_COOKIE).some((value) => valueMatches(value, token, nowMs));
}

/** The Set-Cookie header that starts a session. */
export function sessionSetCookie(value: string, secure: boolean): string {
  return `${SESSION_COOKIE}=${value}; Path=/; Max-Age=${SESSION_LIFETIME_SECONDS}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

/** The Set-Cookie header that ends one. */
export function clearedSessionCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}
