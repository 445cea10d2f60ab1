// Drives keygate's web console in a real Chromium (Debian's /usr/bin/chromium, headless) against
// a real stack: the key service serving /console, Envoy with the keygate filter in front of an
// upstream. Run by tests/tests/e2e/console.rs, which starts the stack and passes:
//   KEYGATE_URL            the key service, e.g. http://127.0.0.1:41234
//   KEYGATE_ADMIN_SECRET   its admin secret
//   KEYGATE_ENVOY_URL      Envoy's main listener, e.g. http://127.0.0.1:41235
//   KEYGATE_SCREENSHOTS    where to save a screenshot of every page
// Exits non-zero on the first failed check, naming it. Prints no secret.

import assert from 'node:assert/strict';
import {mkdirSync} from 'node:fs';
import {join} from 'node:path';
import {chromium} from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env('KEYGATE_URL');
const ADMIN_SECRET = env('KEYGATE_ADMIN_SECRET');
const ENVOY = env('KEYGATE_ENVOY_URL');
const SHOTS = env('KEYGATE_SCREENSHOTS');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

const XSS_NAME = '<img src=x onerror=alert(1)>';
const KEY_NAME = 'checkout service (e2e)';
const STEP_TIMEOUT = 10_000;

mkdirSync(SHOTS, {recursive: true});

let stepName = 'start';
function step(name) {
  stepName = name;
  console.log(`- ${name}`);
}

async function admin(method, path, body) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: {Authorization: `Bearer ${ADMIN_SECRET}`, 'Content-Type': 'application/json'},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function throughEnvoy(secret) {
  const response = await fetch(`${ENVOY}/orders/1`, {headers: {'x-api-key': secret}});
  await response.arrayBuffer();
  return response.status;
}

/** Polls `check` every 100 ms until it returns a truthy value, for at most `ms`. */
async function eventually(what, ms, check) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`gave up after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Roles (create, edit, the 409 holders list, delete), a tenant admin's view (its own tenant only,
 * no role above its own) and the audit log (filters, a token's events).
 */
async function rolesTenantAdminsAndAudit(page, revokedKeyId) {
  step('roles: create and edit one in the console');
  await admin('POST', '/v1/roles', {tenant: 'acme', name: 'reader', description: 'read orders', permissions: ['orders:read']});
  await admin('POST', '/v1/roles', {tenant: 'acme', name: 'writer', description: 'read and write orders', permissions: ['orders:read', 'orders:write']});
  await admin('POST', '/v1/keys', {name: 'globex billing', tenant: 'globex', permissions: ['orders:read']});
  await page.click('a[data-page=roles]');
  await page.locator('#roles-table').waitFor();
  await page.click('#create-role');
  const dialog = page.locator('#form-dialog');
  await dialog.locator('input[name=tenant]').fill('acme');
  await dialog.locator('input[name=name]').fill('auditor');
  await dialog.locator('textarea[name=description]').fill('reads the audit trail');
  await dialog.locator('input[name=permissions]').fill('audit:read');
  await dialog.getByRole('button', {name: 'Create role'}).click();
  const auditorRow = page.locator('#roles-table tbody tr', {hasText: 'auditor'});
  await auditorRow.waitFor();
  await auditorRow.getByRole('button', {name: 'Edit'}).click();
  await dialog.locator('input[name=permissions]').fill('audit:read, audit:export');
  await dialog.getByRole('button', {name: 'Save'}).click();
  await auditorRow.locator('.chip', {hasText: 'audit:export'}).waitFor();

  step('a tenant admin sees its tenant only and cannot grant a role above its own');
  const ta = await admin('POST', '/v1/tenant-admins', {tenant: 'acme', name: 'acme ops', roles: ['reader'], permissions: []});
  const context = await page.context().browser().newContext({viewport: {width: 1440, height: 900}});
  const tenantPage = await context.newPage();
  tenantPage.setDefaultTimeout(STEP_TIMEOUT);
  tenantPage.on('pageerror', (err) => problems.push(`tenant admin page error: ${err.message}`));
  await tenantPage.goto(`${BASE}/console`);
  await tenantPage.fill('#signin-secret', ta.secret);
  await tenantPage.click('#signin-submit');
  await tenantPage.locator('#tokens-table').waitFor();
  assert.match(await tenantPage.locator('#who').textContent(), /Tenant admin.*acme/);
  const tenants = await tenantPage.locator('#tokens-table tbody tr td:nth-child(4)').allTextContents();
  assert.ok(tenants.length > 0 && tenants.every((t) => t === 'acme'), `a tenant admin sees tenants ${tenants}`);
  await tenantPage.click('#create-token');
  const form = tenantPage.locator('#create-form');
  assert.equal(await form.locator('input[name=tenant]').inputValue(), 'acme');
  assert.ok(await form.locator('input[name=tenant]').evaluate((el) => el.readOnly), 'the tenant can be changed');
  await form.locator('.roles-picker input[value=reader]').waitFor();
  assert.ok(await form.locator('.roles-picker input[value=writer]').isDisabled(), 'a role above its own can be chosen');
  assert.ok(await form.locator('.roles-picker input[value=reader]').isEnabled());
  assert.equal(await form.locator('.checks:not(.roles-picker) input[value="orders:write"]').count(), 0, 'a permission it lacks is offered');
  await form.locator('input[name=name]').fill('acme reader key');
  await form.locator('.roles-picker input[value=reader]').check();
  await tenantPage.screenshot({path: join(SHOTS, '9-tenant-admin-create.png')});
  await tenantPage.click('#create-submit');
  await tenantPage.locator('#new-secret').waitFor();
  await tenantPage.click('#secret-done');
  await tenantPage.locator('#tokens-table tbody tr', {hasText: 'acme reader key'}).waitFor();
  await tenantPage.click('#signout');
  await tenantPage.locator('#signin-secret').waitFor();
  await context.close();

  step('a role still held is not deleted: its holders are listed');
  await page.reload();
  await page.click('a[data-page=roles]');
  const readerRow = page.locator('#roles-table tbody tr', {hasText: 'read orders'});
  await readerRow.getByRole('button', {name: 'Delete'}).click();
  await page.click('#confirm-ok');
  await page.locator('#holders-table', {hasText: 'acme reader key'}).waitFor();
  await page.screenshot({path: join(SHOTS, '10-role-in-use.png')});
  await page.locator('#form-dialog').getByRole('button', {name: 'OK'}).click();
  await auditorRow.getByRole('button', {name: 'Delete'}).click();
  await page.click('#confirm-ok');
  await auditorRow.waitFor({state: 'detached'});

  step('the audit log: filters, and a token\'s events on its page');
  await page.click('a[data-page=audit]');
  await page.locator('#audit-table').waitFor();
  await page.fill('input[name=action]', 'key.revoke');
  await page.getByRole('button', {name: 'Apply filters'}).click();
  await eventually('the filtered audit log', 5000, async () => {
    const actions = await page.locator('#audit-table tbody tr td:nth-child(2)').allTextContents();
    return actions.length > 0 && actions.every((a) => a === 'key.revoke');
  });
  await page.goto(`${BASE}/console#/tokens/key/${revokedKeyId}`);
  const events = page.locator('#token-audit-table tbody tr td:nth-child(2)');
  await events.first().waitFor();
  const actions = await events.allTextContents();
  assert.ok(actions.includes('key.create') && actions.includes('key.revoke'), `the key's events: ${actions}`);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-background-networking'],
});
const problems = [];
const alerts = [];
let page;
try {
  const context = await browser.newContext({viewport: {width: 1440, height: 900}, deviceScaleFactor: 1});
  page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  // A CSP violation or a script error shows up here; the console must have none.
  // API answers such as 401 for the wrong secret, or 404 from endpoints this key service lacks,
  // are logged by Chromium as failed loads; the console handles them, so they are no problem.
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) problems.push(`console: ${msg.text()}`);
  });
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('dialog', async (dialog) => { alerts.push(dialog.message()); await dialog.dismiss(); });
  const requests = [];
  page.on('request', (req) => requests.push(req.url()));

  // Data the console lists: a key whose name is markup, and one with traffic for the chart.
  step('seed a key named like markup');
  const xss = await admin('POST', '/v1/keys', {name: XSS_NAME, tenant: 'globex', permissions: ['orders:read']});
  await admin('POST', '/v1/clients', {name: 'partner integration', tenant: 'acme', permissions: ['orders:read', 'orders:write']});

  step('open the console: the sign-in page');
  const consoleResponse = await page.goto(`${BASE}/console`);
  assert.equal(consoleResponse.status(), 200);
  assert.match(consoleResponse.headers()['content-security-policy'], /script-src 'self'/);
  await page.locator('#signin-secret').waitFor();
  await page.screenshot({path: join(SHOTS, '1-sign-in.png')});

  step('a wrong secret is refused');
  await page.fill('#signin-secret', 'not-the-admin-secret');
  await page.click('#signin-submit');
  await page.locator('#signin-error').filter({hasText: 'not accepted'}).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  step('sign in with the admin secret');
  await page.fill('#signin-secret', ADMIN_SECRET);
  await page.click('#signin-submit');
  await page.locator('#tokens-table').waitFor();
  const storage = await page.evaluate(() => ({
    session: Object.values(sessionStorage),
    local: localStorage.length,
    cookie: document.cookie,
    href: location.href,
  }));
  assert.deepEqual(storage.session, [ADMIN_SECRET], 'the secret is held in sessionStorage');
  assert.equal(storage.local, 0, 'nothing in localStorage');
  assert.equal(storage.cookie, '', 'no cookie');
  assert.ok(!storage.href.includes(ADMIN_SECRET), 'the secret is in the URL');
  assert.equal(await page.locator('#who').textContent(), 'Super admin');

  step('a name holding markup shows as text');
  const xssRow = page.locator(`#tokens-table tr[data-id="${xss.id}"]`);
  assert.equal(await xssRow.locator('.token-name').textContent(), XSS_NAME);
  assert.equal(await page.locator('#tokens-table img').count(), 0, 'the name became an <img>');
  assert.equal(await page.locator('#tokens-table tr[data-kind=client]').count(), 1, 'the OAuth client is listed');

  step('create an API key in the console');
  await page.click('#create-token');
  const form = page.locator('#create-form');
  await form.waitFor();
  await form.locator('input[name=name]').fill(KEY_NAME);
  await form.locator('input[name=tenant]').fill('acme');
  await form.locator('input[name=permissions]').fill('orders:read, orders:write');
  await form.locator('select[name=expiry]').selectOption({label: '90 days'});
  await page.screenshot({path: join(SHOTS, '3-create-token.png')});
  await page.click('#create-submit');
  const secretInput = page.locator('#new-secret');
  await secretInput.waitFor();
  await page.locator('#form-dialog').getByText('will not be shown again').waitFor();
  const secret = await secretInput.inputValue();
  assert.match(secret, /^kg_/, 'an API key is shown');
  await page.screenshot({path: join(SHOTS, '4-secret-shown-once.png')});
  assert.ok(!requests.some((u) => u.includes(secret)), 'the secret went into a URL');
  await page.click('#secret-done');
  const row = page.locator('#tokens-table tbody tr', {hasText: KEY_NAME});
  await row.waitFor();
  assert.ok(!(await page.content()).includes(secret), 'the secret is still in the page after Done');
  const keyId = await row.getAttribute('data-id');
  assert.match(keyId, /^key_/);
  assert.equal(await row.locator('.badge', {hasText: 'active'}).count(), 1);

  step('the new key passes Envoy');
  for (let i = 0; i < 3; i++) assert.equal(await throughEnvoy(secret), 200, 'a fresh key through Envoy');

  step('filters: by type, status and name');
  await page.selectOption('select[name=type]', 'client');
  assert.equal(await page.locator('#tokens-table tbody tr').count(), 1);
  await page.selectOption('select[name=type]', '');
  await page.fill('input[name=search]', 'checkout');
  assert.equal(await page.locator('#tokens-table tbody tr').count(), 1);
  await page.fill('input[name=search]', '');
  await page.selectOption('select[name=tenant]', 'globex');
  assert.equal(await page.locator('#tokens-table tbody tr').count(), 1);
  await page.selectOption('select[name=tenant]', '');
  await page.locator('input[name=search]').blur();
  await page.screenshot({path: join(SHOTS, '2-tokens.png')});

  step('the key\'s page charts its requests');
  await eventually('usage to reach the key service', 20_000, async () => (await admin('GET', `/v1/keys/${keyId}/usage`)).total >= 3);
  await row.locator('.token-name').click();
  await page.locator('#usage-chart').waitFor();
  const today = new Date().toISOString().slice(0, 10);
  const bars = page.locator('#usage-chart rect');
  assert.equal(await bars.count(), 30, 'one bar per day of the last 30');
  assert.equal(await page.locator(`#usage-chart rect[data-day="${today}"]`).getAttribute('data-count'), '3');
  assert.equal(await page.locator('#usage-chart rect[data-count="0"]').count(), 29, 'days without traffic are 0');
  await page.locator('#token-audit-table tbody tr', {hasText: 'key.create'}).waitFor();
  await page.screenshot({path: join(SHOTS, '5-token-detail.png'), fullPage: true});

  step('revoke it in the console, after confirming');
  await page.click('a[href="#/tokens"]');
  await row.waitFor();
  await row.locator('summary').click();
  await row.getByRole('button', {name: 'Revoke'}).click();
  const confirm = page.locator('#confirm-dialog');
  await confirm.getByText('This cannot be undone.').waitFor();
  await page.screenshot({path: join(SHOTS, '6-confirm-revoke.png')});
  await page.click('#confirm-ok');
  await row.locator('.badge', {hasText: 'revoked'}).waitFor();

  step('Envoy refuses the revoked key within about a second');
  const revokedAt = Date.now();
  await eventually('Envoy to refuse the revoked key', 3000, async () => (await throughEnvoy(secret)) === 401);
  console.log(`  refused ${Date.now() - revokedAt} ms after the console showed it revoked`);

  step('rotate the markup-named key: a new secret, shown once; renew it for a year');
  await xssRow.locator('summary').click();
  await xssRow.getByRole('button', {name: 'Rotate secret'}).click();
  await page.locator('#form-dialog select[name=grace]').selectOption('0');
  await page.locator('#form-dialog').getByRole('button', {name: 'Rotate'}).click();
  const rotated = await page.locator('#new-secret').inputValue();
  assert.match(rotated, /^kg_/);
  assert.notEqual(rotated, secret);
  await page.click('#secret-done');
  await xssRow.locator('summary').click();
  await xssRow.getByRole('button', {name: 'Renew'}).click();
  await page.locator('#form-dialog select[name=expiry]').selectOption({label: '1 year'});
  await page.locator('#form-dialog').getByRole('button', {name: 'Renew'}).click();
  await page.locator('.toast', {hasText: 'renewed'}).waitFor();
  const renewed = await admin('GET', `/v1/keys/${xss.id}`);
  const days = (Date.parse(renewed.expires_at) - Date.now()) / 86400000;
  assert.ok(days > 364 && days <= 365, `renewed for ${days} days`);

  step('delete the markup-named key, after confirming; cancelling first keeps it');
  await xssRow.locator('summary').click();
  await xssRow.getByRole('button', {name: 'Delete'}).click();
  await confirm.getByRole('button', {name: 'Cancel'}).click();
  assert.equal(await xssRow.count(), 1, 'cancel deleted the key');
  await xssRow.locator('summary').click();
  await xssRow.getByRole('button', {name: 'Delete'}).click();
  await page.click('#confirm-ok');
  await xssRow.waitFor({state: 'detached'});

  await rolesTenantAdminsAndAudit(page, keyId);

  step('roles and audit pages');
  await page.click('a[data-page=roles]');
  await page.locator('h1', {hasText: 'Roles'}).waitFor();
  await page.locator('#roles-table, .empty').first().waitFor();
  await page.screenshot({path: join(SHOTS, '7-roles.png')});
  await page.click('a[data-page=audit]');
  await page.locator('h1', {hasText: 'Audit log'}).waitFor();
  await page.locator('#audit-table, .empty').first().waitFor();
  await page.screenshot({path: join(SHOTS, '8-audit.png')});

  assert.deepEqual(await page.evaluate(() => window.__cspViolations), [], 'Content-Security-Policy violations');

  step('sign out forgets the secret');
  await page.click('#signout');
  await page.locator('#signin-secret').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await page.reload();
  await page.locator('#signin-secret').waitFor();
  assert.ok(await page.locator('#app').isHidden(), 'the console shows after sign-out and reload');

  assert.deepEqual(alerts, [], 'a script ran from data');
  assert.deepEqual(problems, [], 'errors or CSP violations in the page');
  console.log(`console test passed; key ${keyId} created, used, revoked`);
  console.log(`RESULT ${JSON.stringify({key_id: keyId})}`);
} catch (e) {
  console.error(`FAILED at "${stepName}": ${e.stack || e}`);
  if (problems.length) console.error(`page problems:\n  ${problems.join('\n  ')}`);
  if (page) await page.screenshot({path: join(SHOTS, 'failure.png'), fullPage: true}).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
