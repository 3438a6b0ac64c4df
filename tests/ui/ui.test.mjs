// The hosted UI in a real browser: seed 003's six "Testes de Segurança" literally (in pt-BR, the
// seed's language), the account journey, the language switch, no-JavaScript use, keyboard use,
// the admin pages (users, webhooks), and screenshots of every page for docs/screenshots/.
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import {
  ADMIN, apiSignIn, launchBrowser, newUser, registerViaApi, startReceiver, startServer, startSmtp,
} from './harness.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const SHOTS = resolve(HERE, '..', '..', 'docs', 'screenshots');
let smtp;
let server;
let browser;
let receiver;

before(async () => {
  smtp = await startSmtp();
  receiver = await startReceiver();
  // The webhook receiver is on loopback, which the SSRF policy refuses unless allowed.
  server = await startServer(smtp, { WEBHOOK_ALLOW_PRIVATE: 'true' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await receiver?.close();
  await smtp?.close();
});

/** Whether `headers` carry a Standard Webhooks signature of `body` by `secret` (`whsec_…`). */
function signedBy(secret, headers, body) {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = createHmac('sha256', key)
    .update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`)
    .digest();
  return (headers['webhook-signature'] || '').split(' ').some((s) => {
    const sig = Buffer.from(s.replace(/^v1,/, ''), 'base64');
    return sig.length === expected.length && timingSafeEqual(sig, expected);
  });
}

async function context(locale = 'pt-BR', options = {}) {
  return browser.newContext({ locale, extraHTTPHeaders: { 'Accept-Language': locale }, ...options });
}

async function signIn(page, login, password) {
  await page.goto(`${server.base}/ui/login`);
  await page.fill('#identifier', login);
  await page.fill('#password', password);
  await page.click('button[type="submit"].primary');
}

const alertText = (page) => page.locator('[role="alert"]:visible').first();

describe('seed 003: Testes de Segurança', () => {
  test('Teste 1 — força bruta: 5 falhas, a 6ª tentativa mostra o bloqueio', async () => {
    const user = newUser('brute');
    await registerViaApi(server.base, user);
    const ctx = await context();
    const page = await ctx.newPage();
    await page.goto(`${server.base}/ui/login`);
    for (let i = 1; i <= 5; i += 1) {
      await page.fill('#identifier', user.email);
      await page.fill('#password', `Wrong-password-${i}`);
      await page.click('button.primary');
      await assert.doesNotReject(alertText(page).filter({ hasText: '❌ Email ou senha incorretos' }).waitFor());
      assert.equal(await alertText(page).textContent(), '❌ Email ou senha incorretos');
    }
    await page.fill('#identifier', user.email);
    await page.fill('#password', user.password);
    await page.click('button.primary');
    await alertText(page).filter({ hasText: '🔒' }).waitFor();
    assert.equal(
      (await alertText(page).textContent()).trim(),
      '🔒 Muitas tentativas falhas. Conta bloqueada por 5 minutos',
    );
    // The lock is the server's, not only the page's: the right password fails through the API.
    assert.equal(await apiSignIn(server.base, user.email, user.password), 401);
    await ctx.close();
  });

  test('Teste 2 — email inválido: "teste@" é recusado antes de enviar', async () => {
    const ctx = await context();
    const page = await ctx.newPage();
    await page.goto(`${server.base}/ui/login`);
    const posts = [];
    page.on('request', (r) => { if (r.method() === 'POST') posts.push(r.url()); });
    await page.fill('#identifier', 'teste@');
    await page.fill('#password', 'qualquer-coisa-1');
    await page.getByRole('button', { name: 'Entrar' }).click();
    await alertText(page).filter({ hasText: 'Email inválido' }).waitFor();
    assert.equal(await alertText(page).textContent(), '⚠️ Email inválido');
    assert.equal(await page.getAttribute('#identifier', 'aria-invalid'), 'true');
    assert.deepEqual(posts, [], 'nothing is sent for an invalid email');
    await ctx.close();
  });

  test('Teste 3 — senha fraca "123": medidor "muito fraca" e o registro é impedido', async () => {
    const user = newUser('weak');
    const ctx = await context();
    const page = await ctx.newPage();
    await page.goto(`${server.base}/ui/login`);
    await page.getByRole('link', { name: 'Criar Nova Conta' }).click();
    await page.waitForURL('**/ui/register');
    await page.fill('#username', user.username);
    await page.fill('#email', user.email);
    await page.fill('#password', '123');
    await page.fill('#confirm_password', '123');
    assert.equal(await page.textContent('.meter-text'), '❌ Senha muito fraca');
    assert.equal(await page.locator('.bars i.on').count(), 1);
    await page.getByRole('button', { name: 'Criar conta' }).click();
    await alertText(page).filter({ hasText: 'mínimo' }).waitFor();
    assert.equal(await alertText(page).textContent(), 'A senha deve ter no mínimo 8 caracteres');
    assert.equal(page.url(), `${server.base}/ui/register`);
    // The server enforces the same rule: the account does not exist.
    assert.equal(await apiSignIn(server.base, user.email, '123'), 401);
    const direct = await fetch(`${server.base}/api/auth/register`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: user.username, email: user.email, password: '123' }),
    });
    assert.equal(direct.status, 400);
    assert.equal((await direct.json()).code, 'weak_password');
    await ctx.close();
  });

  test('Teste 4 — senha forte "MinhaS3nha!Forte": verde, 4 barras, aceita', async () => {
    const user = newUser('strong');
    const ctx = await context();
    const page = await ctx.newPage();
    await page.goto(`${server.base}/ui/register`);
    await page.fill('#username', user.username);
    await page.fill('#email', user.email);
    await page.fill('#password', 'MinhaS3nha!Forte');
    await page.fill('#confirm_password', 'MinhaS3nha!Forte');
    assert.equal(await page.textContent('.meter-text'), '✅ Senha forte');
    assert.equal(await page.locator('.bars i.on').count(), 4);
    assert.equal(await page.getAttribute('[data-meter]', 'data-level'), 'strong');
    const green = await page.locator('.bars i.on').first().evaluate((el) => getComputedStyle(el).backgroundColor);
    assert.equal(green, 'rgb(31, 157, 85)');
    // The intermediate levels, as the seed lists them.
    for (const [pw, text, bars] of [['abcdefgh', '🟠 Senha média', 2], ['abcdefg1', '🟡 Senha boa', 3]]) {
      await page.fill('#password', pw);
      assert.equal(await page.textContent('.meter-text'), text);
      assert.equal(await page.locator('.bars i.on').count(), bars);
    }
    await page.fill('#password', 'MinhaS3nha!Forte');
    await page.getByRole('button', { name: 'Criar conta' }).click();
    await page.waitForURL('**/ui/login?notice=registered');
    assert.match(await page.textContent('[role="status"]'), /Conta criada/);
    assert.equal(await apiSignIn(server.base, user.email, 'MinhaS3nha!Forte'), 200);
    await ctx.close();
  });

  test('Teste 5 — recuperação: o email chega por SMTP e o link redefine a senha', async () => {
    const user = newUser('recover');
    await registerViaApi(server.base, user);
    const ctx = await context();
    const page = await ctx.newPage();
    await page.goto(`${server.base}/ui/login`);
    await page.getByRole('link', { name: 'Esqueci minha senha' }).click();
    await page.waitForURL('**/ui/forgot-password');
    await page.fill('#email', `  ${user.email}  `);
    await page.getByRole('button', { name: 'Enviar' }).click();
    await page.locator('[role="status"]').filter({ hasText: 'Se existir uma conta' }).waitFor();
    // Back to sign-in after 3 seconds.
    const started = Date.now();
    await page.waitForURL('**/ui/login', { timeout: 10000 });
    assert.ok(Date.now() - started >= 2000, 'waits about 3 s before going back');
    // Registration mailed a confirmation link first: wait for the recovery mail.
    const mail = await smtp.waitFor(user.email, 20000, (m) => m.text.includes('/ui/reset-password?token='));
    const link = (mail.text.match(/https?:\/\/\S+\/ui\/reset-password\?token=[A-Za-z0-9_-]+/) || [])[0];
    assert.ok(link, `a reset link in:\n${mail.text}`);
    assert.ok(link.startsWith(`${server.base}/ui/reset-password?token=`), link);
    await page.goto(link);
    await page.fill('#password', 'Nova-Senha-42!');
    await page.fill('#confirm_password', 'Nova-Senha-42!');
    await page.getByRole('button', { name: 'Salvar nova senha' }).click();
    await page.waitForURL('**/ui/login?notice=password_reset');
    await signIn(page, user.username, 'Nova-Senha-42!');
    await page.waitForURL('**/ui/account');
    assert.equal(await apiSignIn(server.base, user.email, user.password), 401);
    // The link works once.
    await page.goto(link);
    await page.fill('#password', 'Outra-Senha-43!');
    await page.fill('#confirm_password', 'Outra-Senha-43!');
    await page.getByRole('button', { name: 'Salvar nova senha' }).click();
    await alertText(page).filter({ hasText: 'inválido' }).waitFor();
    await ctx.close();
  });

  test('Teste 6 — mensagens genéricas: email inexistente = "Email ou senha incorretos"', async () => {
    const ctx = await context();
    const page = await ctx.newPage();
    await signIn(page, 'ninguem-aqui@example.com', 'Qualquer-Senha-1');
    await alertText(page).filter({ hasText: 'incorretos' }).waitFor();
    assert.equal(await alertText(page).textContent(), '❌ Email ou senha incorretos');
    // The recovery page answers an unknown address exactly as a known one.
    await page.goto(`${server.base}/ui/forgot-password`);
    await page.fill('#email', 'ninguem-aqui@example.com');
    await page.getByRole('button', { name: 'Enviar' }).click();
    await page.locator('[role="status"]').filter({ hasText: 'Se existir uma conta' }).waitFor();
    await ctx.close();
  });
});

describe('account journey', () => {
  test('register → sign in → account → change password → sign out', async () => {
    const user = newUser('journey');
    const ctx = await context('en-US');
    const page = await ctx.newPage();
    await page.goto(`${server.base}/ui/register`);
    await page.fill('#username', `  ${user.username} `);
    await page.fill('#email', user.email);
    await page.fill('#password', user.password);
    await page.fill('#confirm_password', user.password);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL('**/ui/login?notice=registered');
    await signIn(page, user.username, user.password);
    await page.waitForURL('**/ui/account');
    assert.match(await page.textContent('h1'), new RegExp(user.username));
    assert.equal(await page.locator('.session.current').count(), 1);
    const cookies = await ctx.cookies();
    const session = cookies.find((c) => c.name === '__Host-porteiro-session');
    assert.ok(session, 'a __Host- session cookie');
    assert.equal(session.httpOnly, true);
    assert.equal(session.secure, true);
    assert.equal(session.sameSite, 'Lax');
    assert.equal(session.path, '/');

    await page.fill('#current_password', user.password);
    await page.fill('#password', 'Brand-New-Pass-7');
    await page.fill('#confirm_password', 'Brand-New-Pass-7');
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.waitForURL('**/ui/account?notice=password_changed');
    assert.match(await page.textContent('[role="status"]'), /Password changed/);
    // The account's own security events, newest first.
    const events = await page.locator('.events li').allTextContents();
    assert.match(events[0], /Password changed/);
    assert.ok(events.some((e) => /Signed in/.test(e)), events.join(' | '));
    assert.equal(await apiSignIn(server.base, user.email, 'Brand-New-Pass-7'), 200);
    assert.equal(await apiSignIn(server.base, user.email, user.password), 401);

    await page.locator('main').getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL('**/ui/login?notice=signed_out');
    await page.goto(`${server.base}/ui/account`);
    await page.waitForURL('**/ui/login**');
    await ctx.close();
  });

  test('a wrong current password is refused with a friendly message', async () => {
    const user = newUser('wrongcur');
    await registerViaApi(server.base, user);
    const ctx = await context('en-US');
    const page = await ctx.newPage();
    await signIn(page, user.email, user.password);
    await page.waitForURL('**/ui/account');
    await page.fill('#current_password', 'Not-The-Password-1');
    await page.fill('#password', 'Brand-New-Pass-7');
    await page.fill('#confirm_password', 'Brand-New-Pass-7');
    await page.getByRole('button', { name: 'Change password' }).click();
    await alertText(page).filter({ hasText: 'current password' }).waitFor();
    assert.equal(await apiSignIn(server.base, user.email, user.password), 200);
    await ctx.close();
  });

  test('the UI session is an ordinary session: listed among devices and revocable', async () => {
    const user = newUser('devices');
    await registerViaApi(server.base, user);
    const first = await context('en-US');
    const second = await context('en-US', { userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1' });
    const a = await first.newPage();
    const b = await second.newPage();
    await signIn(a, user.email, user.password);
    await a.waitForURL('**/ui/account');
    await signIn(b, user.email, user.password);
    await b.waitForURL('**/ui/account');
    await a.reload();
    assert.equal(await a.locator('.session').count(), 2);
    await a.locator('.session:not(.current)').getByRole('button', { name: /Revoke/ }).click();
    await a.waitForURL('**/ui/account?notice=session_revoked');
    assert.equal(await a.locator('.session').count(), 1);
    await b.goto(`${server.base}/ui/account`);
    await b.waitForURL('**/ui/login?notice=session_ended');
    await first.close();
    await second.close();
  });

  test('buttons are disabled and busy while the request runs', async () => {
    const user = newUser('busy');
    await registerViaApi(server.base, user);
    const ctx = await context('en-US');
    const page = await ctx.newPage();
    let release;
    const held = new Promise((r) => { release = r; });
    await page.route('**/ui/login', async (route) => {
      if (route.request().method() === 'POST') await held;
      await route.continue();
    });
    await page.goto(`${server.base}/ui/login`);
    await page.fill('#identifier', user.email);
    await page.fill('#password', user.password);
    await page.click('button.primary');
    const button = page.locator('button.primary');
    await assert.doesNotReject(button.filter({ hasText: 'Please wait' }).waitFor());
    assert.equal(await button.isDisabled(), true);
    assert.equal(await button.getAttribute('aria-busy'), 'true');
    release();
    await page.waitForURL('**/ui/account');
    await ctx.close();
  });

  test('a stale form token heals: after "form expired" the retry goes through', async () => {
    const user = newUser('stale');
    await registerViaApi(server.base, user);
    const ctx = await context('en-US');
    const page = await ctx.newPage();
    await page.goto(`${server.base}/ui/login`);
    // Another tab, opened after the cookies were lost, replaces the CSRF cookie.
    await ctx.clearCookies();
    const other = await ctx.newPage();
    await other.goto(`${server.base}/ui/register`);
    await other.close();
    await page.fill('#identifier', user.email);
    await page.fill('#password', user.password);
    await page.click('button.primary');
    await alertText(page).filter({ hasText: 'This form has expired' }).waitFor();
    await page.click('button.primary');
    await page.waitForURL('**/ui/account');
    await ctx.close();
  });

  test('a network failure shows the connection error', async () => {
    const ctx = await context();
    const page = await ctx.newPage();
    await page.goto(`${server.base}/ui/login`);
    await page.route('**/ui/login', (route) => route.request().method() === 'POST' ? route.abort('internetdisconnected') : route.continue());
    await page.fill('#identifier', 'alguem@example.com');
    await page.fill('#password', 'Qualquer-Senha-1');
    await page.click('button.primary');
    await alertText(page).filter({ hasText: 'Erro de conexão' }).waitFor();
    assert.equal(await page.locator('button.primary').isDisabled(), false);
    await ctx.close();
  });
});

describe('address confirmation', () => {
  /** The confirmation links mailed to `to`, once `n` have arrived (oldest first). */
  async function confirmationLinks(to, n) {
    const deadline = Date.now() + 20000;
    for (;;) {
      const links = smtp.inbox
        .filter((m) => m.to && m.to.text.includes(to))
        .map((m) => (m.text.match(/https?:\/\/\S+\/ui\/verify-email\?token=[A-Za-z0-9_-]+/) || [])[0])
        .filter(Boolean);
      if (links.length >= n) return links;
      if (Date.now() > deadline) throw new Error(`${links.length} of ${n} confirmation links to ${to}`);
      await new Promise((ok) => setTimeout(ok, 100));
    }
  }

  test('an unconfirmed account is offered a new link, and the mailed link confirms on a click', async () => {
    const strict = await startServer(smtp, { REQUIRE_VERIFIED_EMAIL: 'true' });
    try {
      const user = newUser('confirm');
      await registerViaApi(strict.base, user);
      const ctx = await context();
      const page = await ctx.newPage();
      await page.goto(`${strict.base}/ui/login`);
      const offer = page.getByRole('link', { name: 'Enviar um novo link de confirmação' });
      assert.equal(await offer.isVisible(), false, 'no offer before a refusal');
      await page.fill('#identifier', user.email);
      await page.fill('#password', user.password);
      await page.click('button[type="submit"].primary');
      await alertText(page).filter({ hasText: 'Confirme seu endereço de email antes de entrar' }).waitFor();
      await offer.click();
      await page.waitForURL('**/ui/verify-email');
      await page.fill('#email', user.email);
      await page.getByRole('button', { name: 'Enviar novo link' }).click();
      await page.waitForURL('**/ui/verify-email?notice=confirmation_sent');
      await page.locator('[role="status"]').filter({ hasText: 'um novo link está a caminho' }).waitFor();
      // Registration's link and the new one; opening a link confirms nothing by itself.
      const [first, newest] = await confirmationLinks(user.email, 2);
      assert.ok(newest.startsWith(`${strict.base}/ui/verify-email?token=`), newest);
      await page.goto(newest);
      assert.equal(await apiSignIn(strict.base, user.email, user.password), 403);
      await page.getByRole('button', { name: 'Confirmar meu endereço' }).click();
      await page.waitForURL('**/ui/login?notice=email_confirmed');
      await page.locator('[role="status"]').filter({ hasText: 'Endereço de email confirmado' }).waitFor();
      assert.equal(await apiSignIn(strict.base, user.email, user.password), 200);
      // The newer link voided the older one.
      await page.goto(first);
      await page.getByRole('button', { name: 'Confirmar meu endereço' }).click();
      await alertText(page).filter({ hasText: 'link de confirmação é inválido' }).waitFor();
      await ctx.close();
    } finally {
      await strict.stop();
    }
  });
});

describe('without JavaScript, by keyboard, in both languages', () => {
  test('sign-in works without JavaScript, errors included', async () => {
    const user = newUser('nojs');
    await registerViaApi(server.base, user);
    const ctx = await context('en-US', { javaScriptEnabled: false });
    const page = await ctx.newPage();
    await signIn(page, user.email, 'Wrong-password-1');
    await page.locator('[role="alert"]').filter({ hasText: 'Email or password incorrect' }).waitFor();
    assert.equal(await page.inputValue('#identifier'), user.email, 'the identifier is kept');
    await page.fill('#password', user.password);
    await page.click('button.primary');
    await page.waitForURL('**/ui/account');
    await ctx.close();
  });

  test('the whole sign-in form works from the keyboard', async () => {
    const user = newUser('keys');
    await registerViaApi(server.base, user);
    const ctx = await context('en-US');
    const page = await ctx.newPage();
    await page.goto(`${server.base}/ui/login`);
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');
    await page.focus('#identifier');
    await page.keyboard.type(user.email);
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'password');
    await page.keyboard.type(user.password);
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent.trim()), 'Sign in');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.equal(outline, 'solid', 'focus is visible');
    await page.keyboard.press('Enter');
    await page.waitForURL('**/ui/account');
    await ctx.close();
  });

  test('Accept-Language picks the language and the switch remembers the choice', async () => {
    const ctx = await context('en-US');
    const page = await ctx.newPage();
    await page.goto(`${server.base}/ui/login`);
    assert.equal(await page.getAttribute('html', 'lang'), 'en');
    assert.equal(await page.textContent('h1'), 'Welcome back');
    await page.getByRole('link', { name: 'PT' }).click();
    await page.waitForURL('**/ui/login');
    assert.equal(await page.getAttribute('html', 'lang'), 'pt-BR');
    assert.equal(await page.textContent('h1'), 'Bem-vindo de volta');
    await page.goto(`${server.base}/ui/register`);
    assert.equal(await page.textContent('h1'), 'Criar nova conta');
    await ctx.close();
    const pt = await context('pt-BR');
    const p2 = await pt.newPage();
    await p2.goto(`${server.base}/ui/forgot-password`);
    assert.equal(await p2.textContent('h1'), 'Recuperar sua senha');
    await pt.close();
  });
});

describe('admin', () => {
  test('lists users and unlocks a locked account', async () => {
    const user = newUser('locked');
    await registerViaApi(server.base, user);
    for (let i = 0; i < 5; i += 1) await apiSignIn(server.base, user.email, `Wrong-${i}-pass`);
    assert.equal(await apiSignIn(server.base, user.email, user.password), 401);
    const ctx = await context('en-US');
    const page = await ctx.newPage();
    await signIn(page, ADMIN.username, ADMIN.password);
    await page.waitForURL('**/ui/account');
    await page.getByRole('link', { name: 'Users' }).click();
    await page.waitForURL('**/ui/admin');
    const row = page.locator('tr', { hasText: user.username });
    await row.locator('.status.warn').waitFor();
    await row.getByRole('button', { name: 'Unlock' }).click();
    await page.waitForURL('**/ui/admin?page=1&notice=unlocked');
    assert.equal(await page.locator('tr', { hasText: user.username }).locator('.status.warn').count(), 0);
    assert.equal(await apiSignIn(server.base, user.email, user.password), 200);
    await page.locator('tr', { hasText: user.username }).getByRole('button', { name: 'Disable' }).click();
    await page.waitForURL('**/ui/admin?page=1&notice=disabled');
    assert.equal(await apiSignIn(server.base, user.email, user.password), 403);
    await ctx.close();
  });

  test('webhooks: add an endpoint, see its secret once, send a test event, see it delivered', async () => {
    const ctx = await context('en-US');
    const page = await ctx.newPage();
    await signIn(page, ADMIN.username, ADMIN.password);
    await page.waitForURL('**/ui/account');
    await page.getByRole('link', { name: 'Webhooks' }).click();
    await page.waitForURL('**/ui/admin/webhooks');
    await page.getByLabel('URL', { exact: true }).fill(receiver.url);
    await page.getByLabel('Description').fill('Browser test');
    await page.getByLabel('Only these events:').check();
    await page.getByLabel(/Account created/).check();
    await page.getByLabel(/Failed sign-in attempt/).check();
    await page.getByRole('button', { name: 'Add endpoint' }).click();
    await page.getByRole('heading', { level: 1, name: 'Endpoint added' }).waitFor();
    const secret = await page.inputValue('#secret');
    assert.match(secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
    assert.match(await page.textContent('[role="alert"]'), /Copy this secret now: it will not be shown again/);
    assert.ok(!page.url().includes('whsec_'), 'the secret is never in the address');

    // Loading the address again shows no secret (it was the answer to the form, nothing else).
    await page.goto(page.url());
    await page.getByRole('heading', { level: 1, name: 'Webhooks' }).waitFor();
    assert.equal(await page.locator('#secret').count(), 0);
    assert.ok(!(await page.content()).includes(secret));
    const row = page.locator('tr', { hasText: receiver.url });
    assert.match(await row.textContent(), /Failed sign-in attempt, Account created/);
    assert.match(await row.textContent(), /Enabled/);
    await row.getByRole('link', { name: receiver.url }).click();
    await page.waitForURL('**/ui/admin/webhooks/*');
    assert.equal(await page.locator('#secret').count(), 0);
    assert.ok(!(await page.content()).includes(secret));

    await page.getByRole('button', { name: 'Send a test event' }).click();
    await page.waitForURL('**/ui/admin/webhooks/*?notice=webhook_test_sent');
    assert.match(await page.textContent('[role="status"]'), /Test event queued/);
    const delivery = await receiver.waitFor((r) => JSON.parse(r.body).type === 'webhook.tested');
    assert.ok(signedBy(secret, delivery.headers, delivery.body), 'signed with the secret shown once');
    // The worker records the attempt right after the receiver answers.
    const logged = page.locator('table.deliveries tbody tr', { hasText: 'Test event' });
    const deadline = Date.now() + 20000;
    while (!/Delivered/.test(await logged.textContent())) {
      assert.ok(Date.now() < deadline, 'the delivery log shows the delivery within 20 s');
      await page.reload();
    }
    const cells = await logged.locator('td').allTextContents();
    assert.match(cells[0], /webhook\.tested/);
    assert.equal(cells[2].trim(), '1', 'one attempt');
    assert.equal(cells[3].trim(), '204');
    assert.match(cells[4], /\d+ ms/);
    await ctx.close();
  });

  test('webhooks without JavaScript, in Portuguese: a URL error, then add and delete with confirmation', async () => {
    const ctx = await context('pt-BR', { javaScriptEnabled: false });
    const page = await ctx.newPage();
    await signIn(page, ADMIN.username, ADMIN.password);
    await page.waitForURL('**/ui/account');
    await page.getByRole('link', { name: 'Webhooks' }).click();
    await page.waitForURL('**/ui/admin/webhooks');
    await page.getByLabel('URL', { exact: true }).fill('ftp://nao-serve.example.com/');
    await page.getByRole('button', { name: 'Adicionar endpoint' }).click();
    await page.locator('[role="alert"]').filter({ hasText: 'Informe uma URL http ou https válida' }).waitFor();
    assert.equal(await page.inputValue('#url'), 'ftp://nao-serve.example.com/', 'the form keeps what was typed');
    await page.getByLabel('URL', { exact: true }).fill(`${receiver.url}?para=excluir`);
    await page.getByRole('button', { name: 'Adicionar endpoint' }).click();
    await page.getByRole('heading', { level: 1, name: 'Endpoint adicionado' }).waitFor();
    assert.match(await page.inputValue('#secret'), /^whsec_/);
    await page.getByRole('link', { name: /ir para o endpoint/ }).click();
    await page.waitForURL('**/ui/admin/webhooks/*');
    const endpoint = page.url();
    assert.equal(await page.getAttribute('input[name="confirm"]', 'required'), '', 'the box must be ticked');
    await page.getByLabel('Sim, excluir este endpoint').check();
    await page.getByRole('button', { name: 'Excluir', exact: true }).click();
    await page.waitForURL('**/ui/admin/webhooks?notice=webhook_deleted');
    assert.match(await page.textContent('[role="status"]'), /Endpoint excluído/);
    const gone = await page.goto(endpoint);
    assert.equal(gone.status(), 404);
    await ctx.close();
  });

  test('a non-administrator gets a 403 page', async () => {
    const user = newUser('plain');
    await registerViaApi(server.base, user);
    const ctx = await context('en-US');
    const page = await ctx.newPage();
    await signIn(page, user.email, user.password);
    await page.waitForURL('**/ui/account');
    assert.equal(await page.getByRole('link', { name: 'Webhooks' }).count(), 0);
    for (const path of ['/ui/admin', '/ui/admin/webhooks']) {
      const response = await page.goto(`${server.base}${path}`);
      assert.equal(response.status(), 403, path);
      assert.match(await page.textContent('[role="alert"]'), /not allowed/);
    }
    await ctx.close();
  });
});

describe('screenshots and layout', () => {
  test('every page, both languages, desktop and mobile: labelled inputs, no overflow', async () => {
    mkdirSync(SHOTS, { recursive: true });
    const owner = newUser('maria');
    await registerViaApi(server.base, { ...owner, first_name: 'Maria' });
    const token = 'A'.repeat(32);
    for (const lang of ['en', 'pt-BR']) {
      for (const [label, width, height] of [['desktop', 1280, 800], ['mobile', 360, 740]]) {
        const ctx = await context(lang, { viewport: { width, height }, deviceScaleFactor: 1 });
        const page = await ctx.newPage();
        const shoot = async (name) => {
          const labelled = await page.evaluate(() => Array.from(document.querySelectorAll('input'))
            .filter((i) => i.type !== 'hidden' && !i.hidden)
            .every((i) => i.labels && i.labels.length > 0));
          assert.ok(labelled, `${name}: every visible input has a label`);
          const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
          assert.ok(overflow <= 0, `${name} at ${width}px overflows by ${overflow}px`);
          await page.screenshot({ path: join(SHOTS, `${name}-${lang}-${label}.png`), fullPage: true });
        };
        await page.goto(`${server.base}/ui/login`);
        await shoot('login');
        await page.goto(`${server.base}/ui/register`);
        await page.fill('#password', 'MinhaS3nha!Forte');
        await shoot('register');
        await page.goto(`${server.base}/ui/forgot-password`);
        await shoot('forgot-password');
        await page.goto(`${server.base}/ui/reset-password?token=${token}`);
        await shoot('reset-password');
        await signIn(page, owner.email, owner.password);
        await page.waitForURL('**/ui/account');
        await shoot('account');
        await page.locator('main').getByRole('button', { name: /Sign out|Sair/ }).click();
        await page.waitForURL('**/ui/login**');
        await signIn(page, ADMIN.username, ADMIN.password);
        await page.waitForURL('**/ui/account');
        await page.goto(`${server.base}/ui/admin`);
        await shoot('admin');
        await page.goto(`${server.base}/ui/admin/webhooks`);
        await shoot('webhooks');
        await page.locator('main table a').first().click();
        await page.waitForURL('**/ui/admin/webhooks/*');
        await shoot('webhook-endpoint');
        await ctx.close();
      }
    }
  });
});
