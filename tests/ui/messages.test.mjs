// Private messages in a real browser (with porteiro.js): writing from the compose page, the
// recipient's inbox with its "new" mark, reading (the text shown as text, never as markup),
// replying, deleting one's own copy, the account page's "accept messages" switch, the
// Portuguese pages, and the CSP on every messages page. The API confirms what was stored.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newUser, registerViaApi, startServer, startSmtp } from './harness.mjs';

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

/** An access token through the compact API. */
async function token(login, password) {
  const r = await fetch(`${server.base}/auth`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ login, password }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()).auth;
}

async function api(method, path, access, body) {
  const r = await fetch(`${server.base}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${access}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}

/** A browser page signed in as `user` through the login form. */
async function signedIn(user, language = 'en-US', javaScriptEnabled = true) {
  const ctx = await browser.newContext({ locale: language, javaScriptEnabled, extraHTTPHeaders: { 'Accept-Language': language } });
  const page = await ctx.newPage();
  await page.goto(`${server.base}/ui/login`);
  await page.fill('#identifier', user.email);
  await page.fill('#password', user.password);
  await page.click('button[type="submit"].primary');
  await page.waitForURL('**/ui/account');
  return page;
}

describe('private messages', () => {
  test('a message goes from the compose page to the inbox, is read, answered and deleted', async () => {
    // Arrange
    const ana = newUser('ana');
    const bia = newUser('bia');
    await registerViaApi(server.base, ana);
    await registerViaApi(server.base, bia);
    const anaPage = await signedIn(ana);
    const biaPage = await signedIn(bia);
    const body = 'Line one\n<script>alert(1)</script> & more';

    // Act: ana writes from the page the header links to.
    await anaPage.getByRole('link', { name: 'Messages', exact: true }).click();
    await anaPage.waitForURL('**/ui/messages');
    await anaPage.getByText('No messages yet.').waitFor();
    await anaPage.getByRole('link', { name: 'Write a message' }).click();
    await anaPage.waitForURL('**/ui/messages/new');
    // A blank subject: porteiro.js trims it and asks for it before sending.
    await anaPage.getByLabel('To').fill(bia.username);
    await anaPage.getByLabel('Subject').fill('   ');
    await anaPage.getByLabel('Message', { exact: true }).fill(body);
    await anaPage.getByRole('button', { name: 'Send' }).click();
    await anaPage.locator('[role="alert"]:visible').getByText('Fill in this field.').waitFor();
    // Without JavaScript the server refuses it and shows the form again, as typed.
    const plain = await signedIn(ana, 'en-US', false);
    await plain.goto(`${server.base}/ui/messages/new`);
    await plain.getByLabel('To').fill(bia.username);
    await plain.getByLabel('Subject').fill('   ');
    await plain.getByLabel('Message', { exact: true }).fill('kept');
    await plain.getByRole('button', { name: 'Send' }).click();
    await plain.getByText('The subject has 1 to 200 characters, on one line.').waitFor();
    assert.equal(await plain.getByLabel('Message', { exact: true }).inputValue(), 'kept');
    assert.equal(await plain.getByLabel('Subject').getAttribute('aria-invalid'), 'true');
    await plain.context().close();
    await anaPage.getByLabel('Subject').fill('Hello from the page');
    await anaPage.getByRole('button', { name: 'Send' }).click();
    await anaPage.waitForURL('**/ui/messages?box=sent&notice=message_sent');
    await anaPage.getByText('Message sent.').waitFor();
    const sentRow = anaPage.locator('table.messages tbody tr');
    assert.equal(await sentRow.count(), 1);
    assert.match(await sentRow.innerText(), new RegExp(bia.username));
    assert.equal(await anaPage.locator('table.messages .badge').count(), 0, 'senders see no read marks');

    // Assert: bia's inbox marks it new; reading shows the text as text.
    await biaPage.goto(`${server.base}/ui/messages`);
    const row = biaPage.locator('table.messages tbody tr.unread');
    await row.getByText('New').waitFor();
    assert.match(await row.innerText(), new RegExp(ana.username));
    await row.getByRole('link', { name: 'Hello from the page' }).click();
    await biaPage.waitForURL(/\/ui\/messages\/[0-9a-f-]{36}$/);
    assert.equal(await biaPage.locator('[data-body]').innerText(), body);
    assert.equal(await biaPage.locator('script:not([src])').count(), 0, 'no markup from the message');
    await biaPage.goto(`${server.base}/ui/messages`);
    assert.equal(await biaPage.locator('table.messages tr.unread').count(), 0, 'read once opened');

    // Replying fills in the recipient and the subject.
    await biaPage.getByRole('link', { name: 'Hello from the page' }).click();
    await biaPage.getByRole('link', { name: 'Reply' }).click();
    await biaPage.waitForURL('**/ui/messages/new?**');
    assert.equal(await biaPage.getByLabel('To').inputValue(), ana.username);
    assert.equal(await biaPage.getByLabel('Subject').inputValue(), 'Re: Hello from the page');
    await biaPage.getByLabel('Message', { exact: true }).fill('Got it.');
    await biaPage.getByRole('button', { name: 'Send' }).click();
    await biaPage.waitForURL('**/ui/messages?box=sent&notice=message_sent');

    // Deleting removes bia's copy only.
    await biaPage.goto(`${server.base}/ui/messages`);
    await biaPage.getByRole('link', { name: 'Hello from the page' }).click();
    await biaPage.getByRole('button', { name: 'Delete' }).click();
    await biaPage.waitForURL('**/ui/messages?box=inbox&notice=message_deleted');
    await biaPage.getByText('Message deleted.').waitFor();
    await biaPage.getByText('No messages yet.').waitFor();
    const anaToken = await token(ana.username, ana.password);
    const sent = await api('GET', '/api/messages?box=sent', anaToken);
    assert.equal(sent.json.data.total, 1);
    const inbox = await api('GET', '/api/messages', anaToken);
    assert.equal(inbox.json.data.items[0].subject, 'Re: Hello from the page');

    // Every messages page carries the CSP without inline script.
    for (const path of ['/ui/messages', '/ui/messages?box=sent', '/ui/messages/new']) {
      const r = await anaPage.request.get(`${server.base}${path}`);
      assert.equal(r.status(), 200, path);
      assert.match(r.headers()['content-security-policy'], /script-src 'self'/);
    }
    const missing = await anaPage.request.get(`${server.base}/ui/messages/not-an-id`);
    assert.equal(missing.status(), 404);
    await anaPage.context().close();
    await biaPage.context().close();
  });

  test('turning messages off on the account page stops delivery; the pages speak Portuguese', async () => {
    // Arrange
    const cleo = newUser('cleo');
    const dan = newUser('dan');
    await registerViaApi(server.base, cleo);
    await registerViaApi(server.base, dan);
    const page = await signedIn(cleo);
    const form = page.locator('form[action="/ui/account/accept-messages"]');
    const box = form.getByLabel('Let other accounts send me messages');
    assert.equal(await box.isChecked(), true);

    // Act
    await box.uncheck();
    await form.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Message setting saved.').waitFor();
    const danToken = await token(dan.username, dan.password);
    const sent = await api('POST', '/api/messages', danToken, { to: cleo.email, subject: 'Hi', body: 'Anyone there?' });

    // Assert: answered as delivered, never delivered.
    assert.equal(sent.status, 201, JSON.stringify(sent.json));
    const cleoToken = await token(cleo.username, cleo.password);
    assert.equal((await api('GET', '/api/auth/me', cleoToken)).json.data.accept_messages, false);
    assert.equal((await api('GET', '/api/messages', cleoToken)).json.data.total, 0);
    await page.reload();
    assert.equal(await page.locator('form[action="/ui/account/accept-messages"]').getByLabel('Let other accounts send me messages').isChecked(), false);

    const pt = await signedIn(dan, 'pt-BR');
    await pt.goto(`${server.base}/ui/messages?box=sent`);
    await pt.getByRole('link', { name: 'Caixa de entrada' }).waitFor();
    await pt.getByRole('link', { name: 'Escrever mensagem' }).waitFor();
    assert.match(await pt.locator('table.messages').innerText(), new RegExp(cleo.email));
    await page.context().close();
    await pt.context().close();
  });
});
