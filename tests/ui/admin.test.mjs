// The admin console in a real browser: an administrator creates a role, grants it a permission,
// finds a user with the search and gives them the role from their page (the user's access changes
// at once), then takes it away; a delegate is offered only the roles within reach; sessions are
// ended and an account deleted with its confirmation step, without JavaScript; the audit log is
// filtered, paged and exported as CSV (formula injection defused); plain users get 403
// everywhere; screenshots of the new pages for docs/screenshots/.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { ADMIN, apiSignIn, launchBrowser, newUser, startServer, startSmtp } from './harness.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const SHOTS = resolve(HERE, '..', '..', 'docs', 'screenshots');
let smtp;
let server;
let browser;

before(async () => {
  smtp = await startSmtp();
  server = await startServer(smtp);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await smtp?.close();
});

async function context(locale = 'en-US', options = {}) {
  return browser.newContext({ locale, extraHTTPHeaders: { 'Accept-Language': locale }, ...options });
}

async function signIn(page, login, password) {
  await page.goto(`${server.base}/ui/login`);
  await page.fill('#identifier', login);
  await page.fill('#password', password);
  await page.click('button[type="submit"].primary');
  await page.waitForURL('**/ui/account');
}

const alertText = (page) => page.locator('[role="alert"]:visible').first();
const statusText = (page) => page.locator('[role="status"]').first();

/** Registers through the API and returns the account with its id. */
async function register(prefix, headers = {}) {
  const user = newUser(prefix);
  const r = await fetch(`${server.base}/api/auth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ ...user, confirm_password: user.password }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  return { ...user, id: (await r.json()).data.id };
}

/** An API access token (the server-side view, independent of the pages). */
async function token(login, password) {
  const r = await fetch(`${server.base}/api/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username_or_email: login, password }),
  });
  assert.equal(r.status, 200);
  return (await r.json()).data.access_token;
}

async function api(method, path, bearer, body) {
  const r = await fetch(`${server.base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${bearer}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return JSON.parse(text).data;
}

async function allowed(adminToken, userId, permission) {
  return (await api('GET', `/api/rbac/check-permission/${userId}/${permission}`, adminToken)).allowed;
}

/** A role made through the API, granting `permissions` (names). */
async function roleVia(adminToken, name, permissions) {
  const role = await api('POST', '/api/rbac/roles', adminToken, { name });
  for (const p of permissions) {
    const perm = await api('GET', `/api/rbac/permissions/by-name/${p}`, adminToken);
    await api('POST', `/api/rbac/roles/${role.id}/permissions/${perm.id}`, adminToken);
  }
  return role;
}

describe('roles and users', () => {
  test('create a role, grant a permission, give it to a user from their page, see it, take it away', async () => {
    const user = await register('holder');
    const adminToken = await token(ADMIN.username, ADMIN.password);
    const ctx = await context();
    const page = await ctx.newPage();
    await signIn(page, ADMIN.username, ADMIN.password);

    await page.getByRole('link', { name: 'Roles', exact: true }).click();
    await page.waitForURL('**/ui/admin/roles');
    await page.getByLabel('Name').first().fill('support');
    await page.getByLabel('Description').first().fill('Help desk: reads accounts');
    await page.getByRole('button', { name: 'Create role' }).click();
    await page.waitForURL('**/ui/admin/roles/*?notice=role_created');
    assert.match(await statusText(page).textContent(), /Role created/);
    assert.match(await page.textContent('h1'), /support/);
    assert.match(await page.textContent('main'), /No permissions/);

    await page.getByLabel('Grant a permission').selectOption({ label: 'users:read' });
    await page.getByRole('button', { name: 'Grant', exact: true }).click();
    await page.waitForURL('**/ui/admin/roles/*?notice=permission_granted');
    assert.deepEqual(await page.locator('.grants code').allTextContents(), ['users:read']);
    // The same name again is refused in words, and nothing is created.
    await page.goto(`${server.base}/ui/admin/roles`);
    await page.getByLabel('Name').first().fill('support');
    await page.getByRole('button', { name: 'Create role' }).click();
    await alertText(page).filter({ hasText: 'already in use' }).waitFor();
    await page.getByLabel('Name').first().fill('Not A Name');
    await page.getByRole('button', { name: 'Create role' }).click();
    await alertText(page).filter({ hasText: 'lowercase letters' }).waitFor();

    await page.getByRole('link', { name: 'Users', exact: true }).click();
    await page.waitForURL('**/ui/admin');
    await page.getByLabel('Email or username starts with').fill(user.username.slice(0, -1).toUpperCase());
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL('**/ui/admin?q=*');
    await page.getByRole('link', { name: user.username }).click();
    await page.waitForURL(`**/ui/admin/users/${user.id}`);
    assert.deepEqual(await page.locator('.chips .chip a').allTextContents(), ['user']);
    assert.equal(await allowed(adminToken, user.id, 'users:read'), false);

    await page.getByLabel('Give a role').selectOption({ label: 'support' });
    await page.getByRole('button', { name: 'Give', exact: true }).click();
    await page.waitForURL(`**/ui/admin/users/${user.id}?notice=role_assigned`);
    assert.match(await statusText(page).textContent(), /Role given/);
    assert.deepEqual(await page.locator('.chips .chip a').allTextContents(), ['support', 'user']);
    await page.locator('details.perms summary').click();
    assert.ok((await page.locator('details.perms code').allTextContents()).includes('users:read'));
    assert.equal(await allowed(adminToken, user.id, 'users:read'), true);
    // The assignment is among the user's recent events, newest first, with who did it.
    const first = page.locator('.events li').first();
    assert.match(await first.textContent(), /Role given/);
    assert.match(await first.textContent(), new RegExp(`by\\s+${ADMIN.username}`));

    // The holder's own next request has the new permission: the console opens for them.
    const theirs = await context();
    const theirPage = await theirs.newPage();
    await signIn(theirPage, user.email, user.password);
    const opened = await theirPage.goto(`${server.base}/ui/admin`);
    assert.equal(opened.status(), 200);

    await page.getByRole('button', { name: 'Remove role: support' }).click();
    await page.waitForURL(`**/ui/admin/users/${user.id}?notice=role_removed`);
    assert.deepEqual(await page.locator('.chips .chip a').allTextContents(), ['user']);
    assert.equal(await allowed(adminToken, user.id, 'users:read'), false);
    // Taken away at once: the holder's next request is refused.
    const closed = await theirPage.goto(`${server.base}/ui/admin`);
    assert.equal(closed.status(), 403);
    await theirs.close();
    await ctx.close();
  });

  test('a delegate is offered only the roles whose permissions they hold', async () => {
    const adminToken = await token(ADMIN.username, ADMIN.password);
    const delegate = await register('delegate');
    const target = await register('target');
    const assigner = await roleVia(adminToken, 'assigner', ['users:read', 'users:assign-role']);
    await roleVia(adminToken, 'auditor', ['audit:read']);
    await roleVia(adminToken, 'reader', ['users:read']);
    await api('POST', `/api/rbac/users/${delegate.id}/roles/${assigner.id}`, adminToken);

    const ctx = await context();
    const page = await ctx.newPage();
    await signIn(page, delegate.email, delegate.password);
    await page.goto(`${server.base}/ui/admin/users/${target.id}`);
    const offered = await page.locator('#role_id option').allTextContents();
    assert.ok(offered.includes('reader') && offered.includes('assigner'), offered.join());
    assert.ok(!offered.includes('auditor') && !offered.includes('admin'), offered.join());
    assert.match(await page.textContent('main'), /Only roles whose permissions you hold yourself are offered/);
    // No audit:read: no events section; no users:manage: no actions or deletion.
    assert.equal(await page.locator('#events-h').count(), 0);
    assert.equal(await page.getByRole('button', { name: /Delete account|Sign out everywhere/ }).count(), 0);
    await page.getByLabel('Give a role').selectOption({ label: 'reader' });
    await page.getByRole('button', { name: 'Give', exact: true }).click();
    await page.waitForURL(`**/ui/admin/users/${target.id}?notice=role_assigned`);
    assert.equal(await allowed(adminToken, target.id, 'users:read'), true);
    await ctx.close();
  });

  test('without JavaScript: end a session, then delete the account after the confirmation step', async () => {
    const user = await register('doomed');
    const theirs = await context('en-US');
    const theirPage = await theirs.newPage();
    await signIn(theirPage, user.email, user.password);

    const ctx = await context('pt-BR', { javaScriptEnabled: false });
    const page = await ctx.newPage();
    await signIn(page, ADMIN.username, ADMIN.password);
    await page.goto(`${server.base}/ui/admin/users/${user.id}`);
    assert.equal(await page.locator('.session').count(), 1);
    await page.locator('.session').getByRole('button', { name: /Revogar/ }).click();
    await page.waitForURL(`**/ui/admin/users/${user.id}?notice=user_session_revoked`);
    assert.match(await statusText(page).textContent(), /Sessão encerrada/);
    assert.equal(await page.locator('.session').count(), 0);
    await theirPage.goto(`${server.base}/ui/account`);
    await theirPage.waitForURL('**/ui/login?notice=session_ended');

    // The box must be ticked: the browser will not send the form without it.
    const confirm = page.getByLabel('Sim, excluir esta conta');
    assert.equal(await confirm.getAttribute('required'), '');
    await confirm.check();
    await page.getByRole('button', { name: 'Excluir conta' }).click();
    await page.waitForURL('**/ui/admin?notice=user_deleted');
    assert.match(await statusText(page).textContent(), /Conta excluída/);
    assert.equal(await apiSignIn(server.base, user.email, user.password), 401);
    const gone = await page.goto(`${server.base}/ui/admin/users/${user.id}`);
    assert.equal(gone.status(), 404);
    await theirs.close();
    await ctx.close();
  });
});

describe('audit log', () => {
  test('filter by user, type and time, page through, and download the same selection as CSV', async () => {
    // 55 failed sign-ins from a client whose user agent is a spreadsheet formula.
    const agent = '=HYPERLINK("https://evil.example","click")';
    const user = await register('audited', { 'User-Agent': agent });
    for (let i = 0; i < 55; i += 1) {
      const r = await fetch(`${server.base}/api/auth/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'User-Agent': agent },
        body: JSON.stringify({ username_or_email: user.email, password: `Wrong-${i}-pass` }),
      });
      assert.equal(r.status, 401);
    }
    const ctx = await context('pt-BR', { acceptDownloads: true });
    const page = await ctx.newPage();
    await signIn(page, ADMIN.username, ADMIN.password);
    await page.getByRole('link', { name: 'Auditoria' }).click();
    await page.waitForURL('**/ui/admin/audit');

    await page.getByLabel('Usuário').fill(user.username);
    await page.getByLabel('Tipo de evento').selectOption('sign_in.failed');
    await page.getByRole('button', { name: 'Aplicar filtros' }).click();
    await page.waitForURL('**/ui/admin/audit?user=*');
    const rows = page.locator('table.audit tbody tr');
    assert.equal(await rows.count(), 50, 'a page holds 50 events');
    for (const code of await rows.locator('code.muted').allTextContents()) {
      assert.match(code, /^sign_in\.failed · #\d+$/);
    }
    assert.match(await rows.first().textContent(), new RegExp(user.username));
    assert.equal(await page.inputValue('#user'), user.username, 'the form keeps the filters');
    await page.getByRole('link', { name: 'Mais antigos →' }).click();
    await page.waitForURL('**/ui/admin/audit?*before=*');
    assert.equal(await rows.count(), 5);
    assert.equal(await page.getByRole('link', { name: 'Mais antigos →' }).count(), 0, 'the last page');
    await page.getByRole('link', { name: '← Mais recentes' }).click();
    await page.waitForURL((url) => !url.searchParams.has('before'));
    assert.equal(await rows.count(), 50);

    // The CSV holds the whole selection (not only the page) with the same filters.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Baixar CSV' }).click(),
    ]);
    assert.match(download.suggestedFilename(), /^porteiro-audit-\d{8}T\d{6}Z\.csv$/);
    const csv = readFileSync(await download.path(), 'utf8');
    const lines = csv.split('\r\n').filter(Boolean);
    assert.equal(lines[0], 'id,occurred_at,event_type,outcome,user_id,actor_id,ip_address,user_agent,details');
    assert.equal(lines.length, 56, 'a header and 55 events');
    for (const line of lines.slice(1)) {
      assert.match(line, new RegExp(`^"\\d+","[^"]+","sign_in\\.failed","failure","${user.id}",`));
      // The formula stays text: a leading quote, and its own quotes doubled.
      assert.ok(line.includes(`"'=HYPERLINK(""https://evil.example"",""click"")"`), line);
    }
    const ids = lines.slice(1).map((l) => Number(l.split(',')[0].replaceAll('"', '')));
    assert.deepEqual(ids, [...ids].sort((a, b) => b - a), 'newest first');
    const direct = await ctx.request.get(`${server.base}/ui/admin/audit.csv?user=${user.id}&type=sign_in.failed`);
    assert.equal(direct.status(), 200);
    assert.match(direct.headers()['content-type'], /^text\/csv; charset=utf-8/);
    assert.match(direct.headers()['content-disposition'], /^attachment; filename="porteiro-audit-/);
    assert.equal(direct.headers()['cache-control'], 'no-store');

    // A time range after every event selects none; an end before the start is explained.
    await page.getByLabel('De (UTC)').fill('2999-01-01T00:00');
    await page.getByRole('button', { name: 'Aplicar filtros' }).click();
    await page.locator('text=Nenhum evento corresponde.').waitFor();
    await page.getByLabel('Até (UTC)').fill('2998-01-01T00:00');
    await page.getByRole('button', { name: 'Aplicar filtros' }).click();
    await alertText(page).filter({ hasText: 'O fim deve vir depois do início' }).waitFor();
    assert.equal(await page.getByRole('link', { name: 'Baixar CSV' }).count(), 0);
    await page.getByLabel('Usuário').fill('ninguem-aqui');
    await page.getByLabel('De (UTC)').fill('');
    await page.getByLabel('Até (UTC)').fill('');
    await page.getByRole('button', { name: 'Aplicar filtros' }).click();
    await alertText(page).filter({ hasText: 'Nenhuma conta tem este id' }).waitFor();
    await ctx.close();
  });
});

describe('access', () => {
  test('a plain user gets 403 on every console page, and a visitor is sent to sign in', async () => {
    const user = await register('plain');
    const ctx = await context();
    const page = await ctx.newPage();
    const paths = [
      '/ui/admin',
      `/ui/admin/users/${user.id}`,
      '/ui/admin/roles',
      '/ui/admin/roles/00000000-0000-4000-8000-000000000001',
      '/ui/admin/audit',
      '/ui/admin/audit.csv',
    ];
    for (const path of paths) {
      const r = await ctx.request.get(`${server.base}${path}`, { maxRedirects: 0 });
      assert.equal(r.status(), 303, path);
      assert.match(r.headers().location, /^\/ui\/login/, path);
    }
    await signIn(page, user.email, user.password);
    for (const name of ['Users', 'Roles', 'Audit log', 'Webhooks']) {
      assert.equal(await page.getByRole('link', { name, exact: true }).count(), 0, `no ${name} link`);
    }
    for (const path of paths) {
      const r = await page.goto(`${server.base}${path}`);
      assert.equal(r.status(), 403, path);
      assert.match(await alertText(page).textContent(), /not allowed/);
    }
    await ctx.close();
  });
});

describe('screenshots of the console', () => {
  test('user, roles, role and audit pages, both languages, desktop and mobile', async () => {
    mkdirSync(SHOTS, { recursive: true });
    const adminToken = await token(ADMIN.username, ADMIN.password);
    const user = await register('joana');
    const role = await roleVia(adminToken, 'helpdesk', ['users:read', 'audit:read']);
    await api('POST', `/api/rbac/users/${user.id}/roles/${role.id}`, adminToken);
    const theirs = await context('pt-BR', { userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1' });
    await signIn(await theirs.newPage(), user.email, user.password);
    for (const lang of ['en', 'pt-BR']) {
      for (const [label, width, height] of [['desktop', 1280, 800], ['mobile', 360, 740]]) {
        const ctx = await context(lang, { viewport: { width, height }, deviceScaleFactor: 1 });
        const page = await ctx.newPage();
        const shoot = async (name) => {
          const labelled = await page.evaluate(() => Array.from(document.querySelectorAll('input, select, textarea'))
            .filter((i) => i.type !== 'hidden' && !i.hidden)
            .every((i) => i.labels && i.labels.length > 0));
          assert.ok(labelled, `${name}: every visible field has a label`);
          const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
          assert.ok(overflow <= 0, `${name} at ${width}px overflows by ${overflow}px`);
          await page.screenshot({ path: join(SHOTS, `${name}-${lang}-${label}.png`), fullPage: true });
        };
        await signIn(page, ADMIN.username, ADMIN.password);
        await page.goto(`${server.base}/ui/admin/users/${user.id}`);
        await shoot('admin-user');
        await page.goto(`${server.base}/ui/admin/roles`);
        await shoot('admin-roles');
        await page.goto(`${server.base}/ui/admin/roles/${role.id}`);
        await shoot('admin-role');
        await page.goto(`${server.base}/ui/admin/audit?type=user.role_assigned`);
        await shoot('admin-audit');
        await ctx.close();
      }
    }
    await theirs.close();
  });
});
