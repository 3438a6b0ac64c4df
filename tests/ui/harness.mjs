// Test harness for the hosted UI: a real Porteiro server (the debug binary) on a fresh SQLite
// file, a real SMTP server that keeps what it receives, and Debian's Chromium driven by
// playwright-core. Nothing is mocked.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';

// import.meta.dirname needs node 20.11; Debian 12 ships node 18.
const HERE = dirname(fileURLToPath(import.meta.url));

export const ADMIN = { username: 'admin', email: 'admin@example.com', password: 'Admin-Passw0rd!' };
const ROOT = resolve(HERE, '..', '..');

export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/** An SMTP server on loopback that parses every message it accepts. */
export async function startSmtp() {
  const inbox = [];
  const waiters = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, _session, done) {
      simpleParser(stream)
        .then((mail) => {
          inbox.push(mail);
          waiters.splice(0).forEach((w) => w());
          done();
        })
        .catch(done);
    },
  });
  const port = await freePort();
  await new Promise((ok) => server.listen(port, '127.0.0.1', ok));
  return {
    port,
    inbox,
    /** The first message to `to` that passes `match` (any, by default), waiting up to `ms`. */
    async waitFor(to, ms = 20000, match = () => true) {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = inbox.find((m) => m.to && m.to.text.includes(to) && match(m));
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no mail to ${to} within ${ms} ms`);
        await Promise.race([new Promise((w) => waiters.push(w)), sleep(250)]);
      }
    },
    close: () => new Promise((ok) => server.close(ok)),
  };
}

/** A webhook receiver on loopback: answers every POST 204 and keeps what it received. */
export async function startReceiver() {
  const received = [];
  const waiters = [];
  const server = createHttpServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      waiters.splice(0).forEach((w) => w());
      res.writeHead(204).end();
    });
  });
  const port = await freePort();
  await new Promise((ok) => server.listen(port, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    /** The first delivery whose body passes `match`, waiting up to `ms`. */
    async waitFor(match, ms = 20000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = received.find((r) => match(r));
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no webhook delivery within ${ms} ms`);
        await Promise.race([new Promise((w) => waiters.push(w)), sleep(250)]);
      }
    },
    close: () => new Promise((ok) => server.close(ok)),
  };
}

/** Porteiro on a fresh SQLite database, mail through `smtp`. */
export async function startServer(smtp, extraEnv = {}) {
  const bin = process.env.PORTEIRO_BIN || join(ROOT, 'target', 'debug', 'porteiro');
  const dir = mkdtempSync(join(tmpdir(), 'porteiro-ui-'));
  const port = await freePort();
  // localhost, not 127.0.0.1: a browser treats it as a secure context, so the __Host- cookies
  // work over plain HTTP exactly as they will behind TLS.
  const base = `http://localhost:${port}`;
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME || dir,
    SERVER_HOST: '127.0.0.1',
    SERVER_PORT: String(port),
    PUBLIC_URL: base,
    DATABASE_URL: join(dir, 'porteiro.db'),
    DATA_DIR: dir,
    EMAIL_SMTP_SERVER: '127.0.0.1',
    EMAIL_SMTP_PORT: String(smtp.port),
    EMAIL_SMTP_TLS: 'none',
    EMAIL_FROM: 'noreply@example.com',
    EMAIL_POLL_INTERVAL: '1',
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_USERNAME: ADMIN.username,
    ADMIN_PASSWORD: ADMIN.password,
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_ITERATIONS: '1',
    // Every browser here is one client address; the limits have their own Rust tests.
    RATE_LIMIT_CAPACITY: '100000',
    RATE_LIMIT_REFILL_RATE: '100000',
    LOG_LEVEL: 'warn',
    ...extraEnv,
  };
  const child = spawn(bin, ['serve'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const deadline = Date.now() + 30000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`porteiro exited early:\n${log}`);
    try {
      const r = await fetch(`${base}/api/health`);
      if (r.ok) break;
    } catch (_) {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`porteiro not healthy within 30 s:\n${log}`);
    await sleep(200);
  }
  return {
    base,
    log: () => log,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((ok) => (child.exitCode !== null ? ok() : child.once('exit', ok)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Creates an account through the JSON API (fast set-up for tests about something else). */
export async function registerViaApi(base, user) {
  const r = await fetch(`${base}/api/auth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ...user, confirm_password: user.password }),
  });
  if (!r.ok) throw new Error(`register ${user.username}: ${r.status} ${await r.text()}`);
}

/** Whether the API accepts these credentials (a server-side check, independent of the UI). */
export async function apiSignIn(base, login, password) {
  const r = await fetch(`${base}/api/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username_or_email: login, password }),
  });
  return r.status;
}

let counter = 0;
/** A fresh account description with a unique name. */
export function newUser(prefix = 'user') {
  counter += 1;
  const id = `${prefix}${Date.now().toString(36)}${counter}`;
  return { username: id, email: `${id}@example.com`, password: 'Correct-Horse-9' };
}
