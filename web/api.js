/* global fetch, URLSearchParams */
// The one way the dashboard reads /api/v1: the session cookie goes along by
// itself (same origin); a 401 means the session ended and hands over to the login page.

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

let unauthorized = () => {};

/** Called once, on the first 401: the app shows the login form. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** GET /api/v1<path> as JSON; throws ApiError naming the status and the API's own message. */
export async function api(path, { signal } = {}) {
  let response;
  try {
    response = await fetch(`/api/v1${path}`, { headers: { accept: 'application/json' }, cache: 'no-store', signal });
  } catch (error) {
    if (error?.name === 'AbortError') throw error;
    throw new ApiError(`cannot reach hearth serve (${error?.message ?? error})`, 0);
  }
  if (response.status === 401) {
    unauthorized();
    throw new ApiError('the session ended: log in again', 401);
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (typeof body?.error === 'string') message = `${body.error} (${response.status})`;
    } catch {
      // not JSON: the status line says enough
    }
    throw new ApiError(message, response.status);
  }
  return response.json();
}

/** A query string from the set values of `params` ('' when none is set). */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  const text = search.toString();
  return text ? `?${text}` : '';
}
