// The API tokens page: API keys (/v1/keys) and OAuth clients (/v1/clients) in one list, with
// filters, creation (the secret shown once), row actions (renew, rotate, revoke, delete) and a
// token's detail (usage chart, audit events).

import {api, ApiError} from './api.js';
import {usageChart} from './chart.js';
import {confirmDialog, openFormDialog, secretPanel} from './dialogs.js';
import {badge, chips, emptyState, h, relative, statusBadge, time, toast} from './dom.js';
import {expiryPicker, field, formError, permissionsPicker, rolesPicker, showError} from './forms.js';
import {auditTable} from './audit.js';

const KINDS = {
  key: {label: 'API key', path: '/v1/keys', noun: 'API key'},
  client: {label: 'Client credentials', path: '/v1/clients', noun: 'OAuth client'},
};

/** One row shape for both kinds. */
function normalize(kind, view) {
  return {
    kind,
    id: kind === 'client' ? view.client_id : view.id,
    name: view.name,
    tenant: view.tenant,
    roles: view.roles || [],
    permissions: view.permissions || [],
    effective: view.effective_permissions || view.permissions || [],
    status: view.status,
    created_at: view.created_at,
    expires_at: view.expires_at,
    revoked_at: view.revoked_at,
    last_used_at: view.last_used_at,
    // The visible start of the secret (`kg_3f9a…`), where the key service keeps one.
    prefix: view.prefix || null,
  };
}

/** The masked secret where known, else the id (which is not secret either). */
function keyCell(token) {
  if (!token.prefix) return h('span', {class: 'mono small'}, token.id);
  return h('span', {class: 'stack'},
    h('span', {class: 'mono small masked', title: 'The start of the secret'}, token.prefix),
    h('span', {class: 'mono small muted'}, token.id));
}

function tokenUrl(token) {
  return `#/tokens/${token.kind}/${encodeURIComponent(token.id)}`;
}

async function loadTokens() {
  const [keys, clients] = await Promise.all([
    api('GET', '/v1/keys'),
    api('GET', '/v1/clients'),
  ]);
  const rows = [
    ...keys.keys.map((k) => normalize('key', k)),
    ...clients.clients.map((c) => normalize('client', c)),
  ];
  rows.sort((a, b) => b.created_at.localeCompare(a.created_at));
  return rows;
}

function selectFilter(name, label, options) {
  return h('select', {name, 'aria-label': label, class: 'filter'},
    options.map(([value, text]) => h('option', {value}, text)));
}

/** The list page. */
export async function renderTokens(view, me) {
  const rows = await loadTokens();
  const search = h('input', {type: 'search', name: 'search', placeholder: 'Search by name', 'aria-label': 'Search by name', class: 'filter filter-search'});
  const tenants = [...new Set(rows.map((r) => r.tenant))].sort();
  const tenant = selectFilter('tenant', 'Tenant', [['', 'All tenants'], ...tenants.map((t) => [t, t])]);
  const status = selectFilter('status', 'Status', [['', 'Any status'], ['active', 'Active'], ['expired', 'Expired'], ['revoked', 'Revoked']]);
  const type = selectFilter('type', 'Type', [['', 'All types'], ['key', 'API keys'], ['client', 'Client credentials']]);
  const create = h('button', {type: 'button', class: 'btn btn-primary', id: 'create-token'}, 'Create token');
  const body = h('div', {class: 'card card-flush'});
  const count = h('span', {class: 'muted small'});

  const reload = async () => {
    const fresh = await loadTokens();
    rows.splice(0, rows.length, ...fresh);
    draw();
  };
  create.addEventListener('click', () => createDialog(me, rows, reload));

  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const shown = rows.filter((r) =>
      (!q || r.name.toLowerCase().includes(q))
      && (!tenant.value || r.tenant === tenant.value)
      && (!status.value || r.status === status.value)
      && (!type.value || r.kind === type.value));
    count.textContent = `${shown.length} of ${rows.length}`;
    if (rows.length === 0) {
      body.replaceChildren(emptyState('No API tokens yet', 'Create an API key or OAuth client to let a caller through keygate.'));
      return;
    }
    if (shown.length === 0) {
      body.replaceChildren(emptyState('No token matches these filters'));
      return;
    }
    body.replaceChildren(tokenTable(shown, me, reload));
  };
  for (const el of [tenant, status, type]) el.addEventListener('change', draw);
  search.addEventListener('input', draw);

  view.append(
    h('div', {class: 'page-head'},
      h('div', {},
        h('h1', {}, 'API tokens'),
        h('p', {class: 'muted'}, 'API keys and OAuth clients (client credentials) that callers present to keygate.')),
      create),
    h('div', {class: 'filters'}, search, tenant, status, type, count),
    body);
  draw();
}

function tokenTable(rows, me, reload) {
  return h('table', {class: 'table', id: 'tokens-table'},
    h('thead', {}, h('tr', {},
      ['Name', 'Type', 'Key', 'Tenant', 'Roles and permissions', 'Created', 'Expires', 'Last used', 'Status', '']
        .map((t) => h('th', {scope: 'col'}, t)))),
    h('tbody', {}, rows.map((r) => h('tr', {'data-id': r.id, 'data-kind': r.kind},
      h('td', {class: 'cell-name'}, h('a', {href: tokenUrl(r), class: 'token-name'}, r.name)),
      h('td', {}, badge(r.kind === 'key' ? 'API key' : 'Client', r.kind === 'key' ? 'indigo' : 'violet')),
      h('td', {}, keyCell(r)),
      h('td', {}, r.tenant),
      h('td', {class: 'cell-perms'}, r.roles.length ? chips(r.roles, 'role') : null, chips(r.permissions)),
      h('td', {class: 'nowrap'}, time(r.created_at, {dateOnly: true})),
      h('td', {class: 'nowrap'}, r.expires_at ? time(r.expires_at, {dateOnly: true}) : h('span', {class: 'muted'}, 'Never')),
      h('td', {class: 'nowrap'}, lastUsed(r)),
      h('td', {}, statusBadge(r.status)),
      h('td', {class: 'cell-actions'}, rowMenu(r, me, reload))))));
}

/** A key's last use; a dash where the key service does not say (older ones, and clients). */
function lastUsed(token) {
  if (token.last_used_at) return h('span', {title: token.last_used_at}, relative(token.last_used_at));
  // Only API keys' requests are counted; a key service before last_used_at says nothing.
  return h('span', {class: 'muted'}, token.kind === 'key' && token.last_used_at === null ? 'Never' : '—');
}

function rowMenu(token, me, reload) {
  const items = actionsFor(token, me, reload, {afterDelete: reload});
  const menu = h('details', {class: 'menu'},
    h('summary', {class: 'btn btn-ghost btn-icon', 'aria-label': `Actions for ${token.name}`, title: 'Actions'}, '⋯'),
    h('div', {class: 'menu-items'},
      h('a', {href: tokenUrl(token), class: 'menu-item'}, 'View details'),
      items.map(({label, run, danger}) => {
        const b = h('button', {type: 'button', class: ['menu-item', danger ? 'menu-danger' : null]}, label);
        b.addEventListener('click', () => { menu.open = false; run(); });
        return b;
      })));
  return menu;
}

/** What can be done to a token now: renew (keys), rotate, revoke, delete. */
function actionsFor(token, me, reload, {afterDelete}) {
  const kind = KINDS[token.kind];
  const base = `${kind.path}/${encodeURIComponent(token.id)}`;
  const act = (what, fn) => async () => {
    try {
      await fn();
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) toast(`Could not ${what}: ${e.message}`, 'error');
    }
  };
  const list = [];
  if (token.kind === 'key' && token.status !== 'revoked') {
    list.push({label: 'Renew', run: act('renew', () => renewDialog(token, base, reload))});
  }
  if (token.status !== 'revoked') {
    list.push({label: 'Rotate secret', run: act('rotate', () => rotateDialog(token, base, reload))});
    list.push({label: 'Revoke', danger: true, run: act('revoke', async () => {
      const ok = await confirmDialog({
        title: `Revoke ${token.name}?`,
        message: `Callers using this ${kind.noun} are refused from now on (within about a second at every Envoy).`,
        confirm: 'Revoke',
      });
      if (!ok) return;
      await api('POST', `${base}/revoke`);
      toast(`${token.name} revoked`, 'success');
      await reload();
    })});
  }
  list.push({label: 'Delete', danger: true, run: act('delete', async () => {
    const ok = await confirmDialog({
      title: `Delete ${token.name}?`,
      message: `The ${kind.noun} and its usage records are deleted; callers using it are refused.`,
      confirm: 'Delete',
    });
    if (!ok) return;
    await api('DELETE', base);
    toast(`${token.name} deleted`, 'success');
    await afterDelete();
  })});
  return list;
}

function knownPermissions(rows) {
  return rows.flatMap((r) => r.permissions);
}

/** The create dialog: description, tenant, type, roles, permissions, expiry; then the secret. */
function createDialog(me, rows, reload) {
  const error = formError();
  const name = h('input', {type: 'text', name: 'name', maxlength: '200', required: true, placeholder: 'e.g. billing backend', autocomplete: 'off'});
  const tenantLocked = me.kind === 'tenant_admin';
  const tenant = h('input', {type: 'text', name: 'tenant', maxlength: '64', required: true, placeholder: 'acme', autocomplete: 'off', value: tenantLocked ? me.tenant : '', readonly: tenantLocked});
  tenant.readOnly = tenantLocked;
  const kindKey = h('input', {type: 'radio', name: 'kind', value: 'key', checked: true});
  const kindClient = h('input', {type: 'radio', name: 'kind', value: 'client'});
  const kinds = h('div', {class: 'segmented', role: 'radiogroup', 'aria-label': 'Type'},
    h('label', {class: 'segment'}, kindKey, h('span', {}, 'API key')),
    h('label', {class: 'segment'}, kindClient, h('span', {}, 'Client credentials')));
  const roles = rolesPicker(me);
  const permissions = permissionsPicker(me, {known: knownPermissions(rows)});
  const expiry = expiryPicker();
  const submit = h('button', {type: 'submit', class: 'btn btn-primary', id: 'create-submit'}, 'Create');
  const cancel = h('button', {type: 'button', class: 'btn btn-ghost'}, 'Cancel');

  let lastTenant = null;
  const loadRoles = () => {
    const t = tenant.value.trim();
    if (t === lastTenant) return;
    lastTenant = t;
    roles.load(t);
  };
  tenant.addEventListener('change', loadRoles);
  tenant.addEventListener('blur', loadRoles);
  loadRoles();

  const form = h('form', {class: 'form', id: 'create-form', novalidate: true},
    field('Description', name, 'What the token is for; shown in lists and audit events.'),
    field('Tenant', tenant, tenantLocked ? 'You manage this tenant only.' : 'The tenant the token acts for.'),
    h('div', {class: 'field'}, h('span', {class: 'label'}, 'Type'), kinds,
      h('p', {class: 'hint'}, 'An API key is sent as is; client credentials get short-lived JWT access tokens from /oauth/token.')),
    h('div', {class: 'field'}, h('span', {class: 'label'}, 'Roles'), roles.el),
    field('Permissions', permissions.control, me.permissions == null ? 'Separated by commas or spaces.' : 'Only permissions you hold can be granted.', permissions.el),
    field('Expires', expiry.select, null, expiry.el),
    error,
    h('div', {class: 'dialog-actions'}, cancel, submit));

  const close = openFormDialog('Create API token', form, {wide: true});
  cancel.addEventListener('click', close);
  name.focus();

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(error, '');
    let body;
    try {
      if (!name.value.trim()) throw new Error('Enter a description.');
      if (!tenant.value.trim()) throw new Error('Enter the tenant.');
      const chosenRoles = roles.value();
      const perms = permissions.value();
      if (perms.length === 0 && chosenRoles.length === 0) throw new Error('Grant at least one role or permission.');
      body = {name: name.value.trim(), tenant: tenant.value.trim(), permissions: perms, ...expiry.value()};
      // Only when chosen: a key service without roles refuses the unknown field.
      if (chosenRoles.length) body.roles = chosenRoles;
    } catch (err) {
      showError(error, err.message);
      return;
    }
    const kind = kindClient.checked ? 'client' : 'key';
    submit.disabled = true;
    try {
      const created = await api('POST', KINDS[kind].path, {body});
      const token = normalize(kind, created);
      const secret = kind === 'client' ? created.client_secret : created.secret;
      const extra = kind === 'client'
        ? h('div', {class: 'field'}, h('span', {class: 'label'}, 'Client ID'), h('code', {class: 'mono', id: 'new-client-id'}, token.id))
        : null;
      openFormDialog(`${KINDS[kind].label} created`, secretPanel(secret, {
        label: kind === 'client' ? 'Client secret' : 'API key',
        extra,
        onDone: () => { close(); },
      }));
      await reload();
    } catch (err) {
      showError(error, err.message);
    } finally {
      submit.disabled = false;
    }
  });
}

function renewDialog(token, base, reload) {
  const error = formError();
  const expiry = expiryPicker();
  const submit = h('button', {type: 'submit', class: 'btn btn-primary'}, 'Renew');
  const cancel = h('button', {type: 'button', class: 'btn btn-ghost'}, 'Cancel');
  const form = h('form', {class: 'form', novalidate: true},
    h('p', {class: 'muted'}, `Sets a new expiry for ${token.name}, counted from now. Its secret stays the same.`),
    field('Expires', expiry.select, null, expiry.el), error,
    h('div', {class: 'dialog-actions'}, cancel, submit));
  const close = openFormDialog('Renew API key', form);
  cancel.addEventListener('click', close);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api('POST', `${base}/renew`, {body: expiry.value()});
      close();
      toast(`${token.name} renewed`, 'success');
      await reload();
    } catch (err) {
      showError(error, err.message);
    }
  });
}

const GRACE = [['0', 'None: the old secret stops now'], ['3600', '1 hour'], ['86400', '1 day'], ['604800', '7 days'], ['2592000', '30 days']];

function rotateDialog(token, base, reload) {
  const error = formError();
  const grace = h('select', {name: 'grace'}, GRACE.map(([v, t]) => h('option', {value: v}, t)));
  grace.value = '86400';
  const submit = h('button', {type: 'submit', class: 'btn btn-primary'}, 'Rotate');
  const cancel = h('button', {type: 'button', class: 'btn btn-ghost'}, 'Cancel');
  const form = h('form', {class: 'form', novalidate: true},
    h('p', {class: 'muted'}, `Issues a new secret for ${token.name}. The old one keeps working for the grace period, so callers can switch without downtime.`),
    field('Grace period', grace), error,
    h('div', {class: 'dialog-actions'}, cancel, submit));
  const close = openFormDialog('Rotate secret', form);
  cancel.addEventListener('click', close);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const rotated = await api('POST', `${base}/rotate`, {body: {grace_period_secs: Number(grace.value)}});
      const secret = token.kind === 'client' ? rotated.client_secret : rotated.secret;
      openFormDialog('New secret issued', secretPanel(secret, {
        label: token.kind === 'client' ? 'Client secret' : 'API key',
        onDone: close,
      }));
      await reload();
    } catch (err) {
      showError(error, err.message);
    }
  });
}

/** The detail page of one token. */
export async function renderTokenDetail(view, kindName, id, me) {
  const kind = KINDS[kindName];
  if (!kind) {
    view.append(emptyState('No such page', 'Tokens are API keys or clients.', 'error'));
    return;
  }
  let token;
  try {
    token = normalize(kindName, await api('GET', `${kind.path}/${encodeURIComponent(id)}`));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      view.append(emptyState(`No ${kind.noun} ${id}`, 'It may have been deleted.', 'error'));
      return;
    }
    throw e;
  }
  const reload = async () => {
    const fresh = h('div', {class: 'view'});
    await renderTokenDetail(fresh, kindName, id, me);
    view.replaceChildren(...fresh.childNodes);
  };
  const actions = actionsFor(token, me, reload, {afterDelete: async () => { window.location.hash = '#/tokens'; }})
    .map(({label, run, danger}) => {
      const b = h('button', {type: 'button', class: ['btn', danger ? 'btn-danger-outline' : 'btn-secondary']}, label);
      b.addEventListener('click', run);
      return b;
    });

  const details = h('dl', {class: 'details'},
    h('dt', {}, kindName === 'client' ? 'Client ID' : 'Key ID'), h('dd', {class: 'mono'}, token.id),
    token.prefix ? [h('dt', {}, 'Secret'), h('dd', {class: 'mono'}, token.prefix)] : null,
    h('dt', {}, 'Type'), h('dd', {}, kind.label),
    h('dt', {}, 'Tenant'), h('dd', {}, token.tenant),
    h('dt', {}, 'Roles'), h('dd', {}, chips(token.roles, 'role')),
    h('dt', {}, 'Permissions'), h('dd', {}, chips(token.permissions)),
    h('dt', {}, 'Effective permissions'), h('dd', {}, chips(token.effective)),
    h('dt', {}, 'Created'), h('dd', {}, time(token.created_at)),
    h('dt', {}, 'Expires'), h('dd', {}, token.expires_at ? [time(token.expires_at), ` (${relative(token.expires_at)})`] : 'Never'),
    token.revoked_at ? [h('dt', {}, 'Revoked'), h('dd', {}, time(token.revoked_at))] : null);

  const usage = h('div', {class: 'card'}, h('h2', {}, 'Requests per day'), h('p', {class: 'muted'}, 'Loading…'));
  const audit = h('div', {class: 'card card-flush'}, h('h2', {class: 'card-title'}, 'Audit events'), h('p', {class: 'muted pad'}, 'Loading…'));

  view.append(
    h('div', {class: 'page-head'},
      h('div', {},
        h('h1', {class: 'token-title'}, token.name, ' ', statusBadge(token.status)),
        h('p', {class: 'muted mono'}, token.id)),
      h('div', {class: 'actions'}, actions)),
    h('div', {class: 'grid-2'}, h('div', {class: 'card'}, h('h2', {}, 'Details'), details), usage),
    audit);

  await Promise.all([fillUsage(usage, token, kind), fillAudit(audit, token)]);
  return token.name;
}

async function fillUsage(card, token, kind) {
  const title = h('h2', {}, 'Requests per day');
  if (token.kind !== 'key') {
    card.replaceChildren(title, emptyState('Not counted for OAuth clients', 'Their access tokens are verified by the filter itself; requests are counted per API key.'));
    return;
  }
  try {
    const usage = await api('GET', `${kind.path}/${encodeURIComponent(token.id)}/usage`);
    card.replaceChildren(title,
      h('p', {class: 'muted'}, `Last 30 days (UTC). ${usage.total.toLocaleString()} request${usage.total === 1 ? '' : 's'} in all; last used `,
        usage.last_used_at ? relative(usage.last_used_at) : 'never', '.'),
      usageChart(usage.daily, {days: 30}));
  } catch (e) {
    card.replaceChildren(title, emptyState('Usage unavailable', e.message, 'error'));
  }
}

async function fillAudit(card, token) {
  const title = h('h2', {class: 'card-title'}, 'Audit events');
  try {
    const page = await api('GET', '/v1/audit', {query: {target_id: token.id, limit: 50}});
    card.replaceChildren(title, page.events.length
      ? auditTable(page.events, 'token-audit-table')
      : emptyState('No audit events for this token yet'));
  } catch (e) {
    card.replaceChildren(title, emptyState('Audit events unavailable', e.message, 'error'));
  }
}
