// The demo page of the embedded `chat` server: a small client of the public contract, written
// as a reader would write their own. Plain browser JavaScript, no framework, no build step.
//
// - REST (`/api/v1/chat`, `Authorization: Bearer <token>`): the conversation list, a
//   conversation's messages, starting a conversation, marking the open one read.
// - Socket.IO (`io({ auth: { token } })`, the vendored client at /demo/socket.io.min.js):
//   sending, typing, and every live event (new messages, unread counts, read receipts,
//   presence, typing of the others).
//
// Everything that came from the server or a user is put on the page as text (`textContent`,
// `createTextNode`), never parsed as HTML. The page's Content-Security-Policy allows no inline
// script or style, which is why there is none.
'use strict';

(() => {
  const API = '/api/v1/chat';
  /** How long a typing indicator stays without a stop: the server stops it after 8 s of
   *  silence, so this only matters when a stop never comes (the typer's server died). */
  const TYPING_SAFETY_MS = 20_000;
  /** While the user keeps typing, `typing_start` is repeated this often (the server's timer
   *  is 8 s), and `typing_stop` follows this long after the last key. */
  const TYPING_REPEAT_MS = 4_000;
  const TYPING_IDLE_MS = 3_000;
  const TOKEN_KEY = 'chatDemoToken';

  const $ = (id) => document.getElementById(id);

  const state = {
    token: null,
    me: null,
    socket: null,
    /** id -> Conversation, as REST gives it, kept current by the socket's events. */
    conversations: new Map(),
    /** conversationId -> Map(userId -> timer) of the others typing there. */
    typing: new Map(),
    /** userId -> { online, lastSeen } for everyone sharing a conversation with me. */
    presence: new Map(),
    /** conversationId -> highest `lastReadSeq` of the other participants (receipts). */
    readUpTo: new Map(),
    openId: null,
    /** id -> Message of the open conversation. */
    messages: new Map(),
    /** Conversations whose room this socket joined (their typing reaches it). */
    joined: new Set(),
  };

  // ---------------------------------------------------------------------------------------
  // DOM helpers: text only.
  // ---------------------------------------------------------------------------------------

  /** `<tag class=…>` with children; strings become text nodes. */
  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function setError(id, message) {
    $(id).textContent = message || '';
  }

  /** One of eight avatar colours, the same for a user id everywhere. */
  function colourClass(userId) {
    let hash = 0;
    for (const ch of userId) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    return `c${hash % 8}`;
  }

  function avatar(userId, online) {
    const node = el('span', `avatar ${colourClass(userId)}`, (userId[0] || '?').toUpperCase());
    if (online !== undefined) node.append(el('span', online ? 'dot online' : 'dot offline'));
    return node;
  }

  function clock(iso) {
    if (!iso) return '';
    const date = new Date(iso);
    const today = new Date().toDateString() === date.toDateString();
    return today
      ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : date.toLocaleDateString([], { month: 'short', day: 'numeric' });
  }

  /** A client message id without `crypto.randomUUID`, which plain-http pages on another
   *  host than localhost do not have. */
  function clientMessageId() {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    return `demo-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
  }

  // ---------------------------------------------------------------------------------------
  // REST
  // ---------------------------------------------------------------------------------------

  /** A REST call with the bearer token; a problem document becomes an Error with its
   *  `detail`, `code` and `status`. */
  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${state.token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    if (!res.ok) {
      const error = new Error((data && data.detail) || `HTTP ${res.status}`);
      error.status = res.status;
      error.code = data && data.code;
      throw error;
    }
    return data;
  }

  const conversationPath = (id) => `/conversations/${encodeURIComponent(id)}`;

  // ---------------------------------------------------------------------------------------
  // Signing in
  // ---------------------------------------------------------------------------------------

  /** The `sub` of a JWT, read for display only (the server verifies the token). */
  function subject(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const json = atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '='));
      const sub = JSON.parse(json).sub;
      return typeof sub === 'string' && sub ? sub : null;
    } catch {
      return null;
    }
  }

  function showLogin(message) {
    show($('app'), false);
    show($('session'), false);
    show($('login'), true);
    show($('mint-form'), document.body.dataset.mintTokens === 'true');
    setError('login-error', message);
    ($('mint-form').hidden ? $('token-input') : $('mint-user')).focus();
  }

  async function signIn(token) {
    const me = subject(token.trim());
    if (!me) {
      showLogin('That is not a JWT (three base64url parts with a `sub` claim).');
      return;
    }
    state.token = token.trim();
    state.me = me;
    try {
      // Checks the token before anything else is shown.
      await api('GET', '/conversations?limit=1');
    } catch (e) {
      signOut(e.status === 401 ? `The server refused this token: ${e.message}` : e.message);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $('me').textContent = me;
    show($('login'), false);
    show($('session'), true);
    show($('app'), true);
    connect();
  }

  function signOut(message) {
    if (state.socket) {
      state.socket.removeAllListeners();
      state.socket.disconnect();
    }
    for (const timers of state.typing.values()) for (const t of timers.values()) clearTimeout(t);
    Object.assign(state, {
      token: null,
      me: null,
      socket: null,
      openId: null,
    });
    for (const key of ['conversations', 'typing', 'presence', 'readUpTo', 'messages', 'joined']) {
      state[key].clear();
    }
    sessionStorage.removeItem(TOKEN_KEY);
    renderConversations();
    renderOpen();
    showLogin(message);
  }

  $('mint-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    setError('login-error', '');
    const userId = $('mint-user').value.trim();
    try {
      const res = await fetch('/demo/token', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ userId }),
      });
      const data = await res.json().catch(() => null);
      if (!res.ok) throw new Error((data && data.detail) || `HTTP ${res.status}`);
      await signIn(data.token);
    } catch (e) {
      setError('login-error', e.message);
    }
  });

  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    signIn($('token-input').value);
  });

  $('sign-out').addEventListener('click', () => signOut());

  // ---------------------------------------------------------------------------------------
  // Socket.IO
  // ---------------------------------------------------------------------------------------

  function setConnection(text, online) {
    $('connection-status').textContent = text;
    $('connection-dot').className = online ? 'dot online' : 'dot offline';
  }

  function connect() {
    // Same origin: the page is served by the server it talks to.
    const socket = io({ auth: { token: state.token } });
    state.socket = socket;
    setConnection('connecting…', false);

    socket.on('connect', () => {
      setConnection('connected', true);
      // First connect and every reconnect: rooms are per socket, and whatever happened while
      // away is read again (the list, the open conversation's messages, receipts).
      state.joined.clear();
      refresh().catch((e) => setError('sidebar-error', e.message));
    });
    socket.on('disconnect', () => setConnection('reconnecting…', false));
    socket.on('connect_error', (error) => {
      if (error.message === 'unauthorized') {
        signOut('The server refused this token on the socket (expired?).');
      } else {
        setConnection(`cannot connect (${error.message}), retrying…`, false);
      }
    });

    socket.on('new_message', (message) => onMessage(message));
    socket.on('message_edited', (message) => onMessage(message));
    socket.on('message_deleted', (message) => onMessage(message));
    socket.on('conversation_updated', (conversation) => {
      upsertConversation(conversation);
      join(conversation.id);
      renderConversations();
      if (conversation.id === state.openId) renderHeader();
    });
    socket.on('unread_count_updated', ({ conversationId, unreadCount }) => {
      const conversation = state.conversations.get(conversationId);
      if (!conversation) return;
      conversation.unreadCount = unreadCount;
      renderConversations();
    });
    socket.on('messages_read', ({ conversationId, userId, lastReadSeq }) => {
      if (userId === state.me) return; // my other device: the unread count follows
      noteRead(conversationId, lastReadSeq);
      if (conversationId === state.openId) renderMessages();
    });
    socket.on('user_typing_start', ({ conversationId, userId }) => setTyping(conversationId, userId, true));
    socket.on('user_typing_stop', ({ conversationId, userId }) => setTyping(conversationId, userId, false));
    socket.on('user_status_change', ({ userId, status, lastSeen }) => {
      state.presence.set(userId, { online: status === 'online', lastSeen });
      renderConversations();
      if (state.openId) renderHeader();
    });
  }

  /** Joins a conversation's room (its typing indicators reach this socket from then on) and
   *  records who of the others is online now. */
  async function join(conversationId) {
    if (!state.socket || !state.socket.connected || state.joined.has(conversationId)) return;
    state.joined.add(conversationId);
    const ack = await state.socket.timeout(10_000).emitWithAck('join_conversation', { conversationId })
      .catch(() => null);
    if (!ack || !ack.ok) {
      state.joined.delete(conversationId);
      return;
    }
    const online = new Set(ack.online || []);
    for (const userId of ack.conversation.participants) {
      if (userId === state.me) continue;
      const known = state.presence.get(userId);
      state.presence.set(userId, { online: online.has(userId), lastSeen: known ? known.lastSeen : null });
    }
    renderConversations();
    if (conversationId === state.openId) renderHeader();
  }

  async function refresh() {
    const page = await api('GET', '/conversations?limit=50');
    for (const conversation of page.items) upsertConversation(conversation);
    renderConversations();
    await Promise.all(page.items.map((c) => join(c.id)));
    if (state.openId) await loadMessages(state.openId);
  }

  // ---------------------------------------------------------------------------------------
  // Conversations
  // ---------------------------------------------------------------------------------------

  function upsertConversation(conversation) {
    state.conversations.set(conversation.id, conversation);
  }

  function others(conversation) {
    return conversation.participants.filter((p) => p !== state.me);
  }

  function titleOf(conversation) {
    return conversation.title || others(conversation).join(', ') || state.me;
  }

  function activityOf(conversation) {
    return conversation.lastMessageAt || conversation.updatedAt || conversation.createdAt || '';
  }

  function typingText(conversationId) {
    const typers = [...(state.typing.get(conversationId) || new Map()).keys()];
    if (typers.length === 0) return '';
    return typers.length === 1 ? `${typers[0]} is typing…` : `${typers.join(', ')} are typing…`;
  }

  function previewOf(conversation) {
    const last = conversation.lastMessage;
    if (!last) return 'No messages yet';
    if (last.isDeleted) return 'Message deleted';
    const text = last.content || (last.type === 'image' ? 'Image' : 'Attachment');
    return last.senderId === state.me ? `You: ${text}` : text;
  }

  function isWatched(conversationId) {
    return conversationId === state.openId && document.visibilityState === 'visible';
  }

  function renderConversations() {
    const list = $('conversations');
    const sorted = [...state.conversations.values()]
      .filter((c) => !c.archived)
      .sort((a, b) => activityOf(b).localeCompare(activityOf(a)));
    list.replaceChildren(
      ...sorted.map((conversation) => {
        const other = others(conversation)[0] || state.me;
        const presence = state.presence.get(other);
        const typing = typingText(conversation.id);
        // The open conversation is being read: its count is about to be zero.
        const unread = isWatched(conversation.id) ? 0 : conversation.unreadCount || 0;
        const item = el(
          'li',
          `conversation-item${conversation.id === state.openId ? ' active' : ''}${unread ? ' unread' : ''}`,
          el(
            'button',
            'conversation-button',
            avatar(other, presence ? presence.online : false),
            el(
              'span',
              'conversation-text',
              el('span', 'conversation-top',
                el('span', 'title', titleOf(conversation)),
                el('span', 'time', clock(activityOf(conversation)))),
              el('span', 'conversation-bottom',
                el('span', typing ? 'preview typing-preview' : 'preview', typing || previewOf(conversation)),
                unread ? el('span', 'badge', String(unread)) : null),
            ),
          ),
        );
        item.dataset.conversationId = conversation.id;
        item.dataset.with = others(conversation).join(',');
        item.firstChild.type = 'button';
        item.firstChild.addEventListener('click', () => openConversation(conversation.id));
        return item;
      }),
    );
    show($('no-conversations'), sorted.length === 0);
  }

  $('new-conversation').addEventListener('submit', async (event) => {
    event.preventDefault();
    setError('sidebar-error', '');
    const other = $('new-with').value.trim();
    if (!other) return;
    try {
      // A general two-person conversation with the same pair is returned, not duplicated.
      const conversation = await api('POST', '/conversations', { participantIds: [other], type: 'general' });
      upsertConversation(conversation);
      $('new-with').value = '';
      await join(conversation.id);
      await openConversation(conversation.id);
    } catch (e) {
      setError('sidebar-error', e.message);
    }
  });

  // ---------------------------------------------------------------------------------------
  // The open conversation
  // ---------------------------------------------------------------------------------------

  async function openConversation(id) {
    if (state.openId !== id) {
      stopTyping();
      state.openId = id;
      state.messages.clear();
    }
    setError('composer-error', '');
    renderConversations();
    renderOpen();
    await join(id);
    await loadMessages(id);
    $('message-input').focus();
  }

  /** The latest page of messages (merged: events that arrived meanwhile stay), then the
   *  conversation marked read. */
  async function loadMessages(id) {
    const page = await api('GET', `${conversationPath(id)}/messages?limit=50`);
    if (state.openId !== id) return;
    for (const message of page.items) {
      state.messages.set(message.id, message);
      for (const read of message.readBy || []) {
        if (read.userId !== state.me && message.senderId === state.me) noteRead(id, message.seq);
      }
    }
    renderMessages();
    await markRead(id);
  }

  /** Marks everything in `id` read, when the user can see it. The other participants get
   *  `messages_read` (their receipts), this user's sockets `unread_count_updated`. */
  async function markRead(id) {
    if (!isWatched(id)) return;
    const conversation = state.conversations.get(id);
    try {
      const res = await api('PUT', `${conversationPath(id)}/read`, {});
      if (conversation) conversation.unreadCount = res.unreadCount;
      renderConversations();
    } catch (e) {
      setError('composer-error', e.message);
    }
  }

  document.addEventListener('visibilitychange', () => {
    if (state.openId && document.visibilityState === 'visible') markRead(state.openId);
    renderConversations();
  });

  function noteRead(conversationId, seq) {
    state.readUpTo.set(conversationId, Math.max(state.readUpTo.get(conversationId) || 0, seq));
  }

  /** A message from the socket (new, edited or deleted), or the ack of one this page sent. */
  function onMessage(message) {
    const conversation = state.conversations.get(message.conversationId);
    if (!conversation) {
      // A conversation this page does not know yet (deleted for me earlier, or beyond the
      // first page): fetch it, then it is like any other.
      api('GET', conversationPath(message.conversationId))
        .then((c) => {
          upsertConversation(c);
          renderConversations();
          join(c.id);
        })
        .catch(() => {});
      return;
    }
    if (!conversation.lastMessage || message.seq >= conversation.lastMessage.seq) {
      conversation.lastMessage = message;
      conversation.lastMessageAt = message.createdAt;
      conversation.lastSeq = message.seq;
    }
    // The sender stopped typing: the message is what they typed.
    setTyping(message.conversationId, message.senderId, false);
    renderConversations();
    if (message.conversationId !== state.openId) return;
    state.messages.set(message.id, message);
    renderMessages();
    if (message.senderId !== state.me) markRead(message.conversationId);
  }

  function renderOpen() {
    const conversation = state.conversations.get(state.openId);
    show($('placeholder'), !conversation);
    show($('open'), Boolean(conversation));
    if (!conversation) return;
    renderHeader();
    renderMessages();
    renderTyping();
  }

  function renderHeader() {
    const conversation = state.conversations.get(state.openId);
    if (!conversation) return;
    $('open-title').textContent = titleOf(conversation);
    const people = others(conversation);
    const online = people.filter((p) => (state.presence.get(p) || {}).online);
    let text;
    if (people.length === 1) {
      const presence = state.presence.get(people[0]);
      if (presence && presence.online) text = 'online';
      else if (presence && presence.lastSeen) text = `offline · last seen ${clock(presence.lastSeen)}`;
      else text = 'offline';
    } else {
      text = `${online.length} of ${people.length} online`;
    }
    $('presence').textContent = text;
    $('presence-dot').className = online.length ? 'dot online' : 'dot offline';
    $('open').dataset.presence = online.length ? 'online' : 'offline';
  }

  function renderMessages() {
    const list = $('messages');
    const conversation = state.conversations.get(state.openId);
    if (!conversation) return;
    const group = others(conversation).length > 1;
    const readUpTo = state.readUpTo.get(state.openId) || 0;
    const sorted = [...state.messages.values()].sort((a, b) => a.seq - b.seq);
    list.replaceChildren(
      ...sorted.map((message) => {
        const mine = message.senderId === state.me;
        const read = mine && (message.seq <= readUpTo || message.status === 'read');
        const meta = el('span', 'meta', clock(message.createdAt), message.isEdited ? ' · edited' : null);
        if (mine) {
          const receipt = el('span', read ? 'receipt read' : 'receipt', read ? '✓✓ Read' : '✓ Sent');
          receipt.dataset.status = read ? 'read' : 'sent';
          meta.append(receipt);
        }
        const item = el(
          'li',
          `message ${mine ? 'mine' : 'theirs'}${message.isDeleted ? ' deleted' : ''}`,
          group && !mine ? el('span', 'sender', message.senderId) : null,
          el('span', 'bubble',
            el('span', 'text', message.isDeleted ? 'Message deleted' : message.content),
            meta),
        );
        item.dataset.seq = String(message.seq);
        item.dataset.messageId = message.id;
        return item;
      }),
    );
    list.scrollTop = list.scrollHeight;
  }

  // ---------------------------------------------------------------------------------------
  // Typing: the others' (shown), and mine (announced)
  // ---------------------------------------------------------------------------------------

  function setTyping(conversationId, userId, typing) {
    if (userId === state.me) return;
    let typers = state.typing.get(conversationId);
    if (!typers) {
      typers = new Map();
      state.typing.set(conversationId, typers);
    }
    clearTimeout(typers.get(userId));
    if (typing) {
      typers.set(userId, setTimeout(() => setTyping(conversationId, userId, false), TYPING_SAFETY_MS));
    } else if (!typers.delete(userId)) {
      return; // was not typing: nothing to redraw
    }
    renderConversations();
    if (conversationId === state.openId) renderTyping();
  }

  function renderTyping() {
    $('typing').textContent = state.openId ? typingText(state.openId) : '';
  }

  let typingIn = null;
  let typingSentAt = 0;
  let typingIdle = null;

  function stopTyping() {
    clearTimeout(typingIdle);
    if (typingIn && state.socket) state.socket.emit('typing_stop', { conversationId: typingIn });
    typingIn = null;
    typingSentAt = 0;
  }

  $('message-input').addEventListener('input', () => {
    if (!state.openId || !state.socket) return;
    if (!$('message-input').value.trim()) {
      stopTyping();
      return;
    }
    const now = Date.now();
    if (typingIn !== state.openId || now - typingSentAt > TYPING_REPEAT_MS) {
      if (typingIn && typingIn !== state.openId) stopTyping();
      typingIn = state.openId;
      typingSentAt = now;
      state.socket.emit('typing_start', { conversationId: typingIn });
    }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
  });

  $('composer').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = $('message-input');
    const content = input.value.trim();
    const conversationId = state.openId;
    if (!content || !conversationId || !state.socket) return;
    setError('composer-error', '');
    stopTyping();
    input.value = '';
    try {
      const ack = await state.socket.timeout(10_000).emitWithAck('send_message', {
        conversationId,
        content,
        clientMessageId: clientMessageId(),
      });
      if (!ack.ok) throw new Error(`${ack.error.code}: ${ack.error.message}`);
      onMessage(ack.message); // the same message may come as new_message too: keyed by id
    } catch (e) {
      if (!input.value) input.value = content;
      setError('composer-error', `Not sent: ${e.message}`);
    }
  });

  // ---------------------------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------------------------

  function start() {
    const params = new URLSearchParams(location.search);
    const fromUrl = params.get('token');
    if (fromUrl) {
      // Out of the address bar and the history at once; kept for this tab only.
      params.delete('token');
      const rest = params.toString();
      history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : '') + location.hash);
      signIn(fromUrl);
      return;
    }
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved);
    else showLogin();
  }

  if (typeof io !== 'function') {
    showLogin('The Socket.IO client did not load (/demo/socket.io.min.js).');
    return;
  }
  start();
})();
