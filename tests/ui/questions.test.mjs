// Security questions on the account page in a real browser (with porteiro.js): a wrong password
// is shown as a message and sets nothing; two answers set with the right password put the
// questions in use; the page never shows an answer. The API confirms what was stored.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ADMIN, apiSignIn, launchBrowser, newUser, registerViaApi, startServer, startSmtp } from './harness.mjs';

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

describe('security questions on the account page', () => {
  test('two answers set through the page put the questions in use', async () => {
    // Arrange: a catalogue of three questions and a signed-in account.
    const admin = await token(ADMIN.username, ADMIN.password);
    const texts = ['What was the name of your first pet?', 'In which city were you born?', 'What is your favourite book?'];
    const ids = [];
    for (const text of texts) {
      const r = await api('POST', '/api/security-questions/admin', admin, { text });
      assert.equal(r.status, 201, JSON.stringify(r.json));
      ids.push(r.json.data.id);
    }
    const user = newUser('quest');
    await registerViaApi(server.base, user);
    assert.equal(await apiSignIn(server.base, user.email, user.password), 200);
    const ctx = await browser.newContext({ locale: 'en-US', extraHTTPHeaders: { 'Accept-Language': 'en-US' } });
    const page = await ctx.newPage();
    await page.goto(`${server.base}/ui/login`);
    await page.fill('#identifier', user.email);
    await page.fill('#password', user.password);
    await page.click('button[type="submit"].primary');
    await page.waitForURL('**/ui/account');
    const section = page.locator('#security-questions');
    await assert.doesNotReject(section.getByText('Not in use').waitFor());
    assert.match(await section.innerText(), /at least 2/);
    const form = section.locator('form[action="/ui/account/security-questions"]');

    // Act / Assert: a wrong password is a message on the page, and nothing is set.
    await form.getByLabel('Question').selectOption(ids[0]);
    await form.getByLabel('Answer').fill('Rex');
    await form.getByLabel('Current password').fill('Not-The-Password-1');
    await form.getByRole('button', { name: 'Save answer' }).click();
    await form.locator('[role="alert"]:visible').getByText('The current password is incorrect.').waitFor();
    assert.equal(page.url(), `${server.base}/ui/account`);

    // Two answers with the right password.
    for (const [id, answer] of [[ids[0], 'Rex'], [ids[1], 'São Paulo']]) {
      await form.getByLabel('Question').selectOption(id);
      await form.getByLabel('Answer').fill(answer);
      await form.getByLabel('Current password').fill(user.password);
      await form.getByRole('button', { name: 'Save answer' }).click();
      await page.waitForURL('**/ui/account?notice=security_answer_saved');
      await page.getByText('Answer saved.').waitFor();
    }
    await section.getByText('In use', { exact: true }).waitFor();
    const shown = await section.innerText();
    assert.match(shown, /2 of 5 answered/);
    assert.ok(shown.includes(texts[0]) && shown.includes(texts[1]));
    assert.ok(!(await page.content()).includes('São Paulo'), 'answers are never shown');

    // The API agrees: both answered, and the answers are the ones typed.
    const access = await token(user.username, user.password);
    const me = await api('GET', '/api/auth/me', access);
    const userId = me.json.data.id ?? me.json.data.user?.id;
    const list = await api('GET', `/api/security-questions/users/${userId}/security-questions/answers`, access);
    assert.deepEqual(list.json.data.map((a) => a.question_id).sort(), [ids[0], ids[1]].sort());
    const check = await api('POST', `/api/security-questions/users/${userId}/security-questions/${ids[1]}/verify`, access, { answer: 'sao paulo' });
    assert.equal(check.json.data.valid, true);
    await ctx.close();
  });
});
