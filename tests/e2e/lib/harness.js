// The e2e harness: starts the real server processes of one leg, mints tokens, talks REST, and
// wraps socket.io-client sockets with an event log and waits that always time out with a
// message saying what was awaited.
//
// Legs (env LEG):
//   embedded: one `chat` process (REST + Socket.IO on one port, SQLite, in-process bus);
//   scaled:   one `chat-api` and two `chat-gateway` processes on PostgreSQL and Redis.
//
// Environment (the Rust wrapper tests/tests/e2e.rs sets all of it; see README.md):
//   E2E_BIN_DIR        directory with chat, chat-api, chat-gateway (default: the cargo target dir)
//   E2E_DATABASE_URL   sqlite://… (embedded, default: a file in the log dir) or postgres://… (scaled)
//   E2E_REDIS_URL      scaled leg (default redis://127.0.0.1:6379)
//   E2E_REDIS_PREFIX   scaled leg (default: unique per run)
//   E2E_LOG_DIR        where server logs go (default: a new temporary directory)

import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';

export const LEG = process.env.LEG || 'embedded';
if (LEG !== 'embedded' && LEG !== 'scaled') {
  throw new Error(`LEG must be "embedded" or "scaled", not ${JSON.stringify(LEG)}`);
}

const here = path.dirname(fileURLToPath(import.meta.url));
const workspace = path.resolve(here, '..', '..', '..');

/** A tag unique to this run, so user ids never collide with an earlier run's data. */
export const RUN = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
let userCounter = 0;
/** A fresh user id (`<name>_<run>_<n>`): every test gets users nobody else has seen. */
export function newUser(name) {
  userCounter += 1;
  return `${name}_${RUN}_${userCounter}`;
}

// ---------------------------------------------------------------------------------------------
// Promises with timeouts
// ---------------------------------------------------------------------------------------------

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or a rejection naming `what` after `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

export const JWT_SECRET = `e2e-${randomBytes(24).toString('hex')}`;

const b64url = (value) => Buffer.from(value).toString('base64url');

/** An HS256 JWT for `sub` (claims `exp`, optional `name`/`role`, and `extra`). */
export function token(sub, { name, role, ttlSecs = 3600, secret = JWT_SECRET, extra = {} } = {}) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = { sub, exp: Math.floor(Date.now() / 1000) + ttlSecs, ...extra };
  if (name !== undefined) claims.name = name;
  if (role !== undefined) claims.role = role;
  const body = b64url(JSON.stringify(claims));
  const signature = createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url');
  return `${header}.${body}.${signature}`;
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

const children = new Set();

function killAllNow() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

// Whatever happens to this test process, its servers do not outlive it.
process.on('exit', killAllNow);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killAllNow();
    process.exit(128 + (os.constants.signals[signal] ?? 1));
  });
}

// `node --test` runs this file in a child process. If that runner is killed (the Rust wrapper's
// deadline), this process is orphaned: stop the servers and leave rather than run on alone.
const parentAtStart = process.ppid;
setInterval(() => {
  if (process.ppid !== parentAtStart) {
    console.error('# e2e: the test runner is gone: stopping the servers');
    process.exit(1);
  }
}, 500).unref();

/** A free TCP port on 127.0.0.1 (listen on port 0, close, hand the number over). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function binDir() {
  if (process.env.E2E_BIN_DIR) return process.env.E2E_BIN_DIR;
  const target = process.env.CARGO_TARGET_DIR || path.join(workspace, 'target');
  return path.join(target, 'debug');
}

/** The grace the servers get on SIGTERM (short: the suite stops several of them). */
export const SHUTDOWN_GRACE_SECS = 5;

class ServerProcess {
  constructor(name, bin, env, logDir) {
    this.name = name;
    this.log = path.join(logDir, `${name}.log`);
    const out = fs.openSync(this.log, 'a');
    this.child = spawn(bin, [], { env, stdio: ['ignore', out, out] });
    fs.closeSync(out);
    children.add(this.child);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => resolve({ code, signal }));
      this.child.once('error', (error) => resolve({ code: null, signal: null, error }));
    });
    this.exited.then(() => children.delete(this.child));
  }

  get alive() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Polls `url/health/ready` until it answers 200; fails at once if the process exits. */
  async waitReady(url, ms = 90_000) {
    const deadline = Date.now() + ms;
    let last = 'no answer yet';
    let exited = null;
    this.exited.then((e) => {
      exited = e;
    });
    while (Date.now() < deadline) {
      if (exited) {
        const why = exited.error ? exited.error.message : `code ${exited.code}, signal ${exited.signal}`;
        throw new Error(`${this.name} exited before it was ready (${why}); log ${this.log}:\n${tail(this.log)}`);
      }
      try {
        const res = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2000) });
        if (res.status === 200) return;
        last = `status ${res.status}: ${await res.text()}`;
      } catch (e) {
        last = e.message;
      }
      await sleep(100);
    }
    throw new Error(`${this.name} not ready at ${url}/health/ready after ${ms} ms (${last}); log ${this.log}:\n${tail(this.log)}`);
  }

  /**
   * SIGTERM, then SIGKILL if it is still there after its grace (SHUTDOWN_GRACE_SECS) and 3 s.
   * Resolves with `{ code, signal, ms, panicked }` for a process this call stopped, or null
   * for one that was already gone (killed by a test).
   */
  async stop() {
    if (!this.alive) return null;
    const started = Date.now();
    this.child.kill('SIGTERM');
    const done = await withTimeout(this.exited, (SHUTDOWN_GRACE_SECS + 3) * 1000, `${this.name} to stop`).catch(() => null);
    if (!done && this.alive) {
      this.child.kill('SIGKILL');
      await withTimeout(this.exited, 5000, `${this.name} to die`).catch(() => {});
    }
    const exit = done ?? { code: null, signal: 'SIGKILL' };
    return { ...exit, ms: Date.now() - started, panicked: /panicked/.test(tail(this.log, 200)), log: this.log };
  }
}

/**
 * Starts the processes of `LEG` and waits until they are ready. Returns
 * `{ leg, rest, gw1, gw2, logDir, processes, stop() }`: `rest` is the REST base URL,
 * `gw1`/`gw2` the Socket.IO URLs of the two gateways (all the same URL when embedded).
 */
export async function startLeg() {
  const logDir = process.env.E2E_LOG_DIR || fs.mkdtempSync(path.join(os.tmpdir(), `chat-e2e-${LEG}-`));
  fs.mkdirSync(logDir, { recursive: true });
  const dir = binDir();
  const bin = (name) => {
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) {
      throw new Error(`${file} does not exist: build it first (cargo build -p chat-server -p chat-api -p chat-gateway) or set E2E_BIN_DIR`);
    }
    return file;
  };
  const base = {
    ...process.env,
    HOST: '127.0.0.1',
    JWT_SECRET,
    RATE_LIMIT_MESSAGES: '100000',
    SHUTDOWN_GRACE_SECS: String(SHUTDOWN_GRACE_SECS),
    // JSON lines, as in production: the tracing test reads them.
    LOG_FORMAT: 'json',
    RUST_LOG: process.env.E2E_RUST_LOG || 'info,chat_gateway=debug,sqlx=warn',
    NO_COLOR: '1',
  };
  // What the servers must not inherit from a developer's shell.
  for (const key of ['PORT', 'DATABASE_URL', 'REDIS_URL', 'REDIS_PREFIX', 'TYPING_TIMEOUT_MS', 'PRESENCE_TTL_SECS', 'MAX_BODY_BYTES']) {
    delete base[key];
  }
  const processes = [];
  const cleanups = [];
  // Each process this stops: its name and how it exited (see ServerProcess.stop).
  const stop = async () => {
    const exits = await Promise.all(processes.map(async (p) => ({ name: p.name, exit: await p.stop() })));
    for (const cleanup of cleanups.splice(0)) {
      await cleanup().catch((e) => console.error(`# e2e: cleanup failed: ${e.message}`));
    }
    return exits.filter((e) => e.exit);
  };
  try {
    if (LEG === 'embedded') {
      const port = await freePort();
      const database = process.env.E2E_DATABASE_URL || `sqlite://${path.join(logDir, 'chat.db')}`;
      const chat = new ServerProcess('chat', bin('chat'), { ...base, PORT: String(port), DATABASE_URL: database }, logDir);
      processes.push(chat);
      const url = `http://127.0.0.1:${port}`;
      await chat.waitReady(url);
      return { leg: LEG, rest: url, gw1: url, gw2: url, logDir, processes, stop };
    }
    const database = process.env.E2E_DATABASE_URL;
    if (!database || !database.startsWith('postgres')) {
      throw new Error('the scaled leg needs E2E_DATABASE_URL=postgres://… (a database or schema it may migrate)');
    }
    const scaled = {
      ...base,
      DATABASE_URL: database,
      REDIS_URL: process.env.E2E_REDIS_URL || 'redis://127.0.0.1:6379',
      REDIS_PREFIX: process.env.E2E_REDIS_PREFIX || `e2e_${process.pid}_${RUN}`,
      // Short, so that the crash test sees a killed gateway's users go offline quickly.
      PRESENCE_TTL_SECS: '3',
    };
    // After the servers stop, their keys go too (last-seen times live for 90 days).
    cleanups.push(() => deleteRedisKeys(scaled.REDIS_URL, scaled.REDIS_PREFIX));
    const [apiPort, gw1Port, gw2Port] = [await freePort(), await freePort(), await freePort()];
    // The API first: it migrates the fresh schema before the gateways open it.
    const api = new ServerProcess('chat-api', bin('chat-api'), { ...scaled, PORT: String(apiPort) }, logDir);
    processes.push(api);
    const rest = `http://127.0.0.1:${apiPort}`;
    await api.waitReady(rest);
    const gw1 = new ServerProcess('chat-gateway-1', bin('chat-gateway'), { ...scaled, PORT: String(gw1Port) }, logDir);
    const gw2 = new ServerProcess('chat-gateway-2', bin('chat-gateway'), { ...scaled, PORT: String(gw2Port) }, logDir);
    processes.push(gw1, gw2);
    const urls = [`http://127.0.0.1:${gw1Port}`, `http://127.0.0.1:${gw2Port}`];
    await Promise.all([gw1.waitReady(urls[0]), gw2.waitReady(urls[1])]);
    /** One more gateway on the same database and Redis: `{ process, url }` once it is ready. */
    const startGateway = async (name) => {
      const port = await freePort();
      const gw = new ServerProcess(name, bin('chat-gateway'), { ...scaled, PORT: String(port) }, logDir);
      processes.push(gw);
      const url = `http://127.0.0.1:${port}`;
      await gw.waitReady(url);
      return { process: gw, url };
    };
    return { leg: LEG, rest, gw1: urls[0], gw2: urls[1], logDir, processes, stop, startGateway };
  } catch (e) {
    await stop();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Redis clean-up (a few commands of RESP by hand: no client library needed)
// ---------------------------------------------------------------------------------------------

/** Deletes every key under `prefix:` in the Redis at `url` (redis:// only). */
export async function deleteRedisKeys(url, prefix) {
  const parsed = new URL(url);
  if (parsed.protocol !== 'redis:') return;
  const socket = net.connect({ host: parsed.hostname || '127.0.0.1', port: Number(parsed.port || 6379) });
  let buffer = Buffer.alloc(0);
  let wake = () => {};
  let failure = null;
  socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    wake();
  });
  socket.on('error', (e) => {
    failure = e;
    wake();
  });
  // One RESP value from `buffer` at `at`: [value, next] or null when incomplete.
  const parse = (at) => {
    const end = buffer.indexOf('\r\n', at);
    if (end < 0) return null;
    const line = buffer.toString('utf8', at + 1, end);
    const next = end + 2;
    switch (String.fromCharCode(buffer[at])) {
      case '+':
        return [line, next];
      case '-':
        return [new Error(line), next];
      case ':':
        return [Number(line), next];
      case '$': {
        const n = Number(line);
        if (n < 0) return [null, next];
        if (buffer.length < next + n + 2) return null;
        return [buffer.toString('utf8', next, next + n), next + n + 2];
      }
      case '*': {
        const n = Number(line);
        const items = [];
        let pos = next;
        for (let i = 0; i < n; i += 1) {
          const item = parse(pos);
          if (!item) return null;
          items.push(item[0]);
          pos = item[1];
        }
        return [items, pos];
      }
      default:
        throw new Error(`unexpected RESP from Redis: ${line}`);
    }
  };
  const command = async (...args) => {
    socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`);
    for (;;) {
      if (failure) throw failure;
      const value = buffer.length ? parse(0) : null;
      if (value) {
        buffer = buffer.subarray(value[1]);
        if (value[0] instanceof Error) throw value[0];
        return value[0];
      }
      await new Promise((resolve) => {
        wake = resolve;
      });
    }
  };
  const work = async () => {
    if (parsed.password) {
      const user = decodeURIComponent(parsed.username);
      const password = decodeURIComponent(parsed.password);
      await (user ? command('AUTH', user, password) : command('AUTH', password));
    }
    const db = parsed.pathname.replace('/', '');
    if (db) await command('SELECT', db);
    let cursor = '0';
    do {
      const [next, keys] = await command('SCAN', cursor, 'MATCH', `${prefix}:*`, 'COUNT', '1000');
      if (keys.length) await command('DEL', ...keys);
      cursor = next;
    } while (cursor !== '0');
  };
  try {
    await withTimeout(work(), 5000, `deleting the Redis keys under ${prefix}:`);
  } finally {
    socket.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// REST
// ---------------------------------------------------------------------------------------------

/** `{ status, body }` of one REST call (`path` under /api/v1/chat). */
export async function rest(baseUrl, method, apiPath, tok, body, extraHeaders = {}) {
  const headers = { Authorization: `Bearer ${tok}`, ...extraHeaders };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${baseUrl}/api/v1/chat${apiPath}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  return { status: res.status, body: parsed };
}

// ---------------------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------------------

/**
 * One socket.io-client socket and everything it received, in order.
 * `label` names it in failure messages.
 */
export class Client {
  constructor(label, url, opts) {
    this.label = label;
    this.events = [];
    this.disconnects = [];
    this.waiters = new Set();
    this.socket = io(url, { reconnection: false, forceNew: true, timeout: 10_000, ...opts });
    this.socket.onAny((event, ...args) => {
      this.events.push({ event, data: args[0], at: Date.now() });
      for (const w of [...this.waiters]) w.check();
    });
    this.socket.on('disconnect', (reason) => {
      this.disconnects.push(reason);
      for (const w of [...this.waiters]) w.check();
    });
  }

  get connected() {
    return this.socket.connected;
  }

  get transport() {
    return this.socket.io.engine?.transport?.name;
  }

  /** Resolves on `connect`; rejects with the `connect_error`. */
  ready(ms = 10_000) {
    if (this.socket.connected) return Promise.resolve(this);
    return withTimeout(
      new Promise((resolve, reject) => {
        this.socket.once('connect', () => resolve(this));
        this.socket.once('connect_error', (err) => reject(err));
      }),
      ms,
      `${this.label} to connect`,
    );
  }

  /** The `connect_error` this socket gets (fails if it connects instead). */
  connectError(ms = 10_000) {
    return withTimeout(
      new Promise((resolve, reject) => {
        this.socket.once('connect', () => reject(new Error(`${this.label} connected, but a connect_error was expected`)));
        this.socket.once('connect_error', (err) => resolve(err));
      }),
      ms,
      `${this.label} to get connect_error`,
    );
  }

  /** Emits `event` with `args` and resolves with the acknowledgement. */
  ack(event, ...args) {
    return withTimeout(
      this.socket.timeout(10_000).emitWithAck(event, ...args),
      11_000,
      `${this.label}: ack of ${event}`,
    );
  }

  /** How far the log is now: pass as `since` to look only at what comes later. */
  mark() {
    return this.events.length;
  }

  /** Received `event`s (from index `since`) whose payload passes `pred`. */
  received(event, pred = () => true, since = 0) {
    return this.events.slice(since).filter((e) => e.event === event && pred(e.data)).map((e) => e.data);
  }

  /** The first `event` (from `since`) whose payload passes `pred`, waiting up to `ms`. */
  waitFor(event, pred = () => true, { since = 0, ms = 5000, what } = {}) {
    return this.waitForCount(event, 1, pred, { since, ms, what }).then((list) => list[0]);
  }

  /** Waits until `n` matching `event`s arrived (from `since`); resolves with them. */
  waitForCount(event, n, pred = () => true, { since = 0, ms = 5000, what } = {}) {
    const description = `${this.label} to receive ${n}× ${event}${what ? ` (${what})` : ''}`;
    let waiter;
    const promise = new Promise((resolve) => {
      waiter = {
        check: () => {
          const found = this.received(event, pred, since);
          if (found.length >= n) {
            this.waiters.delete(waiter);
            resolve(found);
          }
        },
      };
      this.waiters.add(waiter);
      waiter.check();
    });
    return withTimeout(promise, ms, description).catch((e) => {
      this.waiters.delete(waiter);
      const seen = this.events.slice(since).map((x) => `${x.event} ${JSON.stringify(x.data)}`.slice(0, 200));
      e.message += `\n  ${this.label} received since mark: ${seen.length ? `\n    ${seen.join('\n    ')}` : '(nothing)'}`;
      throw e;
    });
  }

  /** Resolves with the disconnect reason. */
  waitDisconnect(ms = 5000) {
    if (this.disconnects.length) return Promise.resolve(this.disconnects[0]);
    return withTimeout(
      new Promise((resolve) => this.socket.once('disconnect', resolve)),
      ms,
      `${this.label} to disconnect`,
    );
  }

  close() {
    this.socket.disconnect();
  }
}

/** Every client made through `connect`, closed by `closeAll`. */
const clients = new Set();

/**
 * A connected client of `user` on `url`. Options: `how` = 'auth' (default) | 'header' | 'query';
 * `transports`; `tok` (another token).
 */
export async function connect(url, user, { how = 'auth', transports, tok, label } = {}) {
  const t = tok ?? token(user);
  const opts = {};
  if (how === 'auth') opts.auth = { token: t };
  else if (how === 'header') opts.extraHeaders = { Authorization: `Bearer ${t}` };
  else if (how === 'query') opts.query = { token: t };
  else if (how !== 'none') throw new Error(`unknown auth method ${how}`);
  if (transports) opts.transports = transports;
  const client = new Client(label ?? user, url, opts);
  clients.add(client);
  try {
    await client.ready();
  } catch (e) {
    client.close();
    throw new Error(`${client.label} could not connect to ${url}: ${e.message}`);
  }
  return client;
}

/** A client that is expected not to connect (for the auth tests). */
export function attempt(url, label, opts) {
  const client = new Client(label, url, opts);
  clients.add(client);
  return client;
}

export function closeAll() {
  for (const c of clients) c.close();
  clients.clear();
}

/** Closes `client` and waits until the server side is surely gone. */
export async function disconnect(client) {
  clients.delete(client);
  client.close();
}
