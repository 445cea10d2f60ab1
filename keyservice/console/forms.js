// Form pieces the pages share: labelled fields, the expiry picker, the permissions and roles
// pickers. Each picker only offers what the signed-in admin may grant (GET /v1/me `permissions`;
// null = anything).

import {api} from './api.js';
import {h} from './dom.js';

const PERMISSION = /^[A-Za-z0-9:._*-]{1,128}$/;
const DAY = 86400;

let fieldSeq = 0;

/**
 * A label for `control`, then `el` (the control itself, or a wrapper holding it) and an optional
 * hint under it.
 */
export function field(label, control, hint, el = control) {
  if (!control.id) control.id = `f${++fieldSeq}`;
  return h('div', {class: 'field'},
    h('label', {for: control.id}, label),
    el,
    hint ? h('p', {class: 'hint'}, hint) : null);
}

export function formError() {
  return h('p', {class: 'form-error', role: 'alert', hidden: true});
}

export function showError(el, message) {
  el.textContent = message;
  el.hidden = !message;
}

/** Splits "a:read, b:write c" into permissions; throws naming the first bad one. */
export function parsePermissions(text) {
  const list = text.split(/[\s,]+/).filter(Boolean);
  for (const p of list) {
    if (!PERMISSION.test(p)) throw new Error(`"${p}" is not a permission: use letters, digits and : . _ * - (at most 128)`);
  }
  return [...new Set(list)];
}

/** Whether `me` may grant every one of `permissions`. */
export function mayGrant(me, permissions) {
  return me.permissions === null || me.permissions === undefined || permissions.every((p) => me.permissions.includes(p));
}

/**
 * Expiry: presets, a date, or never. `value()` gives the request fields:
 * `{expires_in_secs}` or `{never_expires: true}`.
 */
export function expiryPicker({defaultChoice = '1296000'} = {}) {
  const select = h('select', {name: 'expiry'},
    h('option', {value: String(DAY)}, '1 day'),
    h('option', {value: String(7 * DAY)}, '7 days'),
    h('option', {value: String(15 * DAY)}, '15 days'),
    h('option', {value: String(30 * DAY)}, '30 days'),
    h('option', {value: String(90 * DAY)}, '90 days'),
    h('option', {value: String(365 * DAY)}, '1 year'),
    h('option', {value: 'date'}, 'On a date…'),
    h('option', {value: 'never'}, 'Never'));
  select.value = defaultChoice;
  const date = h('input', {type: 'date', name: 'expiry-date', 'aria-label': 'Expiry date', hidden: true});
  const tomorrow = new Date(Date.now() + DAY * 1000);
  date.min = tomorrow.toISOString().slice(0, 10);
  const note = h('p', {class: 'hint'});
  const update = () => {
    date.hidden = select.value !== 'date';
    note.textContent = select.value === 'never'
      ? 'A token that never expires stays valid until it is revoked.'
      : '';
  };
  select.addEventListener('change', update);
  update();
  const el = h('div', {class: 'expiry'}, h('div', {class: 'inline'}, select, date), note);
  return {
    el,
    select,
    value() {
      if (select.value === 'never') return {never_expires: true};
      if (select.value === 'date') {
        if (!date.value) throw new Error('Pick the expiry date.');
        // The end of that day, local time.
        const end = new Date(`${date.value}T23:59:59`);
        const secs = Math.floor((end.getTime() - Date.now()) / 1000);
        if (secs < 1) throw new Error('The expiry date must be in the future.');
        return {expires_in_secs: secs};
      }
      return {expires_in_secs: Number(select.value)};
    },
  };
}

/**
 * Permissions: free text (with the permissions already in use as suggestions) for an admin who
 * may grant anything, checkboxes of its own permissions otherwise.
 */
export function permissionsPicker(me, {initial = [], known = []} = {}) {
  if (me.permissions === null || me.permissions === undefined) {
    const listId = `perm-suggestions-${++fieldSeq}`;
    const input = h('input', {type: 'text', name: 'permissions', list: listId, placeholder: 'orders:read, orders:write', spellcheck: 'false', autocomplete: 'off', class: 'mono', value: initial.join(', ')});
    const datalist = h('datalist', {id: listId}, [...new Set(known)].sort().map((p) => h('option', {value: p})));
    return {
      el: h('div', {}, input, datalist),
      control: input,
      value: () => parsePermissions(input.value),
    };
  }
  const boxes = me.permissions.map((p) => h('input', {type: 'checkbox', value: p, checked: initial.includes(p)}));
  const el = me.permissions.length === 0
    ? h('p', {class: 'muted'}, 'You may not grant permissions directly.')
    : h('div', {class: 'checks'}, boxes.map((box) => h('label', {class: 'check mono'}, box, box.value)));
  return {
    el,
    control: el,
    value: () => boxes.filter((b) => b.checked).map((b) => b.value),
  };
}

/**
 * Roles of one tenant (GET /v1/roles?tenant=) as checkboxes; a role with a permission the admin
 * does not hold is shown but cannot be chosen. `load(tenant)` refills it.
 */
export function rolesPicker(me) {
  const el = h('div', {class: 'checks roles-picker'});
  let boxes = [];
  return {
    el,
    async load(tenant) {
      boxes = [];
      if (!tenant) {
        el.replaceChildren(h('p', {class: 'muted'}, 'Enter the tenant to choose its roles.'));
        return;
      }
      let roles;
      try {
        roles = (await api('GET', '/v1/roles', {query: {tenant}})).roles;
      } catch (e) {
        el.replaceChildren(h('p', {class: 'form-error'}, `Cannot load the roles: ${e.message}`));
        return;
      }
      if (roles.length === 0) {
        el.replaceChildren(h('p', {class: 'muted'}, `Tenant ${tenant} has no roles yet.`));
        return;
      }
      el.replaceChildren(...roles.map((role) => {
        const allowed = mayGrant(me, role.permissions);
        const box = h('input', {type: 'checkbox', value: role.name, disabled: !allowed});
        boxes.push(box);
        return h('label', {class: ['check', allowed ? null : 'check-disabled'], title: allowed ? role.permissions.join(', ') : 'Grants more than you hold'},
          box, h('span', {class: 'mono'}, role.name),
          h('span', {class: 'muted small'}, allowed ? ` ${role.permissions.length} permission${role.permissions.length === 1 ? '' : 's'}` : ' above your permissions'));
      }));
    },
    value: () => boxes.filter((b) => b.checked && !b.disabled).map((b) => b.value),
  };
}
