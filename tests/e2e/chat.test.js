// End-to-end tests of the chat backend with the official socket.io-client, against the real
// processes of one leg (LEG=embedded | scaled; see lib/harness.js and README.md).
//
// Placement: in the scaled leg a user's first socket is on gateway 1 or 2 as each test says
// (alice-like users on gateway 1, bob-like users on gateway 2, bob's second socket on gateway 1)
// and REST goes to chat-api; in the embedded leg all of it is the one `chat` port.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fs from 'node:fs';
import {
  JWT_SECRET,
  LEG,
  SHUTDOWN_GRACE_SECS,
  attempt,
  closeAll,
  connect,
  disconnect,
  newUser,
  rest,
  sleep,
  startLeg,
  token,
} from './lib/harness.js';

/** How long to keep listening after the last expected event, to catch duplicates and leaks. */
const GRACE_MS = 700;
/** Unique per run: clientMessageIds must not collide with an earlier run's on a kept database. */
const RUN_TAG = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

let env;

before(async () => {
  env = await startLeg();
  console.log(`# e2e leg ${LEG}: rest ${env.rest}, gateway 1 ${env.gw1}, gateway 2 ${env.gw2}; server logs in ${env.logDir}`);
});

// Every server still running at the end gets SIGTERM, as from Kubernetes, and must exit by
// itself within its grace, with status 0 and no panic in its log.
after(async () => {
  closeAll();
  if (!env) return;
  const exits = await env.stop();
  // No token and no secret in any server log, though tokens came in headers, in the
  // handshake's auth and in query strings, some of them refused (logs at debug level).
  for (const file of fs.readdirSync(env.logDir).filter((f) => f.endsWith('.log'))) {
    const text = fs.readFileSync(`${env.logDir}/${file}`, 'utf8');
    assert.ok(text.length > 0, `${file} is empty`);
    assert.ok(!text.includes(JWT_SECRET), `${file} contains the JWT secret`);
    const token = text.match(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/);
    assert.equal(token, null, `${file} contains a token: ${token?.[0].slice(0, 40)}…`);
  }
  for (const { name, exit } of exits) {
    console.log(`# ${name} stopped on SIGTERM in ${exit.ms} ms: code ${exit.code}, signal ${exit.signal}`);
    assert.equal(exit.panicked, false, `${name} panicked while stopping; log ${exit.log}`);
    assert.equal(exit.code, 0, `${name} exit on SIGTERM: ${JSON.stringify(exit)}; log ${exit.log}`);
    assert.ok(exit.ms < SHUTDOWN_GRACE_SECS * 1000 + 1000, `${name} took ${exit.ms} ms to stop`);
  }
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** Creates a conversation as `owner` with `others` over REST; asserts 201. */
async function createConversation(owner, others, extra = {}) {
  const res = await rest(env.rest, 'POST', '/conversations', token(owner), { participantIds: others, ...extra });
  assert.equal(res.status, 201, `create conversation: ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Sends a message as `user` over REST; asserts 201. */
async function postMessage(user, conversationId, content, extra = {}) {
  const res = await rest(env.rest, 'POST', `/conversations/${conversationId}/messages`, token(user), { content, ...extra });
  assert.equal(res.status, 201, `REST send: ${JSON.stringify(res.body)}`);
  return res.body;
}

function assertOk(ack, what) {
  assert.equal(typeof ack, 'object', `${what}: ack is not an object: ${JSON.stringify(ack)}`);
  assert.equal(ack.ok, true, `${what}: expected ok:true, got ${JSON.stringify(ack)}`);
}

function assertError(ack, code, what) {
  assert.equal(ack?.ok, false, `${what}: expected ok:false, got ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.error, 'object', `${what}: no error object in ${JSON.stringify(ack)}`);
  assert.equal(ack.error.code, code, `${what}: expected code ${code}, got ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.error.message, 'string', `${what}: error.message is not a string: ${JSON.stringify(ack)}`);
}

/** Asserts that `client` got `event` with payload passing `pred` exactly `n` times (from `since`). */
function assertCount(client, event, pred, n, what, since = 0) {
  const got = client.received(event, pred, since);
  assert.equal(got.length, n, `${client.label}: expected ${n}× ${event} (${what}), got ${got.length}: ${JSON.stringify(got).slice(0, 600)}`);
}

/**
 * Waits (from `since`) for `client`'s unread_count_updated of `conversationId` with `unreadCount`,
 * and asserts its `totalUnread`.
 */
async function expectUnread(client, conversationId, unreadCount, totalUnread, since, what) {
  const u = await client.waitFor(
    'unread_count_updated',
    (x) => x?.conversationId === conversationId && x.unreadCount === unreadCount,
    { since, what: `${what}: unreadCount ${unreadCount}` },
  );
  assert.deepEqual(u, { conversationId, unreadCount, totalUnread }, `${client.label}: ${what}`);
}

const byId = (id) => (m) => m?.id === id;
const forConversation = (id) => (e) => e?.conversationId === id;

// ---------------------------------------------------------------------------------------------
// The tests. The slow typing timeout runs beside the rest; everything else is sequential.
//
// Typing right after join_conversation relies on the contract: once the join is acknowledged,
// the socket gets the room's typing from any replica (the gateway acknowledges only after Redis
// confirmed its subscription to the room's channel).
// ---------------------------------------------------------------------------------------------

describe(`chat e2e, ${LEG} leg`, { concurrency: true }, () => {
  test('a typing_start without typing_stop ends by itself after the 8 s default', async () => {
    const typer = newUser('tt_alice');
    const other = newUser('tt_bob');
    const conv = await createConversation(typer, [other]);
    const a = await connect(env.gw1, typer);
    const b = await connect(env.gw2, other);
    assertOk(await a.ack('join_conversation', { conversationId: conv.id }), 'typer joins');
    assertOk(await b.ack('join_conversation', { conversationId: conv.id }), 'other joins');
    const started = Date.now();
    assertOk(await a.ack('typing_start', { conversationId: conv.id }), 'typing_start');
    await b.waitFor('user_typing_start', forConversation(conv.id), { what: 'the start' });
    // Nothing ends it before ~7 s…
    await sleep(Math.max(0, started + 7000 - Date.now()));
    assert.equal(b.received('user_typing_stop', forConversation(conv.id)).length, 0, 'user_typing_stop came before 7 s');
    // …and it has ended by ~9.5 s.
    const stop = await b.waitFor('user_typing_stop', forConversation(conv.id), {
      ms: Math.max(100, started + 9500 - Date.now()),
      what: 'the automatic stop by 9.5 s after typing_start',
    });
    assert.deepEqual(stop, { conversationId: conv.id, userId: typer });
    const ended = b.events.find((e) => e.event === 'user_typing_stop').at - started;
    console.log(`# typing ended by itself ${ended} ms after typing_start`);
    assert.equal(a.received('user_typing_start').length + a.received('user_typing_stop').length, 0, "the typer's own socket got typing events");
    await disconnect(a);
    await disconnect(b);
  });

  describe('sequential', { concurrency: 1 }, () => {
    test('logs: JSON lines; a request id and a socket event follow their events to the delivering gateway', async () => {
      const alice = newUser('tr_alice');
      const bob = newUser('tr_bob');
      const conv = await createConversation(alice, [bob]);
      const a = await connect(env.gw1, alice);
      const b = await connect(env.gw2, bob);
      // Over REST, with the caller's own x-request-id.
      const requestId = `trace-${RUN_TAG}`;
      const since = b.mark();
      const res = await rest(env.rest, 'POST', `/conversations/${conv.id}/messages`, token(alice), { content: 'traced' }, { 'x-request-id': requestId });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      await b.waitFor('new_message', byId(res.body.id), { since, what: 'the REST message' });
      // Over Socket.IO: the event's trace id is in the sending gateway's log.
      const sent = await a.ack('send_message', { conversationId: conv.id, content: 'traced too' });
      assertOk(sent, 'send_message');
      await b.waitFor('new_message', byId(sent.message.id), { since, what: 'the socket message' });
      // Bob's gateway (gateway 2 when scaled) logs each delivery in a span with the trace id.
      const logOf = (url) => {
        const name = LEG === 'embedded' ? 'chat' : url === env.gw1 ? 'chat-gateway-1' : 'chat-gateway-2';
        return `${env.logDir}/${name}.log`;
      };
      const lines = (file) =>
        fs
          .readFileSync(file, 'utf8')
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => {
            try {
              return JSON.parse(l);
            } catch {
              assert.fail(`${file}: not a JSON line: ${l.slice(0, 200)}`);
            }
          });
      const delivered = async (traceId) => {
        // The log is written as it happens; give the line a moment to land.
        for (let i = 0; i < 20; i++) {
          const hit = lines(logOf(env.gw2)).find(
            (l) => l.span?.name === 'deliver' && l.span.trace_id === traceId && l.span.event === 'new_message' && l.fields?.message === 'delivered',
          );
          if (hit) return hit;
          await sleep(100);
        }
        assert.fail(`no "delivered" line with trace_id ${traceId} in ${logOf(env.gw2)}`);
      };
      await delivered(requestId);
      const answered = lines(logOf(env.gw1)).find(
        (l) => l.span?.name === 'socket_event' && l.span.socket_id === a.socket.id && l.span.event === 'send_message' && l.fields?.outcome === 'ok',
      );
      assert.ok(answered, `no "event answered" line for socket ${a.socket.id} in ${logOf(env.gw1)}`);
      assert.match(answered.span.trace_id, /^[0-9a-f]{32}$/);
      await delivered(answered.span.trace_id);
      await disconnect(a);
      await disconnect(b);
    });

    test('handshake: auth.token, Authorization header (websocket, polling), query token', async () => {
      const user = newUser('auth');
      const peer = newUser('authpeer');
      const conv = await createConversation(peer, [user]);
      const ways = [
        ['auth', undefined, env.gw1],
        ['auth', undefined, env.gw2],
        ['header', ['websocket'], env.gw1],
        ['header', ['polling'], env.gw2],
        ['query', ['websocket'], env.gw2],
        ['query', ['polling'], env.gw1],
      ];
      for (const [how, transports, url] of ways) {
        const label = `${how}${transports ? `/${transports[0]}` : ''} on ${url}`;
        const c = await connect(url, user, { how, transports, label });
        if (transports) assert.equal(c.transport, transports[0], `${label}: transport`);
        // Authenticated as `user`: the conversation they are in can be joined.
        const ack = await c.ack('join_conversation', { conversationId: conv.id });
        assertOk(ack, `${label}: join_conversation`);
        assert.equal(ack.conversation.id, conv.id);
        await disconnect(c);
      }
    });

    test('handshake: bad or missing tokens get connect_error "unauthorized"', async () => {
      const user = newUser('badauth');
      const expired = token(user, { ttlSecs: -3600 });
      const wrongSecret = token(user, { secret: 'another-secret-of-enough-length' });
      const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(
        JSON.stringify({ sub: user, exp: Math.floor(Date.now() / 1000) + 3600 }),
      ).toString('base64url')}.`;
      const cases = [
        ['no token at all', {}],
        ['auth: garbage', { auth: { token: 'not-a-jwt' } }],
        ['auth: wrong secret', { auth: { token: wrongSecret } }],
        ['auth: expired', { auth: { token: expired } }],
        ['auth: alg none', { auth: { token: none } }],
        ['auth: token not a string', { auth: { token: 42 } }],
        ['header: wrong secret (websocket)', { extraHeaders: { Authorization: `Bearer ${wrongSecret}` }, transports: ['websocket'] }],
        ['header: expired (polling)', { extraHeaders: { Authorization: `Bearer ${expired}` }, transports: ['polling'] }],
        ['query: wrong secret', { query: { token: wrongSecret } }],
      ];
      for (const [url, gw] of [[env.gw1, 'gateway 1'], [env.gw2, 'gateway 2']]) {
        for (const [what, opts] of cases) {
          const c = attempt(url, `${what} on ${gw}`, opts);
          const err = await c.connectError();
          assert.equal(err.message, 'unauthorized', `${what} on ${gw}: connect_error message`);
          assert.equal(c.connected, false);
          await disconnect(c);
        }
      }
    });

    test('transports: websocket-only and polling-only clients send and receive', async () => {
      const alice = newUser('tr_alice');
      const bob = newUser('tr_bob');
      const ws = await connect(env.gw1, alice, { transports: ['websocket'], label: 'alice (websocket)' });
      const poll = await connect(env.gw2, bob, { transports: ['polling'], label: 'bob (polling)' });
      assert.equal(ws.transport, 'websocket');
      assert.equal(poll.transport, 'polling');
      const conv = await createConversation(alice, [bob]);

      const a1 = await ws.ack('send_message', { conversationId: conv.id, content: 'over websocket' });
      assertOk(a1, 'send over websocket');
      const got1 = await poll.waitFor('new_message', byId(a1.message.id), { what: 'the websocket message' });
      assert.equal(got1.content, 'over websocket');

      const a2 = await poll.ack('send_message', { conversationId: conv.id, content: 'over polling' });
      assertOk(a2, 'send over polling');
      const got2 = await ws.waitFor('new_message', byId(a2.message.id), { what: 'the polling message' });
      assert.equal(got2.content, 'over polling');
      assert.equal(got2.senderId, bob);
      assert.equal(poll.transport, 'polling', 'the polling-only client stayed on polling');
      await disconnect(ws);
      await disconnect(poll);
    });

    test('acknowledgements: every client event, its success and error answers', async () => {
      const alice = newUser('ack_alice');
      const bob = newUser('ack_bob');
      const carol = newUser('ack_carol');
      const conv = await createConversation(alice, [bob]);
      const a = await connect(env.gw1, alice);
      const b = await connect(env.gw2, bob);
      const c = await connect(env.gw1, carol, { label: 'carol (stranger)' });

      // Success.
      const joined = await a.ack('join_conversation', { conversationId: conv.id });
      assertOk(joined, 'join_conversation');
      assert.equal(joined.conversation.id, conv.id);
      assert.deepEqual([...joined.conversation.participants].sort(), [alice, bob].sort());

      const sent = await a.ack('send_message', { conversationId: conv.id, content: ' hello ', clientMessageId: 'c-1' });
      assertOk(sent, 'send_message');
      assert.equal(sent.message.conversationId, conv.id);
      assert.equal(sent.message.seq, 1);
      assert.equal(sent.message.senderId, alice);
      assert.equal(sent.message.recipientId, bob);
      assert.equal(sent.message.type, 'text');
      assert.equal(sent.message.content, 'hello');
      assert.equal(sent.message.clientMessageId, 'c-1');
      assert.match(sent.message.createdAt, TIME);

      const again = await a.ack('send_message', { conversationId: conv.id, content: 'hello', clientMessageId: 'c-1' });
      assertOk(again, 'send_message with the same clientMessageId');
      assert.equal(again.message.id, sent.message.id, 'a repeated clientMessageId gives the first message');

      assertOk(await a.ack('typing_start', { conversationId: conv.id }), 'typing_start');
      assertOk(await a.ack('typing_stop', { conversationId: conv.id }), 'typing_stop');

      const read = await b.ack('mark_as_read', { conversationId: conv.id });
      assertOk(read, 'mark_as_read');
      assert.equal(read.lastReadSeq, 1);
      assert.equal(read.unreadCount, 0);

      assertOk(await a.ack('leave_conversation', { conversationId: conv.id }), 'leave_conversation');

      // Malformed payloads: bad_request, and the socket stays connected.
      const events = ['join_conversation', 'leave_conversation', 'send_message', 'typing_start', 'typing_stop', 'mark_as_read'];
      for (const event of events) {
        assertError(await a.ack(event), 'bad_request', `${event} without payload`);
        assertError(await a.ack(event, 'just a string'), 'bad_request', `${event} with a string`);
        assertError(await a.ack(event, 42), 'bad_request', `${event} with a number`);
        assertError(await a.ack(event, [conv.id]), 'bad_request', `${event} with an array`);
        assertError(await a.ack(event, { conversationId: 42 }), 'bad_request', `${event} with a numeric conversationId`);
        assertError(await a.ack(event, {}), 'bad_request', `${event} without conversationId`);
      }
      assertError(await a.ack('send_message', { conversationId: conv.id, content: 123 }), 'bad_request', 'send_message with numeric content');
      assertError(await a.ack('send_message', { conversationId: conv.id }), 'bad_request', 'send_message without content');
      assertError(await a.ack('send_message', { conversationId: conv.id, content: '   ' }), 'bad_request', 'send_message with blank content');
      assertError(await a.ack('send_message', { conversationId: conv.id, content: 'x', type: 'system' }), 'bad_request', 'send_message of type system');
      assertError(await a.ack('mark_as_read', { conversationId: conv.id, upToSeq: 'x' }), 'bad_request', 'mark_as_read with a string upToSeq');
      assert.equal(a.connected, true, 'the socket stayed connected after malformed payloads');
      const after = await a.ack('send_message', { conversationId: conv.id, content: 'still here' });
      assertOk(after, 'send_message after the malformed ones');
      assert.equal(after.message.seq, 2, 'no malformed payload made a message');
      await b.waitFor('new_message', byId(after.message.id), { what: 'the message sent after the errors' });

      // A non-participant naming the conversation: not_found, for every event.
      assertError(await c.ack('join_conversation', { conversationId: conv.id }), 'not_found', 'stranger join_conversation');
      assertError(await c.ack('leave_conversation', { conversationId: conv.id }), 'not_found', 'stranger leave_conversation');
      assertError(await c.ack('send_message', { conversationId: conv.id, content: 'hi' }), 'not_found', 'stranger send_message');
      assertError(await c.ack('typing_start', { conversationId: conv.id }), 'not_found', 'stranger typing_start');
      assertError(await c.ack('typing_stop', { conversationId: conv.id }), 'not_found', 'stranger typing_stop');
      assertError(await c.ack('mark_as_read', { conversationId: conv.id }), 'not_found', 'stranger mark_as_read');
      // …and for a conversation that does not exist, whatever its shape.
      for (const id of ['0193ffff-ffff-7fff-bfff-ffffffffffff', 'nope', 'x'.repeat(300)]) {
        assertError(await a.ack('join_conversation', { conversationId: id }), 'not_found', `join_conversation ${id.slice(0, 40)}`);
      }
      await sleep(GRACE_MS);
      assert.equal(c.received('new_message').length, 0, 'the stranger received a message');
      assert.equal(c.received('user_typing_start').length, 0, 'the stranger received typing');
      assert.equal(c.connected, true);
      for (const s of [a, b, c]) await disconnect(s);
    });

    test('delivery across replicas: messages by socket and REST, edits, deletes, reads, unread counts, exactly once', async () => {
      const alice = newUser('dl_alice');
      const bob = newUser('dl_bob');
      const a1 = await connect(env.gw1, alice, { label: 'alice#1 (gw1)' });
      const b1 = await connect(env.gw2, bob, { label: 'bob#1 (gw2, joined)' });
      const b2 = await connect(env.gw1, bob, { label: 'bob#2 (gw1, not joined)' });
      const all = [a1, b1, b2];
      const bobs = [b1, b2];

      // conversation_updated on create, to every participant's sockets.
      const conv = await createConversation(alice, [bob], {
        propertyId: `prop_${alice}`,
        title: '2BR on Elm St',
        metadata: { propertyTitle: '2BR on Elm St', propertyAddress: '12 Elm St', inquiryType: 'viewing' },
      });
      assert.equal(conv.type, 'property_inquiry');
      for (const s of all) {
        const updated = await s.waitFor('conversation_updated', byId(conv.id), { what: 'the new conversation' });
        assert.deepEqual([...updated.participants].sort(), [alice, bob].sort());
        assert.equal(updated.createdBy, alice);
        assert.equal(updated.title, '2BR on Elm St');
        assert.equal(updated.unreadCount, 0);
      }
      assertOk(await b1.ack('join_conversation', { conversationId: conv.id }), 'bob#1 joins');

      // 1. alice by socket.
      const m1 = (await a1.ack('send_message', { conversationId: conv.id, content: 'm1 by socket' })).message;
      assert.ok(m1?.id, 'send_message ack has the message');
      for (const s of [b1, b2]) {
        const got = await s.waitFor('new_message', byId(m1.id), { what: 'm1' });
        assert.equal(got.content, 'm1 by socket');
        assert.equal(got.seq, 1);
        await expectUnread(s, conv.id, 1, 1, 0, 'after m1');
      }

      // 2. alice by REST.
      const m2 = await postMessage(alice, conv.id, 'm2 by REST');
      for (const s of all) {
        const got = await s.waitFor('new_message', byId(m2.id), { what: 'm2 (REST)' });
        assert.equal(got.seq, 2);
      }
      for (const s of bobs) {
        await expectUnread(s, conv.id, 2, 2, 0, 'after m2');
      }

      // 3. A second conversation: totalUnread counts both.
      const conv2 = await createConversation(alice, [bob], { propertyId: `prop2_${alice}` });
      for (const s of all) await s.waitFor('conversation_updated', byId(conv2.id), { what: 'the second conversation' });
      const m3 = await postMessage(alice, conv2.id, 'm3 in the second conversation');
      for (const s of all) await s.waitFor('new_message', byId(m3.id), { what: 'm3' });
      for (const s of bobs) {
        await expectUnread(s, conv2.id, 1, 3, 0, 'after m3 in the second conversation');
      }

      // 4. bob reads up to seq 1 from the joined socket (gw2).
      let marks = new Map(all.map((s) => [s, s.mark()]));
      const marks4 = marks;
      const r1 = await b1.ack('mark_as_read', { conversationId: conv.id, upToSeq: 1 });
      assertOk(r1, 'mark_as_read upToSeq 1');
      assert.equal(r1.lastReadSeq, 1);
      assert.equal(r1.unreadCount, 1);
      for (const s of all) {
        const r = await s.waitFor('messages_read', (x) => x.userId === bob && x.lastReadSeq === 1, { what: "bob's read up to 1" });
        assert.equal(r.conversationId, conv.id);
        assert.match(r.readAt, TIME);
      }
      for (const s of bobs) {
        await expectUnread(s, conv.id, 1, 2, marks.get(s), 'after reading up to 1');
      }

      // 5. bob reads everything from the other socket (gw1, not joined).
      marks = new Map(all.map((s) => [s, s.mark()]));
      const r2 = await b2.ack('mark_as_read', { conversationId: conv.id });
      assertOk(r2, 'mark_as_read all');
      assert.equal(r2.lastReadSeq, 2);
      assert.equal(r2.unreadCount, 0);
      for (const s of all) await s.waitFor('messages_read', (x) => x.userId === bob && x.lastReadSeq === 2, { what: "bob's read up to 2" });
      for (const s of bobs) {
        await expectUnread(s, conv.id, 0, 1, marks.get(s), 'after reading all');
      }

      // bob's reads moved bob's counts only: none of them reached alice (whose own counts are
      // all 0 here: she sent every message so far).
      assertCount(a1, 'unread_count_updated', (x) => x.unreadCount !== 0 || x.totalUnread !== 0, 0, "bob's counts", marks4.get(a1));

      // 6. bob by REST.
      const markA = a1.mark();
      const m4 = await postMessage(bob, conv.id, 'm4 by REST from bob');
      for (const s of all) await s.waitFor('new_message', byId(m4.id), { what: 'm4 (REST by bob)' });
      await expectUnread(a1, conv.id, 1, 1, markA, 'after m4');

      // 7. alice reads by REST.
      const markA7 = a1.mark();
      const readRes = await rest(env.rest, 'PUT', `/conversations/${conv.id}/read`, token(alice), {});
      assert.equal(readRes.status, 200, JSON.stringify(readRes.body));
      assert.equal(readRes.body.lastReadSeq, 3);
      for (const s of all) await s.waitFor('messages_read', (x) => x.userId === alice && x.lastReadSeq === 3, { what: "alice's read up to 3" });
      await expectUnread(a1, conv.id, 0, 0, markA7, 'after her read');

      // 8. alice edits m1 by REST.
      const edit = await rest(env.rest, 'PUT', `/messages/${m1.id}`, token(alice), { content: 'm1, edited' });
      assert.equal(edit.status, 200, JSON.stringify(edit.body));
      for (const s of all) {
        const e = await s.waitFor('message_edited', byId(m1.id), { what: 'the edit of m1' });
        assert.equal(e.content, 'm1, edited');
        assert.equal(e.isEdited, true);
        assert.match(e.editedAt, TIME);
      }

      // 9. alice deletes m2 by REST.
      const del = await rest(env.rest, 'DELETE', `/messages/${m2.id}`, token(alice));
      assert.equal(del.status, 204, JSON.stringify(del.body));
      for (const s of all) {
        const d = await s.waitFor('message_deleted', byId(m2.id), { what: 'the deletion of m2' });
        assert.equal(d.isDeleted, true);
        assert.equal(d.content, '');
        assert.deepEqual(d.attachments, []);
        assert.equal(d.seq, 2);
      }

      // 10. bob by socket from gateway 2.
      const markA2 = a1.mark();
      const m5 = (await b1.ack('send_message', { conversationId: conv.id, content: 'm5 by socket from bob' })).message;
      assert.ok(m5?.id);
      for (const s of [a1, b2]) await s.waitFor('new_message', byId(m5.id), { what: 'm5 (socket by bob)' });
      await expectUnread(a1, conv.id, 1, 1, markA2, 'after m5');

      // Exactly one copy per socket (the sending socket may also get its own message, once).
      await sleep(GRACE_MS);
      for (const s of all) {
        for (const [m, what] of [[m2, 'm2'], [m3, 'm3'], [m4, 'm4']]) assertCount(s, 'new_message', byId(m.id), 1, what);
        assertCount(s, 'message_edited', byId(m1.id), 1, 'edit of m1');
        assertCount(s, 'message_deleted', byId(m2.id), 1, 'deletion of m2');
        assertCount(s, 'messages_read', (x) => x.userId === bob && x.lastReadSeq === 1, 1, "bob's read up to 1");
        assertCount(s, 'messages_read', (x) => x.userId === bob && x.lastReadSeq === 2, 1, "bob's read up to 2");
        assertCount(s, 'messages_read', (x) => x.userId === alice && x.lastReadSeq === 3, 1, "alice's read up to 3");
      }
      for (const s of [b1, b2]) assertCount(s, 'new_message', byId(m1.id), 1, 'm1');
      assert.ok(a1.received('new_message', byId(m1.id)).length <= 1, 'alice#1 got her own m1 more than once');
      for (const s of [a1, b2]) assertCount(s, 'new_message', byId(m5.id), 1, 'm5');
      assert.ok(b1.received('new_message', byId(m5.id)).length <= 1, 'bob#1 got his own m5 more than once');

      // The last counts pushed agree with the API.
      for (const [user, s] of [[bob, b1], [bob, b2], [alice, a1]]) {
        const list = await rest(env.rest, 'GET', '/conversations', token(user));
        assert.equal(list.status, 200);
        const total = list.body.items.reduce((n, c) => n + c.unreadCount, 0);
        const pushed = s.received('unread_count_updated').at(-1);
        assert.equal(pushed.totalUnread, total, `${s.label}: last totalUnread ${JSON.stringify(pushed)} vs the API's ${total}`);
      }
      for (const s of all) await disconnect(s);
    });

    test('typing: to the other participant in the room, not to the typer; leave and disconnect', async () => {
      const alice = newUser('ty_alice');
      const bob = newUser('ty_bob');
      const conv = await createConversation(alice, [bob]);
      const a1 = await connect(env.gw1, alice, { label: 'alice#1 (gw1, joined)' });
      const a2 = await connect(env.gw2, alice, { label: 'alice#2 (gw2, joined)' });
      const b1 = await connect(env.gw2, bob, { label: 'bob#1 (gw2, joined)' });
      const b2 = await connect(env.gw1, bob, { label: 'bob#2 (gw1, not joined)' });
      const b3 = await connect(env.gw1, bob, { label: 'bob#3 (gw1, joined)' });
      for (const s of [a1, a2, b1, b3]) assertOk(await s.ack('join_conversation', { conversationId: conv.id }), `${s.label} joins`);
      const expected = { conversationId: conv.id, userId: alice };

      assertOk(await a1.ack('typing_start', { conversationId: conv.id }), 'typing_start');
      for (const s of [b1, b3]) assert.deepEqual(await s.waitFor('user_typing_start', forConversation(conv.id), { what: 'the start' }), expected);
      assertOk(await a1.ack('typing_stop', { conversationId: conv.id }), 'typing_stop');
      for (const s of [b1, b3]) assert.deepEqual(await s.waitFor('user_typing_stop', forConversation(conv.id), { what: 'the stop' }), expected);
      await sleep(GRACE_MS);
      for (const s of [b1, b3]) {
        assertCount(s, 'user_typing_start', () => true, 1, 'one start');
        assertCount(s, 'user_typing_stop', () => true, 1, 'one stop');
      }
      for (const s of [a1, a2, b2]) {
        assertCount(s, 'user_typing_start', () => true, 0, 'no typing for the typer or a socket outside the room');
        assertCount(s, 'user_typing_stop', () => true, 0, 'no typing for the typer or a socket outside the room');
      }

      // After leave_conversation, that socket no longer gets typing.
      assertOk(await b3.ack('leave_conversation', { conversationId: conv.id }), 'bob#3 leaves');
      const markB1 = b1.mark();
      const markB3 = b3.mark();
      assertOk(await a1.ack('typing_start', { conversationId: conv.id }), 'typing_start again');
      await b1.waitFor('user_typing_start', forConversation(conv.id), { since: markB1, what: 'the second start' });
      assertOk(await a1.ack('typing_stop', { conversationId: conv.id }), 'typing_stop again');
      await b1.waitFor('user_typing_stop', forConversation(conv.id), { since: markB1, what: 'the second stop' });
      await sleep(GRACE_MS);
      assert.equal(b3.events.length, markB3, `bob#3 got events after leaving: ${JSON.stringify(b3.events.slice(markB3))}`);

      // The typer's disconnect ends the typing (long before the timeout).
      const markB1b = b1.mark();
      assertOk(await a2.ack('typing_start', { conversationId: conv.id }), 'typing_start on alice#2');
      await b1.waitFor('user_typing_start', forConversation(conv.id), { since: markB1b, what: 'the start from alice#2' });
      const gone = Date.now();
      await disconnect(a2);
      const stop = await b1.waitFor('user_typing_stop', forConversation(conv.id), { since: markB1b, ms: 3000, what: 'the stop after the typer disconnected' });
      assert.deepEqual(stop, expected);
      console.log(`# typing ended ${Date.now() - gone} ms after the typer disconnected`);
      for (const s of [a1, b1, b2, b3]) await disconnect(s);
    });

    test('presence: contacts see online/offline across replicas, strangers see nothing', async () => {
      const dave = newUser('pr_dave');
      const erin = newUser('pr_erin');
      const carol = newUser('pr_carol');
      await createConversation(dave, [erin]);
      const e = await connect(env.gw2, erin, { label: 'erin (contact, gw2)' });
      const c = await connect(env.gw1, carol, { label: 'carol (stranger, gw1)' });
      const aboutDave = (s) => (x) => x.userId === dave && x.status === s;

      const d1 = await connect(env.gw1, dave, { label: 'dave#1 (gw1)' });
      const online = await e.waitFor('user_status_change', aboutDave('online'), { what: 'dave online' });
      assert.deepEqual(online, { userId: dave, status: 'online', lastSeen: null });

      const d2 = await connect(env.gw2, dave, { label: 'dave#2 (gw2)' });
      await sleep(GRACE_MS);
      assertCount(e, 'user_status_change', (x) => x.userId === dave, 1, "no second online for dave's second socket");

      await disconnect(d1);
      await sleep(GRACE_MS + 300);
      assertCount(e, 'user_status_change', aboutDave('offline'), 0, 'no offline while dave#2 is connected on the other replica');

      const before = Date.now();
      await disconnect(d2);
      const offline = await e.waitFor('user_status_change', aboutDave('offline'), { what: 'dave offline' });
      assert.equal(offline.userId, dave);
      assert.match(offline.lastSeen, TIME, 'offline lastSeen is a time');
      const seen = Date.parse(offline.lastSeen);
      assert.ok(Math.abs(seen - before) < 10_000, `lastSeen ${offline.lastSeen} is not about now`);

      // Back online: lastSeen is the last disconnect.
      const markE = e.mark();
      const d3 = await connect(env.gw2, dave, { label: 'dave#3 (gw2)' });
      const back = await e.waitFor('user_status_change', aboutDave('online'), { since: markE, what: 'dave online again' });
      assert.deepEqual(back, { userId: dave, status: 'online', lastSeen: offline.lastSeen });

      await sleep(GRACE_MS);
      assert.deepEqual(c.received('user_status_change'), [], 'the stranger received presence');
      // dave sees erin's presence too once erin reconnects (both directions).
      await disconnect(e);
      const erinOff = await d3.waitFor('user_status_change', (x) => x.userId === erin && x.status === 'offline', { what: 'erin offline' });
      assert.match(erinOff.lastSeen, TIME);
      await sleep(GRACE_MS);
      assert.deepEqual(c.received('user_status_change'), [], 'the stranger received presence');
      for (const s of [c, d3]) await disconnect(s);
    });

    test('a packet over 64 KiB closes only that connection or is refused; the server keeps serving', async () => {
      const alice = newUser('big_alice');
      const bob = newUser('big_bob');
      const conv = await createConversation(alice, [bob]);
      const b = await connect(env.gw2, bob, { label: 'bob (gw2)' });
      const huge = 'x'.repeat(70_000);
      for (const transport of ['websocket', 'polling']) {
        const a = await connect(env.gw1, alice, { transports: [transport], label: `alice (${transport}, gw1)` });
        const other = await connect(env.gw1, alice, { label: `alice's other socket (gw1)` });
        // socket.io-client rejects a pending ack when its socket disconnects.
        const outcome = await a.socket
          .timeout(5000)
          .emitWithAck('send_message', { conversationId: conv.id, content: huge })
          .then(
            (ack) => ({ kind: 'ack', ack }),
            async (err) => (a.connected ? { kind: 'no answer', err: err.message } : { kind: 'disconnect', reason: await a.waitDisconnect() }),
          );
        console.log(`# ${transport}: a 70 000-character send_message got ${JSON.stringify(outcome)}`);
        // Observed on socketioxide: the oversized packet closes that connection (never an ack).
        assert.equal(outcome.kind, 'disconnect', `${transport}: expected the connection to close, got ${JSON.stringify(outcome)}`);
        assert.equal(a.connected, false);
        // Others still served: another socket of the same user on the same gateway, and bob.
        assert.equal(other.connected, true, `${transport}: the other socket was closed too`);
        const ok = await other.ack('send_message', { conversationId: conv.id, content: `after the ${transport} packet` });
        assertOk(ok, `${transport}: send on another socket after the oversized packet`);
        await b.waitFor('new_message', byId(ok.message.id), { what: `the message after the oversized ${transport} packet` });
        const res = await fetch(`${env.gw1}/health/ready`);
        assert.equal(res.status, 200, 'gateway 1 still ready');
        await disconnect(a);
        await disconnect(other);
      }
      await sleep(GRACE_MS);
      assert.equal(b.received('new_message', (m) => m.content.length > 4000).length, 0, 'the oversized message was delivered');
      const fresh = await connect(env.gw1, alice, { label: 'alice (new socket)' });
      assertOk(await fresh.ack('join_conversation', { conversationId: conv.id }), 'a new socket joins after the oversized packets');
      for (const s of [b, fresh]) await disconnect(s);
    });

    test('reconnect recipe (docs/events.md): sync from the last cursor seen recovers every missed change, in order, once', async () => {
      const alice = newUser('rc_alice');
      const bob = newUser('rc_bob');
      const conv = await createConversation(alice, [bob]);
      const b = await connect(env.gw2, bob, { label: 'bob (gw2, will drop)' });
      const a = await connect(env.gw1, alice, { label: 'alice (gw1)' });
      // Bob is live: his events carry cursors; he keeps the last one.
      const hello = await a.ack('send_message', { conversationId: conv.id, content: 'hello', clientMessageId: 'rc-1' });
      assertOk(hello, 'send');
      const live = await b.waitFor('new_message', byId(hello.message.id), { what: 'the live message' });
      assert.equal(typeof live.cursor, 'string', `a cursor on the live event: ${JSON.stringify(live)}`);
      let last = live.cursor;
      // Bob drops; everything happens while he is away, over sockets and REST, on both replicas.
      await disconnect(b);
      await sleep(200);
      const m2 = await a.ack('send_message', { conversationId: conv.id, content: 'are you there?', clientMessageId: 'rc-2' });
      const m3 = await postMessage(alice, conv.id, 'the garden is included');
      const edit = await rest(env.rest, 'PUT', `/messages/${m2.message.id}`, token(alice), { content: 'are you still there?' });
      assert.equal(edit.status, 200, JSON.stringify(edit.body));
      const del = await rest(env.rest, 'DELETE', `/messages/${m3.id}`, token(alice));
      assert.equal(del.status, 204, JSON.stringify(del.body));
      const rename = await rest(env.rest, 'PATCH', `/conversations/${conv.id}`, token(alice), { title: 'Elm St. 4' });
      assert.equal(rename.status, 200, JSON.stringify(rename.body));
      // His other device reads (REST), which is in his own feed too.
      const read = await rest(env.rest, 'PUT', `/conversations/${conv.id}/read`, token(bob), {});
      assert.equal(read.status, 200, JSON.stringify(read.body));

      // Back: reconnect, then sync from the last cursor, page by page, deduping messages by id.
      const b2 = await connect(env.gw1, bob, { label: 'bob (back, gw1)' });
      const recovered = [];
      for (;;) {
        const page = await rest(env.rest, 'GET', `/sync?since=${encodeURIComponent(last)}&limit=2`, token(bob));
        assert.equal(page.status, 200, JSON.stringify(page.body));
        recovered.push(...page.body.events);
        last = page.body.nextCursor;
        if (!page.body.hasMore) break;
      }
      assert.deepEqual(
        recovered.map((e) => e.event),
        ['new_message', 'new_message', 'message_edited', 'message_deleted', 'conversation_updated', 'messages_read'],
        JSON.stringify(recovered).slice(0, 800),
      );
      const [r2, r3, redit, rdel, rconv, rread] = recovered.map((e) => e.data);
      assert.equal(r2.id, m2.message.id);
      assert.equal(r3.id, m3.id);
      assert.equal(redit.id, m2.message.id);
      assert.equal(redit.content, 'are you still there?');
      assert.equal(rdel.id, m3.id);
      assert.equal(rdel.isDeleted, true);
      assert.equal(rconv.id, conv.id);
      assert.equal(rconv.title, 'Elm St. 4');
      assert.equal(rread.userId, bob);
      assert.equal(rread.lastReadSeq, 3);
      for (const e of recovered) assert.equal(e.data.cursor, e.cursor, 'each payload carries its own cursor');
      // Nothing more, and nothing twice: the next sync from the new cursor is empty.
      const after = await rest(env.rest, 'GET', `/sync?since=${encodeURIComponent(last)}`, token(bob));
      assert.deepEqual(after.body.events, []);
      // And live again: the next event's cursor follows the recovered ones.
      const m4 = await a.ack('send_message', { conversationId: conv.id, content: 'welcome back', clientMessageId: 'rc-4' });
      const next = await b2.waitFor('new_message', byId(m4.message.id), { what: 'live after the sync' });
      const resumed = await rest(env.rest, 'GET', `/sync?since=${encodeURIComponent(last)}`, token(bob));
      assert.deepEqual(resumed.body.events.map((e) => e.cursor), [next.cursor]);
      for (const s of [a, b2]) await disconnect(s);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Faults under traffic (scaled leg): a gateway is killed with SIGKILL while careful clients
// send through it. A careful client keeps every send it has not seen acknowledged and sends
// it again over REST with the same clientMessageId; receivers catch up through the feed.
// ---------------------------------------------------------------------------------------------

if (LEG === 'scaled') {
  describe('chat e2e, scaled leg: faults under traffic', () => {
    test('kill -9 of a gateway under traffic: 0 acknowledged lost, 0 duplicated, everything recovered through the feed', async () => {
      const victim = await env.startGateway('chat-gateway-victim');
      const pairs = [];
      for (let i = 0; i < 5; i++) {
        const alice = newUser(`kill_alice${i}`);
        const bob = newUser(`kill_bob${i}`);
        const conv = await createConversation(alice, [bob]);
        const start = (await rest(env.rest, 'GET', '/sync', token(bob))).body.nextCursor;
        const sender = await connect(victim.url, alice, { label: `alice${i} (victim)` });
        // Half the receivers are on the victim too: they lose their socket and catch up.
        const receiver = i % 2 === 0
          ? await connect(env.gw1, bob, { label: `bob${i} (gw1)` })
          : await connect(victim.url, bob, { label: `bob${i} (victim)` });
        pairs.push({ alice, bob, conv, start, sender, receiver, sent: [] });
      }
      // Each sender sends every 20 ms; acks are recorded as they come.
      const acked = new Map(); // clientMessageId -> message id
      let sending = true;
      const loops = pairs.map(async (p, i) => {
        for (let n = 0; sending; n++) {
          const cid = `kill-${RUN_TAG}-${i}-${n}`;
          p.sent.push(cid);
          p.sender.socket.timeout(10_000).emit('send_message', { conversationId: p.conv.id, content: `m${n}`, clientMessageId: cid }, (err, ack) => {
            if (!err && ack?.ok) acked.set(cid, ack.message.id);
          });
          await sleep(20);
        }
      });
      await sleep(700);
      const killedAt = Date.now();
      victim.process.child.kill('SIGKILL');
      await sleep(300);
      sending = false;
      await Promise.all(loops);
      const sent = pairs.reduce((n, p) => n + p.sent.length, 0);
      const ackedBeforeRetry = acked.size;
      // The careful clients: every send not acknowledged goes again over REST, same id.
      let retried = 0;
      let alreadyStored = 0;
      const stored = new Map(acked);
      for (const p of pairs) {
        for (const cid of p.sent) {
          if (stored.has(cid)) continue;
          retried += 1;
          const res = await rest(env.rest, 'POST', `/conversations/${p.conv.id}/messages`, token(p.alice), { content: 'retry', clientMessageId: cid });
          assert.ok(res.status === 201 || res.status === 200, `retry ${cid}: ${res.status} ${JSON.stringify(res.body)}`);
          if (res.status === 200) alreadyStored += 1;
          stored.set(cid, res.body.id);
        }
      }
      const recoveredAt = Date.now();
      // Every receiver: what came live, and what its feed holds (once each).
      let live = 0;
      let fromFeed = 0;
      for (const p of pairs) {
        const want = new Set(p.sent.map((cid) => stored.get(cid)));
        const seen = p.receiver.received('new_message', forConversation(p.conv.id)).map((m) => m.id);
        assert.equal(new Set(seen).size, seen.length, `${p.receiver.label}: a message delivered twice live`);
        live += seen.length;
        const feed = [];
        let cursor = p.start;
        for (;;) {
          const page = await rest(env.rest, 'GET', `/sync?since=${encodeURIComponent(cursor)}&limit=500`, token(p.bob));
          assert.equal(page.status, 200, JSON.stringify(page.body));
          feed.push(...page.body.events.filter((e) => e.event === 'new_message').map((e) => e.data.id));
          cursor = page.body.nextCursor;
          if (!page.body.hasMore) break;
        }
        assert.equal(new Set(feed).size, feed.length, `${p.bob}: a message twice in the feed`);
        assert.deepEqual(new Set(feed), want, `${p.bob}: the feed holds exactly the messages sent`);
        for (const id of seen) assert.ok(want.has(id), `${p.receiver.label}: an unknown message ${id}`);
        fromFeed += feed.filter((id) => !seen.includes(id)).length;
      }
      // Every acknowledged message is stored, as the one its ack named.
      for (const [cid, id] of acked) assert.equal(stored.get(cid), id, `ack of ${cid}`);
      console.log(
        `# kill -9 of a gateway under traffic: sent ${sent}, acknowledged ${ackedBeforeRetry}, ` +
          `retried over REST ${retried} (${alreadyStored} already stored), stored ${stored.size}, ` +
          `delivered live ${live}, recovered through the feed ${fromFeed}, lost 0, duplicated 0, ` +
          `recovered ${recoveredAt - killedAt} ms after the kill`,
      );
      assert.equal(stored.size, sent);
      assert.ok(fromFeed > 0, 'receivers on the killed gateway caught up through the feed');
      for (const p of pairs) await disconnect(p.receiver);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Scaled leg only, after everything else (it kills gateway 2): a replica that crashes must not
// leave its users online. Its presence entries stop being refreshed, expire after
// PRESENCE_TTL_SECS (3 s here), and the surviving gateway's sweep announces "offline".
// ---------------------------------------------------------------------------------------------

if (LEG === 'scaled') {
  describe('chat e2e, scaled leg: a gateway crashes', () => {
    test('users of a gateway killed with SIGKILL go offline for their contacts; the rest keeps working', async () => {
      const alice = newUser('crash_alice');
      const bob = newUser('crash_bob');
      const conv = await createConversation(alice, [bob]);
      const a = await connect(env.gw1, alice, { label: 'alice (gw1)' });
      const b = await connect(env.gw2, bob, { label: 'bob (gw2, to be killed)' });
      await a.waitFor('user_status_change', (x) => x.userId === bob && x.status === 'online', { what: 'bob online' });
      const mark = a.mark();
      const gw2 = env.processes.find((p) => p.name === 'chat-gateway-2');
      assert.ok(gw2, 'gateway 2 process');
      const killedAt = Date.now();
      gw2.child.kill('SIGKILL');
      await b.waitDisconnect(5000);
      const offline = await a.waitFor('user_status_change', (x) => x.userId === bob && x.status === 'offline', {
        since: mark,
        ms: 15_000,
        what: 'bob offline after his gateway was killed',
      });
      const took = Date.now() - killedAt;
      console.log(`# a killed gateway's user went offline for contacts after ${took} ms (PRESENCE_TTL_SECS=3)`);
      // TTL 3 s + one refresh/sweep period (1 s) + slack for a loaded 2-core machine.
      assert.ok(took < 8_000, `offline after ${took} ms`);
      assert.match(offline.lastSeen, TIME);
      // Gateway 1 and the API carry on.
      const sent = await postMessage(bob, conv.id, 'from the API after the crash');
      await a.waitFor('new_message', byId(sent.id), { what: 'a REST message after the crash' });
      await disconnect(a);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// A gateway drains on SIGTERM (scaled leg): it answers what it was asked, closes its sockets so
// that clients reconnect (to another replica behind the load balancer), and exits by itself.
// ---------------------------------------------------------------------------------------------

if (LEG === 'scaled') {
  describe('chat e2e, scaled leg: a gateway drains', () => {
    test('SIGTERM: in-flight sends are acknowledged and delivered, sockets close with "transport close", exit 0 without a panic', async () => {
      const gw3 = await env.startGateway('chat-gateway-3');
      const alice = newUser('drain_alice');
      const bob = newUser('drain_bob');
      const conv = await createConversation(alice, [bob]);
      const aliceStart = (await rest(env.rest, 'GET', '/sync', token(alice))).body.nextCursor;
      const a = await connect(gw3.url, alice, { label: 'alice (gw3, drained)' });
      const b = await connect(env.gw1, bob, { label: 'bob (gw1)' });
      const n = 30;
      const acks = [];
      for (let i = 0; i < n; i++) {
        acks.push(a.ack('send_message', { conversationId: conv.id, content: `drain ${i}`, clientMessageId: `drain-${i}` }));
      }
      const beforeDrain = b.mark();
      const signalled = Date.now();
      gw3.process.child.kill('SIGTERM');
      const settled = await Promise.allSettled(acks);
      const answered = settled.filter((r) => r.status === 'fulfilled');
      for (const r of answered) assertOk(r.value, 'a send acknowledged during the drain');
      assert.equal(answered.length, n, `acks during the drain: ${JSON.stringify(settled.filter((r) => r.status === 'rejected').map((r) => r.reason?.message))}`);
      // Closed at the transport: socket.io-client reconnects by itself after this reason
      // (it would not after "io server disconnect").
      assert.equal(await a.waitDisconnect(SHUTDOWN_GRACE_SECS * 1000), 'transport close');
      const exit = await gw3.process.exited;
      const took = Date.now() - signalled;
      console.log(`# a gateway drained on SIGTERM in ${took} ms: ${answered.length}/${n} sends acknowledged, exit code ${exit.code}`);
      assert.equal(exit.code, 0, `gateway 3 exit: ${JSON.stringify(exit)}`);
      assert.doesNotMatch(fs.readFileSync(gw3.process.log, 'utf8'), /panicked/);
      assert.ok(took < SHUTDOWN_GRACE_SECS * 1000 - 1000, `drained in ${took} ms (nothing should make it wait for the grace)`);
      // Alice's only socket was closed by the drain: her contacts hear it now, not when her
      // presence entry expires (PRESENCE_TTL_SECS, 3 s here).
      await b.waitFor('user_status_change', (x) => x.userId === alice && x.status === 'offline', {
        since: beforeDrain,
        ms: 5000,
        what: 'alice offline when her gateway drained',
      });
      const offlineAfter = Date.now() - signalled;
      // The presence lifetime is 3 s here: earlier than that, it was the drain that said it.
      assert.ok(offlineAfter < 3000, `offline announced ${offlineAfter} ms after SIGTERM`);
      // Every acknowledged message reached the other participant, once.
      await b.waitForCount('new_message', n, forConversation(conv.id), { ms: 10_000, what: 'every drained send' });
      await sleep(GRACE_MS);
      const ids = b.received('new_message', forConversation(conv.id)).map((m) => m.id);
      assert.equal(new Set(ids).size, n, 'no duplicate deliveries');
      assert.equal(ids.length, n, 'each message once');
      // The drained sender, reconnecting, finds its own sends in its feed: once each, in order.
      const sync = await rest(env.rest, 'GET', `/sync?since=${encodeURIComponent(aliceStart)}&limit=500`, token(alice));
      assert.equal(sync.status, 200, JSON.stringify(sync.body));
      const own = sync.body.events.filter((e) => e.event === 'new_message').map((e) => e.data.id);
      assert.equal(new Set(own).size, own.length, "alice's feed: each message once");
      assert.deepEqual(new Set(own), new Set(settled.map((r) => r.value.message.id)), "alice's feed after the drain");
      await disconnect(b);
    });
  });
}
