// The console's one way to the key service: the same JSON API as the CLI, with the signed-in
// secret as `Authorization: Bearer`. The secret lives in sessionStorage (this tab only, gone when
// the tab closes or on sign-out), never in localStorage, a cookie or a URL.

const SECRET_KEY = 'keygate.console.secret';

export function storedSecret() {
  return sessionStorage.getItem(SECRET_KEY);
}

export function storeSecret(secret) {
  sessionStorage.setItem(SECRET_KEY, secret);
}

export function forgetSecret() {
  sessionStorage.removeItem(SECRET_KEY);
}

/** An error answer of the API: `status`, its `{error, message}` and the whole body. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
    this.body = body || {};
  }
}

let onUnauthorized = () => {};

/** What to do when the secret stops working (revoked or expired meanwhile): sign out. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/** Calls the API. `query` values that are empty are left out. */
export async function api(method, path, {body, query, secret} = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const headers = {Accept: 'application/json', Authorization: `Bearer ${secret || storedSecret() || ''}`};
  const init = {method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer'};
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const text = await response.text();
  let json = null;
  if (text) {
    try { json = JSON.parse(text); } catch { json = {message: text.slice(0, 200)}; }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, json);
    if (response.status === 401 && !secret) onUnauthorized(error);
    throw error;
  }
  return json;
}

/**
 * Who the secret belongs to and what it may grant: `GET /v1/me` (401: not a secret this key
 * service takes).
 */
export function whoAmI(secret) {
  return api('GET', '/v1/me', {secret});
}
