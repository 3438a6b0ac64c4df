// Two-factor sign-in in a real browser: turning an authenticator app on from the account page
// (QR code, key and backup codes shown once), signing in with the app's code and with a backup
// code on /ui/mfa, new backup codes, turning it off, the whole thing without JavaScript, the
// emailed code with its resend limit, and screenshots of the new pages for docs/screenshots/.
//
// The app's codes are computed here from the key the page shows (RFC 6238: HMAC-SHA-1 over the
// 30-second step, dynamic truncation, 6 digits) with Node's own crypto, not with Porteiro's code.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newUser, registerViaApi, startServer, startSmtp } from './harness.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const SHOTS = resolve(HERE, '..', '..', 'docs', 'screenshots');
const MFA_COOKIE = '__Host-porteiro-mfa';
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

/** RFC 4648 base32 (the key as apps take it; spaces and padding ignored). */
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of text.replace(/[\s=]/g, '').toUpperCase()) {
    const index = alphabet.indexOf(ch);
    if (index < 0) throw new Error(`not base32: ${ch}`);
    value = ((value << 5) | index) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The RFC 6238 code of `key` (base32) for the 30-second `step`. */
function totp(key, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', base32(key)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, '0');
}

const currentStep = () => Math.floor(Date.now() / 30000);

// RFC 6238 appendix B, SHA-1: the helper above is right before anything relies on it.
assert.equal(totp('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', Math.floor(59 / 30)), '287082');
assert.equal(totp('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', Math.floor(1111111109 / 30)), '081804');

async function context(locale = 'en-US', options = {}) {
  return browser.newContext({ locale, extraHTTPHeaders: { 'Accept-Language': locale }, ...options });
}

async function signIn(page, login, password) {
  await page.goto(`${server.base}/ui/login`);
  await page.fill('#identifier', login);
  await page.fill('#password', password);
  await page.click('button[type="submit"].primary');
}

async function signOut(page) {
  await page.locator('header').getByRole('button').first().click();
  await page.waitForURL('**/ui/login?notice=signed_out');
}

const alertText = (page) => page.locator('[role="alert"]:visible').first();

/**
 * From the account page: starts the setup, checks what it shows, and turns the app on with the
 * code of the current step. Returns the key, the backup codes and the step used.
 */
async function turnOnApp(page, { label = /Set up an authenticator app|Configurar um aplicativo/ } = {}) {
  await page.getByRole('button', { name: label }).click();
  await page.locator('#totp-secret').waitFor();
  const key = (await page.textContent('#totp-secret')).trim();
  assert.match(key, /^([A-Z2-7]{4} )*[A-Z2-7]{1,4}$/, 'the key in groups of four');
  assert.ok(base32(key).length >= 20, 'at least 160 bits');
  const codes = await page.locator('.backup-codes code').allTextContents();
  assert.equal(codes.length, 10);
  codes.forEach((c) => assert.match(c, /^[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}$/));
  // The QR code is an inline PNG that the page's CSP lets through (it loads), and the link
  // for apps on this device carries the same key.
  const qr = page.locator('img.qr');
  assert.match(await qr.getAttribute('src'), /^data:image\/png;base64,/);
  assert.ok(await qr.evaluate((img) => img.complete && img.naturalWidth > 0), 'the QR code loads');
  const uri = await page.locator('a[href^="otpauth://totp/"]').getAttribute('href');
  assert.equal(new URL(uri).searchParams.get('secret'), key.replace(/ /g, ''));
  assert.equal(new URL(uri).searchParams.get('issuer'), 'Porteiro');
  // Neither the key nor the codes are in the address or a cookie.
  const bare = key.replace(/ /g, '');
  assert.ok(!page.url().includes(bare) && page.url().endsWith('/ui/account/2fa/setup'), page.url());
  const cookies = JSON.stringify(await page.context().cookies());
  assert.ok(!cookies.includes(bare) && !cookies.includes(codes[0]), 'no secret in cookies');
  const step = currentStep();
  await page.fill('#code', totp(key, step));
  await page.locator('main button.primary').click();
  await page.waitForURL('**/ui/account?notice=two_factor_enabled');
  return { key, codes, step };
}

/** Password, then the second step's page. */
async function firstStep(page, user) {
  await signIn(page, user.email, user.password);
  await page.waitForURL('**/ui/mfa');
  const cookie = (await page.context().cookies()).find((c) => c.name === MFA_COOKIE);
  assert.ok(cookie, 'the pending sign-in waits in a cookie');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.secure, true);
  assert.ok(!page.url().includes(cookie.value), 'never in the address');
}

async function mfaCookie(ctx) {
  return (await ctx.cookies()).find((c) => c.name === MFA_COOKIE);
}

describe('two-factor authentication with an authenticator app', () => {
  test('turn on from the account page, sign in with the app, with a backup code, new codes, turn off', async () => {
    const user = newUser('totp');
    await registerViaApi(server.base, user);
    const ctx = await context('en-US');
    const page = await ctx.newPage();
    await signIn(page, user.email, user.password);
    await page.waitForURL('**/ui/account');
    const section = page.locator('section', { has: page.getByRole('heading', { name: 'Two-factor authentication' }) });
    assert.match(await section.textContent(), /Off/);

    // Setup: a wrong first code is refused in place (the QR code stays on the page).
    await page.getByRole('button', { name: 'Set up an authenticator app' }).click();
    await page.locator('#totp-secret').waitFor();
    const firstKey = (await page.textContent('#totp-secret')).trim();
    await page.fill('#code', totp(firstKey, currentStep() + 5));
    await page.locator('main button.primary').click();
    const enableForm = page.locator('form[action="/ui/account/2fa/enable"]');
    await enableForm.locator('[role="alert"]').filter({ hasText: 'Incorrect code' }).waitFor();
    assert.equal(await page.locator('img.qr').count(), 1);
    // Setting up again starts over: the earlier key is void.
    await page.goto(`${server.base}/ui/account`);
    const { key, codes, step } = await turnOnApp(page);
    assert.notEqual(key, firstKey);
    assert.match(await page.textContent('[role="status"]'), /Two-factor authentication is on/);
    assert.match(await section.textContent(), /On/);
    assert.match(await section.textContent(), /10 backup codes left/);
    // The password alone no longer opens a session through the API either.
    const api = await fetch(`${server.base}/api/auth/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username_or_email: user.email, password: user.password }),
    });
    const answer = await api.json();
    assert.equal(answer.data.access_token, null);
    assert.deepEqual(answer.data.methods, ['totp', 'backup_code']);
    await signOut(page);

    // Password, then the app: a wrong code gets the generic message, the right one signs in.
    await firstStep(page, user);
    assert.equal(await page.textContent('h1'), 'Confirm it\'s you');
    assert.equal(await page.getAttribute('#code', 'autocomplete'), 'one-time-code');
    assert.equal(await page.getAttribute('#code', 'inputmode'), 'numeric');
    assert.equal(await page.locator('form[action="/ui/mfa/resend"]').count(), 0, 'no email offered');
    await page.fill('#code', totp(key, step + 7));
    await page.click('button.primary');
    await alertText(page).filter({ hasText: 'Incorrect code' }).waitFor();
    assert.equal(page.url(), `${server.base}/ui/mfa`);
    // The code the setup used is spent; the next step's is not (±1 step is accepted).
    await page.fill('#code', totp(key, step));
    await page.click('button.primary');
    await alertText(page).filter({ hasText: 'Incorrect code' }).waitFor();
    await page.fill('#code', totp(key, step + 1));
    await page.click('button.primary');
    await page.waitForURL('**/ui/account');
    assert.equal(await mfaCookie(ctx), undefined, 'the pending sign-in is forgotten');
    assert.equal(await page.locator('.session.current').count(), 1);
    const events = await page.locator('.events li').allTextContents();
    assert.ok(events.some((e) => /Signed in/.test(e)), events.join(' | '));
    await signOut(page);

    // Password, then a backup code (typed in capitals, without dashes: still the code).
    await firstStep(page, user);
    await page.getByRole('link', { name: 'Use a backup code' }).click();
    await page.waitForURL('**/ui/mfa?method=backup_code');
    assert.equal(await page.locator('#code').count(), 0);
    await page.fill('#backup_code', codes[0].replace(/-/g, '').toUpperCase());
    await page.click('button.primary');
    await page.waitForURL('**/ui/account');
    assert.match(await section.textContent(), /9 backup codes left/);
    await signOut(page);

    // A backup code works once.
    await firstStep(page, user);
    await page.goto(`${server.base}/ui/mfa?method=backup_code`);
    await page.fill('#backup_code', codes[0]);
    await page.click('button.primary');
    await alertText(page).filter({ hasText: 'Incorrect code' }).waitFor();
    await page.fill('#backup_code', 'not a code');
    await page.click('button.primary');
    await alertText(page).filter({ hasText: 'Enter one of your backup codes' }).waitFor();
    await page.fill('#backup_code', codes[1]);
    await page.click('button.primary');
    await page.waitForURL('**/ui/account');

    // New backup codes (password and a backup code), shown once; the old set stops working.
    const codesForm = page.locator('form[action="/ui/account/2fa/backup-codes"]');
    await codesForm.getByLabel('Current password').fill(user.password);
    await codesForm.getByLabel('Code from the app, or a backup code').fill(codes[2]);
    await codesForm.getByRole('button', { name: 'Get new backup codes' }).click();
    await page.getByRole('heading', { level: 1, name: 'New backup codes' }).waitFor();
    const fresh = await page.locator('.backup-codes code').allTextContents();
    assert.equal(fresh.length, 10);
    assert.ok(fresh.every((c) => !codes.includes(c)));
    assert.equal(await page.getByRole('button', { name: 'Print the codes' }).isVisible(), true);
    await page.getByRole('link', { name: /back to my account/ }).click();
    await page.waitForURL('**/ui/account');
    assert.match(await section.textContent(), /10 backup codes left/);

    // Turning it off needs the password and a code: a wrong password is refused first.
    const offForm = page.locator('form[action="/ui/account/2fa/disable"]');
    await offForm.getByLabel('Current password').fill('Not-The-Password-1');
    await offForm.getByLabel('Code from the app, or a backup code').fill(codes[3]);
    await offForm.getByRole('button', { name: 'Turn off two-factor authentication' }).click();
    await offForm.locator('[role="alert"]').filter({ hasText: 'current password is incorrect' }).waitFor();
    await offForm.getByLabel('Current password').fill(user.password);
    // A code of the old set no longer works.
    await offForm.getByLabel('Code from the app, or a backup code').fill(codes[3]);
    await offForm.getByRole('button', { name: 'Turn off two-factor authentication' }).click();
    await offForm.locator('[role="alert"]').filter({ hasText: 'Incorrect code' }).waitFor();
    await offForm.getByLabel('Current password').fill(user.password);
    await offForm.getByLabel('Code from the app, or a backup code').fill(fresh[0]);
    await offForm.getByRole('button', { name: 'Turn off two-factor authentication' }).click();
    await page.waitForURL('**/ui/account?notice=two_factor_disabled');
    assert.match(await section.textContent(), /Off/);
    await signOut(page);
    await signIn(page, user.email, user.password);
    await page.waitForURL('**/ui/account');
    await ctx.close();
  });

  test('a second step that is gone sends the browser back to sign in', async () => {
    const user = newUser('gone');
    await registerViaApi(server.base, user);
    const ctx = await context('en-US');
    const page = await ctx.newPage();
    await signIn(page, user.email, user.password);
    await page.waitForURL('**/ui/account');
    const { key, step } = await turnOnApp(page);
    await signOut(page);
    await firstStep(page, user);
    // A token this server never issued (or one that expired): start again.
    const cookie = await mfaCookie(ctx);
    await ctx.addCookies([{ ...cookie, value: 'A'.repeat(43) }]);
    await page.fill('#code', totp(key, step + 1));
    await page.click('button.primary');
    await page.waitForURL('**/ui/login?notice=mfa_expired');
    assert.match(await page.textContent('[role="status"]'), /Sign in again/);
    assert.equal(await mfaCookie(ctx), undefined);
    // Without the cookie at all, the page is sign-in.
    await page.goto(`${server.base}/ui/mfa`);
    await page.waitForURL('**/ui/login');
    // Five wrong codes end the second step, like the API's.
    await firstStep(page, user);
    for (let i = 0; i < 4; i += 1) {
      await page.fill('#code', totp(key, step + 10 + i));
      await page.click('button.primary');
      await alertText(page).filter({ hasText: 'Incorrect code' }).waitFor();
      await page.locator('button.primary:not([disabled])').waitFor();
    }
    await page.fill('#code', totp(key, step + 20));
    await page.click('button.primary');
    await page.waitForURL('**/ui/login?notice=mfa_expired');
    await ctx.close();
  });
});

describe('without JavaScript', () => {
  test('turn on the app and sign in with a code and a backup code, in Portuguese', async () => {
    const user = newUser('nojs2fa');
    await registerViaApi(server.base, user);
    const ctx = await context('pt-BR', { javaScriptEnabled: false });
    const page = await ctx.newPage();
    await signIn(page, user.email, user.password);
    await page.waitForURL('**/ui/account');
    await page.getByRole('button', { name: 'Configurar um aplicativo autenticador' }).click();
    await page.locator('#totp-secret').waitFor();
    const key = (await page.textContent('#totp-secret')).trim();
    const codes = await page.locator('.backup-codes code').allTextContents();
    assert.equal(codes.length, 10, 'the codes are readable without JavaScript');
    assert.equal(await page.getByRole('button', { name: 'Imprimir os códigos' }).isVisible(), false,
      'the print button needs JavaScript');
    assert.ok(await page.locator('img.qr').evaluate((img) => img.naturalWidth > 0), 'the QR code loads');
    // A wrong first code: the form again, with a way to start over (the key is not shown again).
    await page.fill('#code', totp(key, currentStep() + 5));
    await page.getByRole('button', { name: 'Ativar' }).click();
    await page.locator('[role="alert"]').filter({ hasText: 'Código incorreto' }).waitFor();
    assert.equal(await page.locator('#totp-secret').count(), 0);
    assert.equal(await page.getByRole('button', { name: 'Começar de novo' }).count(), 1);
    const step = currentStep();
    await page.fill('#code', totp(key, step));
    await page.getByRole('button', { name: 'Ativar' }).click();
    await page.waitForURL('**/ui/account?notice=two_factor_enabled');
    assert.match(await page.textContent('[role="status"]'), /Autenticação em duas etapas ativada/);
    await signOut(page);

    await firstStep(page, user);
    assert.equal(await page.textContent('h1'), 'Confirme que é você');
    await page.fill('#code', '12345');
    await page.getByRole('button', { name: 'Verificar' }).click();
    await page.locator('[role="alert"]').filter({ hasText: 'Digite o código de 6 dígitos' }).waitFor();
    await page.fill('#code', totp(key, step + 1));
    await page.getByRole('button', { name: 'Verificar' }).click();
    await page.waitForURL('**/ui/account');
    await signOut(page);

    await firstStep(page, user);
    await page.getByRole('link', { name: 'Usar um código de backup' }).click();
    await page.waitForURL('**/ui/mfa?method=backup_code');
    await page.fill('#backup_code', codes[0]);
    await page.getByRole('button', { name: 'Verificar' }).click();
    await page.waitForURL('**/ui/account');
    assert.match(await page.textContent('main'), /9 códigos de backup restantes/);
    await ctx.close();
  });
});

describe('a code by email after the password', () => {
  let mailServer;
  before(async () => {
    mailServer = await startServer(smtp, { EMAIL_VERIFICATION_ENABLED: 'always' });
  });
  after(async () => {
    await mailServer?.stop();
  });

  /** The sign-in codes mailed to `to`, oldest first, waiting until there are `n`. */
  async function signInCodes(to, n) {
    const deadline = Date.now() + 20000;
    for (;;) {
      const codes = smtp.inbox
        .filter((m) => m.to && m.to.text.includes(to) && /sign-in code|código de acesso/i.test(m.subject))
        .map((m) => (m.text.match(/\b(\d{6})\b/) || [])[1]);
      if (codes.length >= n) return codes;
      assert.ok(Date.now() < deadline, `${n} sign-in code(s) to ${to} within 20 s`);
      await sleep(200);
    }
  }

  test('the page says a code was mailed; a resend is limited; the code signs in', async () => {
    const user = newUser('mailed');
    await registerViaApi(mailServer.base, user);
    const ctx = await context('en-US');
    const page = await ctx.newPage();
    await page.goto(`${mailServer.base}/ui/login`);
    await page.fill('#identifier', user.email);
    await page.fill('#password', user.password);
    await page.click('button.primary');
    await page.waitForURL('**/ui/mfa');
    assert.match(await page.textContent('.lead'), /We sent a 6-digit code to your email/);
    assert.equal(await page.getByRole('link', { name: 'Use a backup code' }).count(), 0);
    const [code] = await signInCodes(user.email, 1);
    assert.match(code, /^\d{6}$/);
    // The first code was mailed a moment ago: a new one must wait (about a minute).
    await page.getByRole('button', { name: 'Send a new code' }).click();
    const limited = page.locator('form[action="/ui/mfa/resend"] [role="alert"]');
    await limited.filter({ hasText: /Try again in \d+ seconds/ }).waitFor();
    const wrong = code === '000000' ? '111111' : '000000';
    await page.fill('#code', wrong);
    await page.click('button.primary');
    await alertText(page).filter({ hasText: 'Incorrect code' }).waitFor();
    await page.fill('#code', code);
    await page.click('button.primary');
    await page.waitForURL('**/ui/account');
    await ctx.close();
  });
});

describe('screenshots of the two-factor pages', () => {
  test('setup and second step, both languages, desktop and mobile: labelled inputs, no overflow', async () => {
    mkdirSync(SHOTS, { recursive: true });
    for (const lang of ['en', 'pt-BR']) {
      for (const [label, width, height] of [['desktop', 1280, 800], ['mobile', 360, 740]]) {
        const user = newUser('shot');
        await registerViaApi(server.base, user);
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
        await signIn(page, user.email, user.password);
        await page.waitForURL('**/ui/account');
        await page.getByRole('button', { name: /Set up an authenticator app|Configurar um aplicativo/ }).click();
        await page.locator('#totp-secret').waitFor();
        await shoot('two-factor-setup');
        const key = (await page.textContent('#totp-secret')).trim();
        const step = currentStep();
        await page.fill('#code', totp(key, step));
        await page.locator('main button.primary').click();
        await page.waitForURL('**/ui/account?notice=two_factor_enabled');
        await shoot('account-two-factor');
        await signOut(page);
        await firstStep(page, user);
        await shoot('mfa');
        await page.goto(`${server.base}/ui/mfa?method=backup_code`);
        await shoot('mfa-backup-code');
        await ctx.close();
      }
    }
  });
});
