// The roles page (/v1/roles): named sets of permissions in a tenant that tokens and tenant admins
// hold. Create, edit, delete; a role still held answers 409 with its holders, listed here.

import {api, ApiError} from './api.js';
import {confirmDialog, openFormDialog} from './dialogs.js';
import {chips, emptyState, h, time, toast} from './dom.js';
import {field, formError, permissionsPicker, showError} from './forms.js';

const ROLE_NAME = /^[A-Za-z0-9:._-]{1,64}$/;

export async function renderRoles(view, me) {
  const tenantLocked = me.kind === 'tenant_admin';
  const tenant = h('input', {type: 'search', name: 'tenant', placeholder: 'All tenants', 'aria-label': 'Tenant', class: 'filter', value: tenantLocked ? me.tenant : '', readonly: tenantLocked});
  tenant.readOnly = tenantLocked;
  const create = h('button', {type: 'button', class: 'btn btn-primary', id: 'create-role'}, 'Create role');
  const body = h('div', {class: 'card card-flush'});

  const load = async () => {
    let roles;
    try {
      roles = (await api('GET', '/v1/roles', {query: {tenant: tenant.value.trim()}})).roles;
    } catch (e) {
      body.replaceChildren(emptyState('Cannot load the roles', e.message, 'error'));
      return;
    }
    if (roles.length === 0) {
      body.replaceChildren(emptyState('No roles yet', 'A role names a set of permissions that tokens of its tenant can hold.'));
      return;
    }
    body.replaceChildren(h('table', {class: 'table', id: 'roles-table'},
      h('thead', {}, h('tr', {}, ['Name', 'Tenant', 'Description', 'Permissions', 'Updated', ''].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, roles.map((role) => {
        const edit = h('button', {type: 'button', class: 'btn btn-ghost btn-small'}, 'Edit');
        edit.addEventListener('click', () => roleDialog(me, load, role));
        const del = h('button', {type: 'button', class: 'btn btn-ghost btn-small text-danger'}, 'Delete');
        del.addEventListener('click', () => deleteRole(role, load));
        return h('tr', {'data-id': role.id},
          h('td', {}, h('span', {class: 'mono strong'}, role.name)),
          h('td', {}, role.tenant),
          h('td', {class: 'cell-desc'}, role.description || h('span', {class: 'muted'}, '—')),
          h('td', {class: 'cell-perms'}, chips(role.permissions)),
          h('td', {class: 'nowrap'}, time(role.updated_at)),
          h('td', {class: 'cell-actions nowrap'}, edit, del));
      }))));
  };

  create.addEventListener('click', () => roleDialog(me, load, null));
  tenant.addEventListener('change', load);
  view.append(
    h('div', {class: 'page-head'},
      h('div', {},
        h('h1', {}, 'Roles'),
        h('p', {class: 'muted'}, 'Named sets of permissions. A token holds its roles\' permissions as well as its own.')),
      create),
    h('div', {class: 'filters'}, tenant),
    body);
  await load();
}

function roleDialog(me, reload, role) {
  const error = formError();
  const tenantLocked = me.kind === 'tenant_admin' || Boolean(role);
  const tenant = h('input', {type: 'text', name: 'tenant', required: true, maxlength: '64', value: role ? role.tenant : (me.tenant || ''), readonly: tenantLocked});
  tenant.readOnly = tenantLocked;
  const name = h('input', {type: 'text', name: 'name', required: true, maxlength: '64', class: 'mono', placeholder: 'orders-reader', value: role ? role.name : '', readonly: Boolean(role)});
  name.readOnly = Boolean(role);
  const description = h('textarea', {name: 'description', rows: '2', maxlength: '500'});
  description.value = role ? role.description : '';
  const permissions = permissionsPicker(me, {initial: role ? role.permissions : []});
  const submit = h('button', {type: 'submit', class: 'btn btn-primary'}, role ? 'Save' : 'Create role');
  const cancel = h('button', {type: 'button', class: 'btn btn-ghost'}, 'Cancel');
  const form = h('form', {class: 'form', novalidate: true},
    field('Tenant', tenant),
    field('Name', name, role ? 'A role keeps its name.' : 'Letters, digits and : . _ - (at most 64).'),
    field('Description', description),
    field('Permissions', permissions.control, me.permissions == null ? 'Separated by commas or spaces.' : 'Only permissions you hold.', permissions.el),
    error,
    h('div', {class: 'dialog-actions'}, cancel, submit));
  const close = openFormDialog(role ? `Edit role ${role.name}` : 'Create role', form, {wide: true});
  cancel.addEventListener('click', close);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(error, '');
    try {
      const perms = permissions.value();
      if (role) {
        await api('PUT', `/v1/roles/${encodeURIComponent(role.id)}`, {body: {description: description.value, permissions: perms}});
        toast(`Role ${role.name} saved`, 'success');
      } else {
        if (!tenant.value.trim()) throw new Error('Enter the tenant.');
        if (!ROLE_NAME.test(name.value.trim())) throw new Error('A role name is 1 to 64 letters, digits and : . _ -');
        await api('POST', '/v1/roles', {body: {tenant: tenant.value.trim(), name: name.value.trim(), description: description.value, permissions: perms}});
        toast(`Role ${name.value.trim()} created`, 'success');
      }
      close();
      await reload();
    } catch (err) {
      showError(error, err.message);
    }
  });
}

async function deleteRole(role, reload) {
  const ok = await confirmDialog({
    title: `Delete role ${role.name}?`,
    message: 'Only a role that nothing holds can be deleted.',
    confirm: 'Delete',
  });
  if (!ok) return;
  try {
    await api('DELETE', `/v1/roles/${encodeURIComponent(role.id)}`);
    toast(`Role ${role.name} deleted`, 'success');
    await reload();
  } catch (e) {
    if (e instanceof ApiError && e.status === 409 && Array.isArray(e.body.holders)) {
      showHolders(role, e.body.holders);
    } else if (!(e instanceof ApiError && e.status === 401)) {
      toast(`Could not delete ${role.name}: ${e.message}`, 'error');
    }
  }
}

function showHolders(role, holders) {
  const ok = h('button', {type: 'button', class: 'btn btn-primary'}, 'OK');
  const label = {key: 'API key', client: 'OAuth client', tenant_admin: 'Tenant admin'};
  const content = h('div', {class: 'form'},
    h('div', {class: 'callout callout-warning', role: 'alert'},
      `Role ${role.name} is still held by ${holders.length} holder${holders.length === 1 ? '' : 's'}. Take it away from them (or delete them) first.`),
    h('table', {class: 'table', id: 'holders-table'},
      h('thead', {}, h('tr', {}, ['Type', 'Name', 'ID'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, holders.map((x) => h('tr', {},
        h('td', {}, label[x.type] || x.type),
        h('td', {}, x.type === 'key' || x.type === 'client'
          ? h('a', {href: `#/tokens/${x.type}/${encodeURIComponent(x.id)}`}, x.name || x.id)
          : x.name || '—'),
        h('td', {class: 'mono small'}, x.id))))),
    h('div', {class: 'dialog-actions'}, ok));
  const close = openFormDialog('Role in use', content, {wide: true});
  ok.addEventListener('click', close);
  // Following a holder's link leaves the dialog behind otherwise.
  for (const link of content.querySelectorAll('a')) link.addEventListener('click', close);
}
