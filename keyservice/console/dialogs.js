// The console's two dialogs (native <dialog>, modal): a confirmation for what cannot be undone,
// and a form dialog whose content each page builds.

import {byId, clear, h} from './dom.js';

/** Asks before revoking or deleting. Resolves true on confirm, false on cancel or Escape. */
export function confirmDialog({title, message, confirm}) {
  const dialog = byId('confirm-dialog');
  const form = dialog.querySelector('form');
  byId('confirm-title').textContent = title;
  byId('confirm-message').textContent = message;
  byId('confirm-ok').textContent = confirm;
  return new Promise((resolve) => {
    const done = (answer) => {
      form.removeEventListener('submit', onSubmit);
      cancel.removeEventListener('click', onCancel);
      dialog.removeEventListener('close', onClose);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const onSubmit = (e) => { e.preventDefault(); done(true); };
    const onCancel = () => done(false);
    const onClose = () => done(false);
    const cancel = form.querySelector('[data-action=cancel]');
    form.addEventListener('submit', onSubmit);
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    cancel.focus();
  });
}

/** Opens the form dialog with `content`; returns a function that closes it. */
export function openFormDialog(title, content, {wide = false} = {}) {
  const dialog = byId('form-dialog');
  byId('form-dialog-title').textContent = title;
  clear(byId('form-dialog-content')).append(content);
  dialog.classList.toggle('dialog-wide', wide);
  if (!dialog.open) dialog.showModal();
  return () => { if (dialog.open) dialog.close(); };
}

export function setFormDialogTitle(title) {
  byId('form-dialog-title').textContent = title;
}

/**
 * The panel that shows a new secret once: the value, a copy button, and the warning that it
 * will not be shown again.
 */
export function secretPanel(secret, {label = 'Secret', extra = null, onDone}) {
  const value = h('input', {class: 'secret-value mono', id: 'new-secret', type: 'text', readonly: true, value: secret, 'aria-label': label, spellcheck: 'false'});
  value.readOnly = true;
  const copy = h('button', {type: 'button', class: 'btn btn-secondary', id: 'copy-secret'}, 'Copy');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(secret);
      copy.textContent = 'Copied';
    } catch {
      value.select();
      copy.textContent = 'Press Ctrl+C';
    }
  });
  const done = h('button', {type: 'button', class: 'btn btn-primary', id: 'secret-done'}, 'Done');
  done.addEventListener('click', onDone);
  return h('div', {class: 'secret-panel'},
    h('div', {class: 'callout callout-warning', role: 'alert'},
      h('strong', {}, 'Copy this secret now. '),
      'It will not be shown again: keygate keeps only its hash.'),
    extra,
    h('label', {for: 'new-secret'}, label),
    h('div', {class: 'secret-row'}, value, copy),
    h('div', {class: 'dialog-actions'}, done));
}
