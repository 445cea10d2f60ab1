// keygate console: sign-in, the page shell and the hash router (#/tokens, #/tokens/key/ID,
// #/roles, #/audit). Each page module renders into #page through the same JSON API as the CLI.

import {ApiError, forgetSecret, setUnauthorizedHandler, storeSecret, storedSecret, whoAmI} from './api.js';
import {byId, clear, emptyState, h, toast} from './dom.js';
import {renderTokens, renderTokenDetail} from './tokens.js';
import {renderRoles} from './roles.js';
import {renderAudit} from './audit.js';

/** What the signed-in secret is (GET /v1/me), shared with the pages. */
export const session = {me: null};

function showSignIn(message) {
  session.me = null;
  byId('app').hidden = true;
  clear(byId('page'));
  byId('signin').hidden = false;
  const error = byId('signin-error');
  error.hidden = !message;
  error.textContent = message || '';
  const input = byId('signin-secret');
  input.value = '';
  input.focus();
}

function describe(me) {
  if (me.kind === 'tenant_admin') return `Tenant admin${me.name ? ` ${me.name}` : ''} · ${me.tenant}`;
  return 'Super admin';
}

function showApp() {
  byId('signin').hidden = true;
  byId('app').hidden = false;
  byId('who').textContent = describe(session.me);
  if (!window.location.hash || window.location.hash === '#') window.location.hash = '#/tokens';
  else route();
}

async function signIn(event) {
  event.preventDefault();
  const input = byId('signin-secret');
  const button = byId('signin-submit');
  const secret = input.value.trim();
  if (!secret) return showSignInError('Enter the admin secret.');
  button.disabled = true;
  try {
    session.me = await whoAmI(secret);
    storeSecret(secret);
    input.value = '';
    showApp();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) showSignInError('That secret was not accepted.');
    else if (e instanceof ApiError && e.status === 429) showSignInError('Too many attempts; wait a moment.');
    else showSignInError(`Cannot reach the key service: ${e.message}`);
  } finally {
    button.disabled = false;
  }
}

function showSignInError(message) {
  const error = byId('signin-error');
  error.textContent = message;
  error.hidden = false;
}

export function signOut(message) {
  forgetSecret();
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  history.replaceState(null, '', window.location.pathname);
  showSignIn(message);
}

function setCrumbs(...parts) {
  const crumbs = clear(byId('crumbs'));
  parts.forEach((part, i) => {
    if (i > 0) crumbs.append(h('span', {class: 'crumb-sep', 'aria-hidden': 'true'}, '/'));
    crumbs.append(part.href ? h('a', {href: part.href}, part.text) : h('span', {class: 'crumb-current'}, part.text));
  });
}

let routeSeq = 0;

/** Renders the page the hash names. A later navigation wins over a slow earlier one. */
export async function route() {
  if (!session.me) return;
  const seq = ++routeSeq;
  const hash = window.location.hash.replace(/^#\/?/, '');
  const [page, kind, id] = hash.split('/').map(decodeURIComponent);
  for (const link of document.querySelectorAll('.nav-link[data-page]')) {
    link.classList.toggle('active', link.dataset.page === (page || 'tokens'));
  }
  const target = byId('page');
  const view = h('div', {class: 'view'});
  const stillCurrent = () => seq === routeSeq;
  try {
    if (page === 'tokens' && kind && id) {
      setCrumbs({text: 'API tokens', href: '#/tokens'}, {text: id});
      const name = await renderTokenDetail(view, kind, id, session.me);
      if (name && stillCurrent()) setCrumbs({text: 'API tokens', href: '#/tokens'}, {text: name});
    } else if (page === 'roles') {
      setCrumbs({text: 'Roles'});
      await renderRoles(view, session.me);
    } else if (page === 'audit') {
      setCrumbs({text: 'Audit log'});
      await renderAudit(view, session.me);
    } else {
      setCrumbs({text: 'API tokens'});
      await renderTokens(view, session.me);
    }
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    view.replaceChildren(emptyState('Something went wrong', e.message, 'error'));
  }
  if (stillCurrent()) clear(target).append(view);
}

async function start() {
  byId('signin-form').addEventListener('submit', signIn);
  byId('signout').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', route);
  // A row's action menu closes on a click elsewhere or on Escape.
  const closeMenus = (except) => {
    for (const menu of document.querySelectorAll('details.menu[open]')) {
      if (menu !== except) menu.open = false;
    }
  };
  document.addEventListener('click', (e) => closeMenus(e.target instanceof Element ? e.target.closest('details.menu') : null));
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeMenus(null); });
  setUnauthorizedHandler(() => {
    if (session.me) signOut('Your secret is no longer accepted (revoked or expired). Sign in again.');
  });
  const secret = storedSecret();
  if (!secret) return showSignIn();
  try {
    session.me = await whoAmI(secret);
    showApp();
  } catch (e) {
    forgetSecret();
    showSignIn(e instanceof ApiError && e.status === 401 ? 'Your session has ended. Sign in again.' : '');
  }
}

/** Re-renders the current page (after an action changed what it shows). */
export function refresh() {
  return route();
}

export {toast};

start();
