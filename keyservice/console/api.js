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

  /** The endpoint is not on this key service (an older version): 404 on a route, or 405. */
  get endpointMissing() {
    return (this.status === 404 && this.code === 'not_found' && /route/i.test(this.message)) || this.status === 405;
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
 * Who the secret belongs to: `GET /v1/me`. Until a key service has it, a secret that may list
 * keys is taken for the admin secret, allowed anything.
 */
export async function whoAmI(secret) {
  try {
    return await api('GET', '/v1/me', {secret});
  } catch (e) {
    if (!(e instanceof ApiError) || !e.endpointMissing) throw e;
  }
  await api('GET', '/v1/keys', {secret});
  return {kind: 'super_admin', id: null, name: null, tenant: null, roles: [], permissions: null};
}
