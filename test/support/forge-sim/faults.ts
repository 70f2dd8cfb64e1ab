// Injected failures: API error answers (failApi) and the seeded PRNG that
// decides which webhook deliveries are dropped.
import type { Reply } from './http.ts';
import type { ApiFailureRule, SimForge } from './types.ts';

/** mulberry32: tiny, seedable, good enough to pick which deliveries drop. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const RATE_LIMIT_DOCS = 'https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api';

const GITHUB_MESSAGES: Record<ApiFailureRule['status'], string> = {
  500: 'Server Error',
  502: 'Server Error',
  503: 'Service Unavailable',
  429: 'API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.',
  403: 'API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.',
};

const GITLAB_MESSAGES: Record<ApiFailureRule['status'], string> = {
  500: '500 Internal Server Error',
  502: '502 Bad Gateway',
  503: '503 Service Unavailable',
  // Rack::Attack's own text, wrapped as {"message"} like the rest of the API.
  429: 'Retry later',
  403: '403 Forbidden',
};

export class ApiFaults {
  private readonly rules: { rule: ApiFailureRule; left: number }[] = [];

  add(rule: ApiFailureRule): void {
    if (!Number.isInteger(rule.count) || rule.count < 1) throw new RangeError(`failApi count must be a positive integer, got ${rule.count}`);
    this.rules.push({ rule, left: rule.count });
  }

  /** Consumes one use of the first rule matching `path`, oldest rule first, and builds its answer. */
  take(forge: SimForge, path: string): Reply | undefined {
    const entry = this.rules.find((r) => r.left > 0 && (!r.rule.path || r.rule.path.test(path)));
    if (!entry) return undefined;
    entry.left--;
    return forge === 'github' ? githubFault(entry.rule) : gitlabFault(entry.rule);
  }
}

function githubFault(rule: ApiFailureRule): Reply {
  const retryAfter = rule.retryAfterSeconds ?? 60;
  const reset = String(Math.ceil(Date.now() / 1000) + retryAfter);
  if (rule.status === 403 && rule.secondaryRateLimit) {
    return {
      status: 403,
      headers: { 'retry-after': String(retryAfter) },
      json: {
        message:
          'You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.',
        documentation_url: `${RATE_LIMIT_DOCS}#about-secondary-rate-limits`,
      },
    };
  }
  if (rule.status === 429 || rule.status === 403) {
    // A 403 without the secondary flag is the primary limit: GitHub sends no
    // Retry-After then, only the reset time.
    const headers: Record<string, string> = {
      'x-ratelimit-limit': '5000',
      'x-ratelimit-remaining': '0',
      'x-ratelimit-used': '5000',
      'x-ratelimit-reset': reset,
      'x-ratelimit-resource': 'core',
    };
    if (rule.status === 429) headers['retry-after'] = String(retryAfter);
    return { status: rule.status, headers, json: { message: GITHUB_MESSAGES[rule.status], documentation_url: RATE_LIMIT_DOCS } };
  }
  return { status: rule.status, json: { message: GITHUB_MESSAGES[rule.status], documentation_url: 'https://docs.github.com/rest' } };
}

function gitlabFault(rule: ApiFailureRule): Reply {
  const headers: Record<string, string> = {};
  if (rule.status === 429 || (rule.status === 403 && rule.secondaryRateLimit)) {
    const retryAfter = rule.retryAfterSeconds ?? 60;
    const reset = Math.ceil(Date.now() / 1000) + retryAfter;
    Object.assign(headers, {
      'retry-after': String(retryAfter),
      'ratelimit-limit': '600',
      'ratelimit-observed': '601',
      'ratelimit-remaining': '0',
      'ratelimit-reset': String(reset),
      'ratelimit-resettime': new Date(reset * 1000).toUTCString(),
    });
  }
  return { status: rule.status, headers, json: { message: GITLAB_MESSAGES[rule.status] } };
}
