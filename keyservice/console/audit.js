// The audit log page (GET /v1/audit): filters, newest first, paged with the `next` cursor.

import {api, ApiError} from './api.js';
import {badge, emptyState, h, time} from './dom.js';
import {field} from './forms.js';

const PAGE_SIZE = 50;
const ACTIONS = ['key.create', 'key.revoke', 'key.renew', 'key.rotate', 'key.delete',
  'client.create', 'client.revoke', 'client.rotate', 'client.delete',
  'role.create', 'role.update', 'role.delete',
  'tenant_admin.create', 'tenant_admin.revoke', 'tenant_admin.delete', 'auth.failure'];

function outcomeBadge(outcome) {
  return badge(outcome || '—', outcome === 'success' ? 'green' : outcome === 'denied' ? 'red' : 'amber');
}

function target(event) {
  if (!event.target_id) return h('span', {class: 'muted'}, '—');
  const kind = event.target_type === 'key' ? 'key' : event.target_type === 'client' ? 'client' : null;
  const id = h('span', {class: 'mono small'}, event.target_id);
  return kind ? h('a', {href: `#/tokens/${kind}/${encodeURIComponent(event.target_id)}`}, id) : id;
}

/** A table of audit events (also on a token's page, with another `id`). */
export function auditTable(events, id = 'audit-table') {
  return h('table', {class: 'table', id},
    h('thead', {}, h('tr', {}, ['Time', 'Action', 'Outcome', 'Actor', 'Target', 'Tenant', 'Source', 'Request'].map((t) => h('th', {scope: 'col'}, t)))),
    h('tbody', {}, events.map((e) => h('tr', {},
      h('td', {class: 'nowrap'}, time(e.at, {seconds: true})),
      h('td', {}, h('span', {class: 'mono'}, e.action)),
      h('td', {}, outcomeBadge(e.outcome)),
      h('td', {class: 'mono small'}, e.actor || '—'),
      h('td', {}, e.target_type ? h('span', {class: 'muted small'}, `${e.target_type} `) : null, target(e)),
      h('td', {}, e.tenant || h('span', {class: 'muted'}, '—')),
      h('td', {class: 'mono small'}, e.source || '—'),
      h('td', {class: 'mono small muted'}, e.request_id || '—')))));
}

function toIso(local) {
  return local ? new Date(local).toISOString() : '';
}

export async function renderAudit(view, me) {
  const tenantLocked = me.kind === 'tenant_admin';
  const tenant = h('input', {type: 'text', name: 'tenant', placeholder: 'any', value: tenantLocked ? me.tenant : '', readonly: tenantLocked});
  tenant.readOnly = tenantLocked;
  const actor = h('input', {type: 'text', name: 'actor', placeholder: 'any'});
  const action = h('input', {type: 'text', name: 'action', placeholder: 'any', list: 'audit-actions'});
  const actions = h('datalist', {id: 'audit-actions'}, ACTIONS.map((a) => h('option', {value: a})));
  const targetId = h('input', {type: 'text', name: 'target_id', placeholder: 'key_… / kgc_…', class: 'mono'});
  const since = h('input', {type: 'datetime-local', name: 'since'});
  const until = h('input', {type: 'datetime-local', name: 'until'});
  const apply = h('button', {type: 'submit', class: 'btn btn-secondary'}, 'Apply filters');
  const results = h('div', {class: 'card card-flush'});
  const newer = h('button', {type: 'button', class: 'btn btn-secondary', disabled: true}, '← Newer');
  const older = h('button', {type: 'button', class: 'btn btn-secondary', id: 'audit-older', disabled: true}, 'Older →');
  const pageInfo = h('span', {class: 'muted small'});

  // Cursors of the pages seen so far: cursors[i] fetches page i (page 0: none).
  let cursors = [null];
  let pageIndex = 0;
  let next = null;

  const load = async () => {
    const query = {
      tenant: tenant.value.trim(), actor: actor.value.trim(), action: action.value.trim(),
      target_id: targetId.value.trim(), since: toIso(since.value), until: toIso(until.value),
      after: cursors[pageIndex] || '', limit: PAGE_SIZE,
    };
    try {
      const page = await api('GET', '/v1/audit', {query});
      next = page.next;
      results.replaceChildren(page.events.length ? auditTable(page.events) : emptyState('No events match these filters'));
      pageInfo.textContent = page.events.length ? `Page ${pageIndex + 1}` : '';
    } catch (e) {
      next = null;
      if (!(e instanceof ApiError && e.status === 401)) {
        results.replaceChildren(emptyState('Cannot load the audit log', e.message, 'error'));
      }
      pageInfo.textContent = '';
    }
    newer.disabled = pageIndex === 0;
    older.disabled = !next;
  };

  const form = h('form', {class: 'filters filters-grid', novalidate: true},
    field('Tenant', tenant), field('Actor', actor), field('Action', action, null, h('div', {}, action, actions)),
    field('Target ID', targetId), field('Since', since), field('Until', until),
    h('div', {class: 'field field-button'}, apply));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    cursors = [null];
    pageIndex = 0;
    load();
  });
  older.addEventListener('click', () => {
    if (!next) return;
    cursors[pageIndex + 1] = next;
    pageIndex += 1;
    load();
  });
  newer.addEventListener('click', () => {
    if (pageIndex === 0) return;
    pageIndex -= 1;
    load();
  });

  view.append(
    h('div', {class: 'page-head'}, h('div', {},
      h('h1', {}, 'Audit log'),
      h('p', {class: 'muted'}, 'Who did what to which token, role or tenant admin, newest first.'))),
    form, results,
    h('div', {class: 'pager'}, newer, pageInfo, older));
  await load();
}
