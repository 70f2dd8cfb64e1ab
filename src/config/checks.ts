import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import { isPublishedName } from '../image/store.ts';
import { bad, ok, type Checked } from './engine.ts';

/** Checks of single values, for the settings in src/config/schema.ts: each accepts (and may normalise) a text value or says why not, never echoing a secret. */

export function nonEmpty(value: string): Checked {
  return value.length > 0 ? ok(value) : bad('is empty');
}

export function hostAddress(value: string): Checked {
  if (!value || /\s/.test(value)) return bad(`is not an address to listen on, got ${JSON.stringify(value)}`);
  return ok(value);
}

/** Trailing slashes dropped, so callers can append `/path`. */
export function httpUrl(value: string): Checked {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return bad(`is not a URL, got ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return bad(`must be an http:// or https:// URL, got ${JSON.stringify(value)}`);
  return ok(value.replace(/\/+$/, ''));
}

/** A bare address is taken as that one host, and written as /32 or /128 so every entry is a CIDR. */
export function cidr(value: string): Checked {
  const [address = '', prefixText, ...extra] = value.split('/');
  const family = isIP(address);
  if (family === 0 || extra.length > 0) return bad(`has ${JSON.stringify(value)}, which is not an IPv4 or IPv6 CIDR`);
  const maxPrefix = family === 4 ? 32 : 128;
  if (prefixText === undefined) return ok(`${address}/${maxPrefix}`);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > maxPrefix)
    return bad(`has ${JSON.stringify(value)}, whose prefix length must be 0 to ${maxPrefix} for IPv${family}`);
  try {
    new BlockList().addSubnet(address, Number(prefixText), family === 4 ? 'ipv4' : 'ipv6');
  } catch (error) {
    return bad(`has ${JSON.stringify(value)}, which node:net rejects: ${(error as Error).message}`);
  }
  return ok(`${address}/${Number(prefixText)}`);
}

export function apiToken(value: string): Checked {
  // Length only: never echo a token, not even a short one.
  return value.length >= 16 ? ok(value) : bad(`is ${value.length} characters long; it must be at least 16`);
}

export function githubRepo(value: string): Checked {
  const match = /^([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))\/([A-Za-z0-9._-]{1,100})$/.exec(value);
  if (!match || match[2] === '.' || match[2] === '..') return bad(`has ${JSON.stringify(value)}, which is not in the form owner/repo`);
  return ok(value);
}

export function githubOrg(value: string): Checked {
  return /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/.test(value) ? ok(value) : bad(`has ${JSON.stringify(value)}, which is not a GitHub organisation name`);
}

export function numericId(value: string): Checked {
  return /^[1-9]\d*$/.test(value) ? ok(value) : bad(`has ${JSON.stringify(value)}, which is not a numeric id`);
}

export function appId(value: string): Checked {
  // The numeric App ID, or the client ID (Iv1.…), which GitHub also accepts as the JWT issuer.
  return /^(?:\d+|Iv[0-9A-Za-z.]+)$/.test(value) ? ok(value) : bad(`is ${JSON.stringify(value)}, which is neither a numeric App ID nor a client ID`);
}

export function signingSecret(value: string): Checked {
  // src/forge/gitlab/verify.ts base64-decodes the key with or without the prefix.
  const key = value.startsWith('whsec_') ? value.slice('whsec_'.length) : value;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key) || key.length % 4 !== 0) return bad('has an entry that is not base64 (after an optional whsec_ prefix)');
  return ok(value);
}

export function egressEntry(value: string): Checked {
  const match = /^(\d{1,3}(?:\.\d{1,3}){3})(?:\/(\d{1,2}))?(?::(\d{1,5}))?$/.exec(value);
  if (!match || isIP(match[1]!) !== 4 || Number(match[2] ?? 32) > 32 || Number(match[3] ?? 1) < 1 || Number(match[3] ?? 1) > 65_535)
    return bad(`has ${JSON.stringify(value)}, which is not an IPv4 CIDR or CIDR:PORT`);
  return ok(value);
}

export function tcpPort(value: string): Checked {
  return /^\d{1,5}$/.test(value) && Number(value) >= 1 && Number(value) <= 65_535 ? ok(value) : bad(`has ${JSON.stringify(value)}, which is not a TCP port`);
}

export function ipv4Address(value: string): Checked {
  return isIP(value) === 4 ? ok(value) : bad(`is ${JSON.stringify(value)}, which is not an IPv4 address`);
}

export function hostId(value: string): Checked {
  return /^[A-Za-z0-9._-]{1,64}$/.test(value) ? ok(value) : bad(`is ${JSON.stringify(value)}, which is not a host id (1-64 letters, digits, ".", "_" or "-")`);
}

export function imageName(value: string): Checked {
  return isPublishedName(value) ? ok(value) : bad(`is ${JSON.stringify(value)}, which is not an image name (lower-case letters, digits and '-')`);
}

export function readableFile(value: string): Checked {
  try {
    if (!statSync(value).isFile()) return bad(`is ${JSON.stringify(value)}, which is not a file`);
    accessSync(value, constants.R_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return bad(
      code === 'ENOENT'
        ? `is ${JSON.stringify(value)}, which does not exist`
        : `is ${JSON.stringify(value)}, which cannot be read (${code ?? (error as Error).message})`,
    );
  }
  return ok(value);
}

export function pemPrivateKey(value: string): Checked {
  const file = readableFile(value);
  if ('reason' in file) return file;
  if (!/-----BEGIN (?:RSA |EC )?PRIVATE KEY-----/.test(readFileSync(value, 'utf8')))
    return bad(`is ${JSON.stringify(value)}, which does not look like a PEM private key (no -----BEGIN … PRIVATE KEY----- line)`);
  return ok(value);
}

export type StoreTarget = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

/** What store.url points at, or why it points at nothing usable. */
export function parseStoreUrl(value: string): StoreTarget | { reason: string } {
  if (/^postgres(?:ql)?:\/\//i.test(value)) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      // The URL may hold a password: describe it, never echo it.
      return { reason: 'is not a valid PostgreSQL URL' };
    }
    if (!url.hostname) return { reason: 'is a PostgreSQL URL without a host' };
    return { kind: 'postgres', url: value };
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value);
  if (scheme && scheme[1]!.toLowerCase() !== 'sqlite') return { reason: `uses the scheme "${scheme[1]}"; Hearth stores in SQLite or PostgreSQL` };
  // sqlite:/abs, sqlite:///abs and plain /abs all name the same file.
  const path = /^sqlite:(?:\/\/(?=\/))?(.*)$/i.exec(value)?.[1] ?? value;
  if (path === ':memory:') return { kind: 'sqlite', path };
  if (path === '') return { reason: 'names no database file' };
  // A relative path would follow the daemon's working directory, which systemd sets to /.
  if (!isAbsolute(path)) return { reason: `is the relative path ${JSON.stringify(path)}; use an absolute path` };
  return { kind: 'sqlite', path };
}

export function storeUrl(value: string): Checked {
  const target = parseStoreUrl(value);
  return 'reason' in target ? bad(target.reason) : ok(value);
}

/** A Flintlock root image, NAME=IMAGE (debian=ghcr.io/acme/hearth-debian:12). */
export function rootImage(value: string): Checked {
  const at = value.indexOf('=');
  if (at <= 0 || value.slice(at + 1).trim() === '') return bad(`has ${JSON.stringify(value)}, which is not NAME=IMAGE`);
  return ok(`${value.slice(0, at).trim()}=${value.slice(at + 1).trim()}`);
}
