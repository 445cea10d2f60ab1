// DOM building without innerHTML: every piece of data goes in through textContent or
// setAttribute, so a name such as `<img src=x onerror=alert(1)>` shows as text. No inline
// styles either (the Content-Security-Policy has no 'unsafe-inline'): looks come from classes.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') || name === 'style' || name === 'innerHTML') {
      throw new Error(`dom: refusing attribute ${name}`);
    }
    if (name === 'class') el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'checked' || name === 'disabled' || name === 'selected' || name === 'hidden' || name === 'required' || name === 'readOnly') el[name] = Boolean(value);
    else if (name === 'value') el.value = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h('a', {href: '#/x', class: 'link'}, 'text', otherNode). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, for the usage chart. */
export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`dom: no #${id}`);
  return el;
}

/** A short message at the bottom right, gone after a few seconds. */
export function toast(message, kind = 'info') {
  const box = byId('toasts');
  const item = h('div', {class: ['toast', `toast-${kind}`]}, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 4000);
}

const DATE_TIME = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const DATE = new Intl.DateTimeFormat(undefined, {year: 'numeric', month: 'short', day: 'numeric'});
const DATE_SECONDS = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

/**
 * A time for a table cell: local date and time (`dateOnly`: the date; `seconds`: to the second),
 * the exact instant in the tooltip.
 */
export function time(iso, {empty = '—', dateOnly = false, seconds = false} = {}) {
  if (!iso) return h('span', {class: 'muted'}, empty);
  const d = new Date(iso);
  const format = dateOnly ? DATE : seconds ? DATE_SECONDS : DATE_TIME;
  return h('time', {datetime: iso, title: `${DATE_TIME.format(d)} (${d.toISOString()})`}, format.format(d));
}

/** "in 14 days", "3 hours ago". */
export function relative(iso) {
  const diff = (new Date(iso).getTime() - Date.now()) / 1000;
  const abs = Math.abs(diff);
  const rtf = new Intl.RelativeTimeFormat(undefined, {numeric: 'auto'});
  const units = [['year', 31536000], ['month', 2592000], ['day', 86400], ['hour', 3600], ['minute', 60]];
  for (const [unit, secs] of units) {
    if (abs >= secs) return rtf.format(Math.round(diff / secs), unit);
  }
  return rtf.format(Math.round(diff), 'second');
}

export function badge(text, kind) {
  return h('span', {class: ['badge', `badge-${kind}`]}, text);
}

export function statusBadge(status) {
  const kinds = {active: 'green', revoked: 'red', expired: 'amber'};
  return badge(status, kinds[status] || 'gray');
}

/** A list of short monospace chips (permissions, roles), or a dash. */
export function chips(items, kind = 'perm') {
  if (!items || items.length === 0) return h('span', {class: 'muted'}, '—');
  return h('span', {class: 'chips'}, items.map((p) => h('span', {class: ['chip', `chip-${kind}`]}, p)));
}

/** A state in place of a table: nothing yet, nothing matching, an error. */
export function emptyState(title, text, kind = 'empty') {
  return h('div', {class: ['empty', `empty-${kind}`]}, h('p', {class: 'empty-title'}, title), text ? h('p', {class: 'muted'}, text) : null);
}
