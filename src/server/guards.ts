import { BlockList, isIP } from 'node:net';
import { constantTimeEqual } from '../forge/constant-time.ts';

/** A CIDR allowlist; empty allows everyone. IPv4-mapped IPv6 addresses match their IPv4 rules. */
export function allowlist(cidrs: readonly string[]): ((ip: string) => boolean) | undefined {
  if (cidrs.length === 0) return undefined;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address = '', bits] = cidr.split('/');
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  return (ip: string) => {
    const mapped = ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
    return list.check(mapped, isIP(mapped) === 6 ? 'ipv6' : 'ipv4');
  };
}

/**
 * Requests per minute per client IP, as a token bucket refilled continuously:
 * bursts up to the limit, then the steady rate. Buckets of quiet clients are
 * dropped so a scan of many addresses cannot grow memory for long.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private lastSweep = Date.now();

  constructor(private readonly perMinute: number) {}

  /** 0 when allowed; otherwise the seconds to wait (for Retry-After). */
  take(ip: string, now: number = Date.now()): number {
    if (this.perMinute <= 0) return 0;
    if (now - this.lastSweep > 60_000) {
      for (const [key, bucket] of this.buckets) if (now - bucket.at > 60_000) this.buckets.delete(key);
      this.lastSweep = now;
    }
    const bucket = this.buckets.get(ip) ?? { tokens: this.perMinute, at: now };
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + ((now - bucket.at) / 60_000) * this.perMinute);
    bucket.at = now;
    this.buckets.set(ip, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - bucket.tokens) * 60) / this.perMinute);
  }
}

/** `Authorization: Bearer <token>`, compared in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (!header?.startsWith('Bearer ')) return false;
  return constantTimeEqual(header.slice(7), token);
}
