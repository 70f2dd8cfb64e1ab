import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  SESSION_COOKIE,
  SESSION_LIFETIME_SECONDS,
  clearedSessionCookie,
  cookieValues,
  issueSession,
  sessionMatches,
  sessionSetCookie,
} from '../../src/server/session.ts';

const TOKEN = 'api-token-for-session-tests';
const NOW = Date.parse('2030-01-02T03:04:05Z');
const cookie = (value: string) => `theme=dark; ${SESSION_COOKIE}=${value}; other=1`;

describe('dashboard session cookie', () => {
  test('a fresh session matches its token until it expires, twelve hours on', () => {
    const value = issueSession(TOKEN, NOW);
    assert.equal(SESSION_LIFETIME_SECONDS, 12 * 3600);
    assert.equal(sessionMatches(cookie(value), TOKEN, NOW), true);
    assert.equal(sessionMatches(cookie(value), TOKEN, NOW + (SESSION_LIFETIME_SECONDS - 1) * 1000), true);
  });

  test('the cookie value is not the token and does not contain it', () => {
    const value = issueSession(TOKEN, NOW);
    assert.notEqual(value, TOKEN);
    assert.ok(!value.includes(TOKEN));
    assert.match(value, /^\d+\.[A-Za-z0-9_-]{43}$/);
  });

  test('an expired session does not match', () => {
    const value = issueSession(TOKEN, NOW);
    assert.equal(sessionMatches(cookie(value), TOKEN, NOW + SESSION_LIFETIME_SECONDS * 1000), false);
    assert.equal(sessionMatches(cookie(value), TOKEN, NOW + 13 * 3600 * 1000), false);
  });

  test('a tampered session does not match: a later expiry, a changed MAC, junk', () => {
    const value = issueSession(TOKEN, NOW);
    const [expiry, mac] = value.split('.') as [string, string];
    assert.equal(sessionMatches(cookie(`${Number(expiry) + 86_400}.${mac}`), TOKEN, NOW), false);
    const flipped = `${mac.slice(0, -1)}${mac.endsWith('A') ? 'B' : 'A'}`;
    assert.equal(sessionMatches(cookie(`${expiry}.${flipped}`), TOKEN, NOW), false);
    for (const junk of ['', '.', `${expiry}.`, `${expiry}`, `abc.${mac}`, `${expiry}.${mac}x`, TOKEN]) {
      assert.equal(sessionMatches(cookie(junk), TOKEN, NOW), false, `value ${JSON.stringify(junk)}`);
    }
  });

  test('a session issued for another token does not match (rotating the token ends every session)', () => {
    const value = issueSession('the-previous-token', NOW);
    assert.equal(sessionMatches(cookie(value), TOKEN, NOW), false);
  });

  test('no cookie, or no session cookie, is no match; one good value among several is', () => {
    assert.equal(sessionMatches(undefined, TOKEN, NOW), false);
    assert.equal(sessionMatches('', TOKEN, NOW), false);
    assert.equal(sessionMatches('theme=dark', TOKEN, NOW), false);
    assert.equal(sessionMatches(`${SESSION_COOKIE}=stale; ${SESSION_COOKIE}=${issueSession(TOKEN, NOW)}`, TOKEN, NOW), true);
    assert.deepEqual(cookieValues(` a=1;b = 2 ;${SESSION_COOKIE}=x=y`, SESSION_COOKIE), ['x=y']);
  });

  test('Set-Cookie is HttpOnly, SameSite=Strict, on Path=/, with Max-Age, and Secure only over HTTPS', () => {
    const plain = sessionSetCookie('v', false);
    assert.equal(plain, `${SESSION_COOKIE}=v; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict`);
    assert.match(sessionSetCookie('v', true), /; Secure$/);
    assert.match(clearedSessionCookie(false), new RegExp(`^${SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict$`));
  });
});
