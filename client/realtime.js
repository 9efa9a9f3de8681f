// Browser client for push-to-refetch realtime: the server sends only event keys
// (`{"event": "jobs-updated"}`) and components refetch over REST when their key arrives.
// Plain ES module, no dependencies, no build step.

/** Connection states, in the order a page usually sees them. */
export const STATES = Object.freeze(['connecting', 'open', 'reconnecting', 'closed']);

/** The synthetic key emitted after every reconnect: refetch whatever is on screen. */
export const RESYNC = 'resync';

/**
 * Who holds the socket for this client: `own` (its own socket: sharing off or unavailable),
 * `leader` (holds the one socket of its group of tabs) or `follower` (another tab of the group does).
 */
export const ROLES = Object.freeze(['own', 'leader', 'follower']);

/** What a topic subscription is: waiting for the server's answer, acknowledged, or refused (or ended by the server). */
export const TOPIC_STATES = Object.freeze(['subscribing', 'subscribed', 'refused']);

/** The contract's topic names: `room:42`, `board.7`. */
export const TOPIC_PATTERN = /^[a-z0-9][a-z0-9:._-]{0,127}$/;

/** The rejection of `subscribe(topic)` when the server refuses it (not authorized, a limit reached, a bad name). */
export class TopicRefusedError extends Error {
  constructor(topic) {
    super(`the server refused the subscription to ${topic}`);
    this.name = 'TopicRefusedError';
    this.topic = topic;
  }
}

const PONG = 'pong';
// The server's answers to subscribe / unsubscribe: handled here, never passed to handlers.
const SUBSCRIBED = 'subscribed';
const REFUSED = 'subscribe-refused';
const UNSUBSCRIBED = 'unsubscribed';
const GROUP_PREFIX = 'chalice-realtime/v2'; // lock and BroadcastChannel names: bump if the messages change
// A leader that does not answer a visible follower's check this soon is frozen or hung (a mobile
// browser freezes background tabs, locks held): the follower takes the lock from it.
const LEADER_ANSWER_MS = 5_000;

const DEFAULTS = Object.freeze({
  autoConnect: true,
  coalesceMs: 0,
  baseDelayMs: 500,
  maxDelayMs: 30_000,
  stableAfterMs: 10_000,
  connectTimeoutMs: 15_000,
  // API Gateway closes a connection idle for 10 minutes. The tab holding the socket is often hidden,
  // and browsers throttle hidden tabs' timers: to once a second, and (Chrome, after 5 minutes hidden)
  // to one wake-up a minute. A 5-minute timer then fires within 6 minutes, so a ping still goes out
  // at least every 6 minutes, with 4 minutes to spare for slower wake-ups (CPU budget throttling).
  pingIntervalMs: 5 * 60_000,
  pongTimeoutMs: 10_000,
  // API Gateway closes every connection at 2 hours. 10 minutes early, so a throttled timer (at most a
  // minute late) still rotates before it; every ping also checks the age on the wall clock.
  maxConnectionAgeMs: 110 * 60_000,
  shareConnection: true, // one socket per group of tabs (same origin, url and user) when the browser can
  // After a reconnect, `resync` waits for the answers to the re-subscribes at most this long.
  subscribeTimeoutMs: 10_000,
});

/**
 * Open a self-healing WebSocket that delivers event keys to subscribers.
 *
 * const realtime = createRealtime({
 *   url: 'wss://abc123.execute-api.eu-west-1.amazonaws.com/prod',
 *   getToken: ({ forceRefresh }) => auth.currentUser.getIdToken(forceRefresh),
 * });
 * const off = realtime.on('jobs-updated', (event) => refetchJobs());
 *
 * Handlers receive `{ key, count }`: `count` is how many frames of that key a coalescing
 * window merged (always 1 without coalescing). After every reconnect the client emits
 * `{ key: 'resync' }` to `resync` and `'*'` subscribers, because frames sent while the
 * socket was down are lost and refetching is the exact recovery.
 *
 * Topics (`room:42`): `subscribe(topic)` asks the server for a topic's frames, and
 * `on(key, handler, { topic })` listens to them; a handler without `topic` never sees a topic's
 * frames. Subscriptions are counted per topic and renewed after every reconnect, before `resync`.
 *
 * The tabs of one user share one socket: the clients of the same origin, `url` and user (the
 * `sub` of the token, read only to choose the group) elect a leader with the Web Locks API; the
 * leader holds the socket and relays every key and state over a BroadcastChannel. Each client
 * behaves the same whichever tab holds the socket. `shareConnection: false`, or a browser
 * without Web Locks or BroadcastChannel, gives each client its own socket; `role` says which.
 */
export function createRealtime(options) {
  const config = { ...DEFAULTS, ...options };
  const { url, getToken } = config;
  if (typeof url !== 'string' || !url) throw new TypeError('createRealtime: `url` must be a non-empty string');
  if (typeof getToken !== 'function') throw new TypeError('createRealtime: `getToken` must be a function');

  const WebSocketImpl = config.WebSocket ?? globalThis.WebSocket;
  const timers = config.timers ?? {
    setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
    clearTimeout: (id) => globalThis.clearTimeout(id),
  };
  const random = config.random ?? Math.random;
  const win = 'window' in config ? config.window : globalThis.window;
  const doc = 'document' in config ? config.document : win?.document;
  const onError = config.onError ?? ((error, context) => console.error('realtime:', context, error));
  const now = timers.now ?? (() => Date.now());
  const locks = 'locks' in config ? config.locks : globalThis.navigator?.locks;
  const Channel = 'BroadcastChannel' in config ? config.BroadcastChannel : globalThis.BroadcastChannel;
  // Cleared if the browser refuses the APIs it has (an opaque origin, a storage policy): own socket then.
  let canShare =
    config.shareConnection !== false && typeof locks?.request === 'function' && typeof Channel === 'function';

  const handlers = new Map(); // listener key (see listenerKey) -> Set of subscriptions
  const topics = new Map(); // topic -> what this client wants of it: { refs, state, answered, listeners }
  let socketTopics = new Map(); // own socket or leader: topic -> { state, queue } as asked on the current socket
  let peers = new Map(); // leader: follower tab id -> { topics, abort }
  let resyncPending = null; // the timer while a resync waits for the re-subscribes' answers
  const tabId = newTabId();
  let leaderId = null; // follower: the tab id of the leader it last heard from
  const stateListeners = new Set();
  const roleListeners = new Set();
  const pending = new Map(); // key -> { count, timer } while a coalescing window is open

  let state = 'closed';
  let wanted = false; // connect() called and close() not since
  let socket = null;
  let generation = 0; // bumps whenever the current attempt or socket is abandoned
  let attempt = 0; // failures since the last stable connection: the backoff exponent
  let everOpened = false;
  let forceRefresh = false; // the last attempt was refused before opening: maybe a stale token
  let retryTimer = null;
  let socketTimers = []; // per-socket timers, cleared when the socket goes
  let openedAt = 0; // when the current socket opened (wall clock), for the age check
  let role = null; // own | leader | follower while connected, null when closed
  let group = null; // { user, channel, release, abort } while in a group of tabs
  let joining = 0; // bumps whenever a group join in progress is abandoned
  let leaderCheck = null; // a follower's timer while it waits for the leader to answer a check

  // ------------------------------------------------------------ subscribers

  function on(key, handler, options) {
    if (typeof key !== 'string' || !key) throw new TypeError('on: `key` must be a non-empty string');
    if (typeof handler !== 'function') throw new TypeError('on: `handler` must be a function');
    const topic = options?.topic ?? null;
    if (topic !== null) checkTopic(topic, 'on');
    const slot = listenerKey(topic, key);
    const subscription = { handler, active: true };
    if (!handlers.has(slot)) handlers.set(slot, new Set());
    handlers.get(slot).add(subscription);
    return function unsubscribe() {
      subscription.active = false;
      const set = handlers.get(slot);
      if (!set) return;
      set.delete(subscription);
      if (set.size === 0) handlers.delete(slot);
    };
  }

  function onState(listener) {
    if (typeof listener !== 'function') throw new TypeError('onState: `listener` must be a function');
    const entry = { listener };
    stateListeners.add(entry);
    return () => stateListeners.delete(entry);
  }

  function onRole(listener) {
    if (typeof listener !== 'function') throw new TypeError('onRole: `listener` must be a function');
    const entry = { listener };
    roleListeners.add(entry);
    return () => roleListeners.delete(entry);
  }

  function setState(next) {
    if (next === state) return;
    state = next;
    if (role === 'leader') relay(stateMessage());
    notifyListeners(stateListeners, next, { stateListener: next });
  }

  function setRole(next) {
    if (next === role) return;
    role = next;
    notifyListeners(roleListeners, next, { roleListener: next });
  }

  function notifyListeners(listeners, value, context) {
    for (const entry of [...listeners]) {
      if (!listeners.has(entry)) continue;
      guard(() => entry.listener(value), context);
    }
  }

  function guard(call, context) {
    try {
      const result = call();
      // An async handler's rejection is reported too, not left unhandled.
      if (result && typeof result.then === 'function') result.then(undefined, (error) => onError(error, context));
    } catch (error) {
      onError(error, context);
    }
  }

  function dispatch(key, count, topic = null) {
    const event = Object.freeze(topic === null ? { key, count } : { key, count, topic });
    // Snapshot first: a handler may unsubscribe itself or others while we iterate.
    const targets = [
      ...(handlers.get(listenerKey(topic, key)) ?? []),
      ...(key === '*' ? [] : (handlers.get(listenerKey(topic, '*')) ?? [])),
    ];
    const context = topic === null ? { key } : { key, topic };
    for (const subscription of targets) {
      if (!subscription.active) continue;
      guard(() => subscription.handler(event), context);
    }
  }

  function coalesceWindow(key) {
    const setting = config.coalesceMs;
    if (typeof setting === 'number') return setting;
    return (setting && setting[key]) || 0;
  }

  function deliver(key, topic = null) {
    const windowMs = coalesceWindow(key);
    if (!(windowMs > 0)) return dispatch(key, 1, topic);
    const slot = listenerKey(topic, key);
    const open = pending.get(slot);
    if (open) {
      open.count += 1;
      return;
    }
    const entry = { count: 1, timer: null };
    entry.timer = timers.setTimeout(() => {
      pending.delete(slot);
      dispatch(key, entry.count, topic);
    }, windowMs);
    pending.set(slot, entry);
  }

  // ------------------------------------------------------------ topics

  /**
   * Ask for a topic's frames. The returned promise resolves (to the handle) on `subscribed` and
   * rejects with a TopicRefusedError on `subscribe-refused`; it also is the handle: `topic`,
   * `state`, `onState(listener)` and `unsubscribe()`, usable before it settles.
   */
  function subscribe(topic) {
    checkTopic(topic, 'subscribe');
    let entry = topics.get(topic);
    const isNew = !entry;
    if (isNew) {
      entry = { topic, refs: new Set(), state: 'subscribing', answered: false, listeners: new Set(), releasing: false };
      topics.set(topic, entry);
    }
    entry.releasing = false;
    let settle;
    const promise = new Promise((resolve, reject) => (settle = { resolve, reject }));
    promise.catch(() => {}); // a refusal nobody awaits is not an unhandled rejection: `state` says it
    const ref = { settle, active: true };
    const handle = {
      topic,
      get state() {
        return entry.state;
      },
      onState(listener) {
        if (typeof listener !== 'function') throw new TypeError('onState: `listener` must be a function');
        const own = { listener, ref };
        entry.listeners.add(own);
        return () => entry.listeners.delete(own);
      },
      unsubscribe() {
        if (!ref.active) return;
        ref.active = false;
        entry.refs.delete(ref);
        for (const own of [...entry.listeners]) if (own.ref === ref) entry.listeners.delete(own);
        ref.settle?.reject(abortError(topic));
        ref.settle = null;
        if (entry.refs.size === 0) release(entry);
      },
    };
    ref.handle = handle;
    entry.refs.add(ref);
    if (isNew) topicsChanged();
    else if (entry.state === 'refused') askAgain(entry); // access may have been granted since
    else if (entry.state === 'subscribed') settleRef(ref, entry); // held already: the answer is this one's too
    return Object.defineProperties(promise, Object.getOwnPropertyDescriptors(handle));
  }

  function askAgain(entry) {
    setTopicState(entry.topic, 'subscribing');
    if (role === 'follower') {
      const member = group;
      member?.tabHeld.then(() => {
        if (group === member && role === 'follower') post({ type: 'retry', tab: tabId, topic: entry.topic });
      });
    } else retry(entry.topic);
  }

  /** Own socket or leader: ask once more for a topic the server refused. */
  function retry(topic) {
    const asked = socketTopics.get(topic);
    if (socket === null || state !== 'open' || !asked || asked.state !== 'refused' || asked.queue.length > 0) return;
    asked.state = 'subscribing';
    asked.queue.push('subscribe');
    send({ action: 'subscribe', topic });
  }

  function release(entry) {
    // Let go a moment later: a component that unmounts and mounts again (StrictMode, a re-keyed
    // list) keeps its subscription instead of unsubscribing and subscribing again.
    entry.releasing = true;
    Promise.resolve().then(() => {
      if (!entry.releasing || entry.refs.size > 0 || topics.get(entry.topic) !== entry) return;
      topics.delete(entry.topic);
      topicsChanged();
      checkResync();
    });
  }

  function settleRef(ref, entry) {
    if (!ref.settle) return;
    if (entry.state === 'subscribed') ref.settle.resolve(ref.handle);
    else ref.settle.reject(new TopicRefusedError(entry.topic));
    ref.settle = null;
  }

  /** This client's answer for `topic` (from its socket, or relayed by the leader). */
  function setTopicState(topic, state) {
    const entry = topics.get(topic);
    if (!entry) return;
    const changed = entry.state !== state;
    entry.state = state;
    if (state !== 'subscribing') {
      entry.answered = true;
      for (const ref of [...entry.refs]) settleRef(ref, entry);
    }
    if (changed) {
      for (const own of [...entry.listeners]) {
        if (entry.listeners.has(own)) guard(() => own.listener(state), { topic });
      }
    }
    checkResync();
  }

  /** What this client wants changed: tell the socket, or the leader. */
  function topicsChanged() {
    if (role === 'follower') return postTopics();
    syncTopics();
  }

  /** Every topic this socket serves: this tab's and, for a leader, its followers'. */
  function wantedOnSocket() {
    const union = new Set(topics.keys());
    if (role === 'leader') for (const peer of peers.values()) for (const topic of peer.topics) union.add(topic);
    return union;
  }

  /** Own socket or leader: subscribe what is wanted and not asked yet, unsubscribe what nobody wants. */
  function syncTopics() {
    if (socket === null || state !== 'open' || role === 'follower') return;
    const union = wantedOnSocket();
    for (const topic of union) {
      const asked = socketTopics.get(topic);
      if (asked && asked.state !== 'unsubscribing') {
        // Another tab's topic that this tab now wants too: the socket's answer is this tab's.
        if (topics.get(topic)?.state === 'subscribing' && asked.queue.length === 0) answerFromSocket(topic, asked);
        continue;
      }
      const entry = asked ?? { state: 'subscribing', queue: [] };
      entry.state = 'subscribing';
      entry.queue.push('subscribe');
      socketTopics.set(topic, entry);
      send({ action: 'subscribe', topic });
    }
    for (const [topic, asked] of socketTopics) {
      if (union.has(topic) || asked.state === 'unsubscribing') continue;
      if (asked.state === 'refused' && asked.queue.length === 0) {
        socketTopics.delete(topic); // nothing stored on the server: nothing to unsubscribe
        continue;
      }
      asked.state = 'unsubscribing';
      asked.queue.push('unsubscribe');
      send({ action: 'unsubscribe', topic });
    }
  }

  /** A holder new to a topic the socket has an answer for: `subscribed` holds; a refusal is asked again. */
  function answerFromSocket(topic, asked) {
    if (asked.state === 'subscribed') publishTopicState(topic, 'subscribed');
    else if (asked.state === 'refused') retry(topic);
  }

  function send(message) {
    try {
      socket.send(JSON.stringify(message));
    } catch (error) {
      // The socket is closing: its close event reconnects, and the new socket asks again.
      onError(error, { topic: message.topic });
    }
  }

  /** The server answered a subscribe or an unsubscribe, or ended a subscription itself. */
  function topicAnswer(topic, key) {
    const asked = socketTopics.get(topic);
    if (!asked) return;
    if (key === UNSUBSCRIBED) {
      const mine = asked.queue.indexOf('unsubscribe');
      if (mine === 0 || asked.state === 'unsubscribing') {
        if (mine >= 0) asked.queue.splice(mine, 1);
        if (asked.queue.length === 0 && asked.state === 'unsubscribing') socketTopics.delete(topic);
        return;
      }
      // Not asked for: the server ended the subscription (access revoked). Refused until asked again.
      asked.state = 'refused';
      return publishTopicState(topic, 'refused');
    }
    const mine = asked.queue.indexOf('subscribe');
    if (mine >= 0) asked.queue.splice(mine, 1);
    if (asked.queue.length > 0) return; // a later request of ours is still unanswered: its answer counts
    asked.state = key === SUBSCRIBED ? 'subscribed' : 'refused';
    publishTopicState(topic, asked.state);
  }

  function publishTopicState(topic, topicState) {
    setTopicState(topic, topicState);
    const to = peersWanting(topic);
    if (to.length > 0) post({ type: 'topic-state', topic, state: topicState, to });
  }

  /** A topic frame: to this tab's handlers if it wants the topic, and to the followers that do. */
  function deliverTopicFrame(key, topic) {
    const to = peersWanting(topic);
    if (to.length > 0) post({ type: 'event', key, topic, to });
    if (topics.has(topic)) deliver(key, topic);
  }

  function peersWanting(topic) {
    if (role !== 'leader') return [];
    return [...peers].filter(([, peer]) => peer.topics.has(topic)).map(([id]) => id);
  }

  /** After a reconnect: `resync` once every wanted topic has its fresh answer (or the wait is over). */
  function resyncAfterTopics() {
    for (const entry of topics.values()) entry.answered = false;
    if (resyncPending !== null) timers.clearTimeout(resyncPending);
    resyncPending = timers.setTimeout(() => {
      resyncPending = null;
      dispatch(RESYNC, 1);
    }, config.subscribeTimeoutMs);
    checkResync();
  }

  function checkResync() {
    if (resyncPending === null) return;
    for (const entry of topics.values()) if (!entry.answered) return;
    cancelResync();
    dispatch(RESYNC, 1);
  }

  function cancelResync() {
    if (resyncPending !== null) timers.clearTimeout(resyncPending);
    resyncPending = null;
  }

  // ------------------------------------------------------------ topics across tabs

  /** Follower: tell the leader every topic this tab wants (the whole set: idempotent). */
  function postTopics() {
    const member = group;
    if (!member || role !== 'follower') return;
    // Only once this tab holds its tab lock: the leader takes a free tab lock for a tab that is gone.
    member.tabHeld.then(() => {
      if (group === member && role === 'follower') post({ type: 'topics', tab: tabId, topics: [...topics.keys()] });
    });
  }

  /** Leader: a follower's topics. Its tab lock, once the leader gets it, says the tab is gone. */
  function peerTopics(id, list) {
    if (typeof id !== 'string' || !Array.isArray(list)) return;
    let peer = peers.get(id);
    if (!peer) {
      peer = { topics: new Set(), abort: typeof AbortController === 'function' ? new AbortController() : null };
      peers.set(id, peer);
      watchPeer(id, peer);
    }
    const before = peer.topics;
    peer.topics = new Set(list.filter((topic) => typeof topic === 'string' && TOPIC_PATTERN.test(topic)));
    const known = new Map([...socketTopics].filter(([, asked]) => asked.queue.length === 0));
    syncTopics();
    // What the socket already knows, the follower learns now; a topic it newly wants that was refused
    // (for another tab) is asked again, as for a new holder in one tab.
    for (const topic of peer.topics) {
      const asked = known.get(topic);
      if (!asked || asked.state === 'unsubscribing') continue;
      if (asked.state === 'refused' && !before.has(topic)) retry(topic);
      else post({ type: 'topic-state', topic, state: asked.state, to: [id] });
    }
  }

  function watchPeer(id, peer) {
    const member = group;
    const gone = () => {
      if (peers.get(id) !== peer) return;
      peers.delete(id);
      syncTopics();
    };
    try {
      locks
        .request(tabLockName(member.name, id), peer.abort ? { signal: peer.abort.signal } : {}, () => {
          if (group === member) gone();
        })
        .catch(() => {});
    } catch (error) {
      onError(error, { share: true });
    }
  }

  function forgetPeers() {
    for (const peer of peers.values()) peer.abort?.abort();
    peers = new Map();
  }

  // ------------------------------------------------------------ connection

  function connect() {
    if (wanted) return;
    wanted = true;
    addPageListeners();
    // A client that was open before, then closed, may have missed frames: resync on its next open.
    setState(everOpened ? 'reconnecting' : 'connecting');
    if (canShare) return join();
    setRole('own');
    openSocket();
  }

  function close() {
    wanted = false;
    removePageListeners();
    leaveGroup(); // a leader's lock passes to another tab of the group, which opens the socket
    abandonSocket(1000, 'client closed');
    cancelRetry();
    for (const entry of pending.values()) timers.clearTimeout(entry.timer);
    pending.clear();
    cancelResync();
    setRole(null);
    setState('closed');
  }

  async function openSocket(prefetched) {
    const mine = ++generation;
    const refresh = forceRefresh;
    let token = prefetched;
    if (token === undefined || refresh) {
      try {
        token = await getToken({ forceRefresh: refresh });
      } catch (error) {
        if (mine !== generation) return;
        onError(error, { getToken: true });
        return scheduleRetry();
      }
    }
    if (mine !== generation || !wanted) return;
    if (typeof token !== 'string' || !token) {
      onError(new TypeError('getToken did not return a token'), { getToken: true });
      return scheduleRetry();
    }
    // Another user signed in: this socket would carry their frames to this group's tabs.
    if (canShare && userOf(token) !== (group?.user ?? null)) return changeUser(token);

    let ws;
    try {
      // The token rides in Sec-WebSocket-Protocol ("bearer, <token>"), never in the URL (logs, history).
      ws = new WebSocketImpl(url, ['bearer', token]);
    } catch (error) {
      onError(error, { connect: true });
      return scheduleRetry();
    }
    socket = ws;
    let opened = false;
    try {
      ws.binaryType = 'arraybuffer';
    } catch {
      // Not every WebSocket implementation lets it be set; text frames need none of it.
    }
    const handshakeTimer = later(() => {
      // A handshake that hangs (a black-holed network) counts as a refusal.
      drop(ws, { refused: true });
    }, config.connectTimeoutMs);

    ws.onopen = () => {
      if (socket !== ws) return;
      opened = true;
      openedAt = now();
      timers.clearTimeout(handshakeTimer);
      forceRefresh = false;
      const isReconnect = state === 'reconnecting';
      everOpened = true;
      setState('open');
      later(() => {
        attempt = 0; // stable long enough: the next drop starts the backoff over
      }, config.stableAfterMs);
      schedulePing(ws);
      later(() => replace(ws), config.maxConnectionAgeMs);
      syncTopics(); // a new socket has no subscriptions: ask for every topic still wanted
      if (isReconnect) resyncAfterTopics();
    };
    ws.onmessage = (message) => {
      if (socket !== ws) return;
      const frame = frameOf(message.data);
      if (frame === null) return;
      const { key, topic } = frame;
      if (topic !== null) {
        if (key === SUBSCRIBED || key === REFUSED || key === UNSUBSCRIBED) return topicAnswer(topic, key);
        return deliverTopicFrame(key, topic);
      }
      if (key === PONG) return pongReceived();
      // Raw keys, before coalescing: each follower coalesces with its own settings.
      relay({ type: 'event', key });
      deliver(key);
    };
    ws.onerror = () => {
      // Always followed by close; the browser tells nothing more (not even the HTTP status).
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      // Browsers report a refused upgrade (401/403) only as a close before open.
      drop(ws, { refused: !opened });
    };
  }

  let awaitingPong = null; // the pong-timeout timer while a ping is unanswered
  let pingTimer = null;

  function schedulePing(ws) {
    // One ping timer per socket: an extra ping (page became visible) must not start a second chain.
    if (pingTimer !== null) timers.clearTimeout(pingTimer);
    pingTimer = timers.setTimeout(() => {
      pingTimer = null;
      ping(ws);
    }, config.pingIntervalMs);
  }

  function ping(ws) {
    if (socket !== ws || awaitingPong) return;
    // The age timer may have been held back (a throttled or suspended page): the clock decides.
    if (now() - openedAt >= config.maxConnectionAgeMs) return replace(ws);
    if (pingTimer !== null) timers.clearTimeout(pingTimer);
    pingTimer = null;
    try {
      ws.send(JSON.stringify({ action: 'ping' }));
    } catch (error) {
      onError(error, { ping: true });
      return drop(ws, { refused: false });
    }
    awaitingPong = later(() => {
      awaitingPong = null;
      drop(ws, { refused: false }); // no pong in time: the connection is dead even if not closed
    }, config.pongTimeoutMs);
  }

  function pongReceived() {
    if (!awaitingPong) return;
    timers.clearTimeout(awaitingPong);
    awaitingPong = null;
    schedulePing(socket);
  }

  function replace(ws) {
    // Before API Gateway's 2-hour limit: reconnect now, without backoff, and resync.
    if (socket !== ws) return;
    abandonSocket(1000, 'maximum connection age');
    setState('reconnecting');
    openSocket();
  }

  function drop(ws, { refused }) {
    if (socket !== ws) return;
    abandonSocket(4000, refused ? 'handshake failed' : 'connection lost');
    if (refused) forceRefresh = true;
    if (!wanted) return;
    setState('reconnecting');
    scheduleRetry();
  }

  let retryAction = null; // what the retry timer runs: open a socket, or join a group

  function scheduleRetry(action = openSocket) {
    if (!wanted) return;
    setState('reconnecting');
    cancelRetry();
    // Full jitter: uniform in [0, min(cap, base * 2^attempt)], so many clients spread out.
    const ceiling = Math.min(config.maxDelayMs, config.baseDelayMs * 2 ** attempt);
    attempt += 1;
    retryAction = action;
    retryTimer = timers.setTimeout(() => {
      retryTimer = null;
      action();
    }, random() * ceiling);
  }

  function cancelRetry() {
    if (retryTimer !== null) timers.clearTimeout(retryTimer);
    retryTimer = null;
  }

  function later(fn, ms) {
    const id = timers.setTimeout(fn, ms);
    socketTimers.push(id);
    return id;
  }

  function abandonSocket(code, reason) {
    generation += 1; // an attempt still waiting for its token is abandoned too
    for (const id of socketTimers) timers.clearTimeout(id);
    socketTimers = [];
    if (pingTimer !== null) timers.clearTimeout(pingTimer);
    pingTimer = null;
    awaitingPong = null;
    socketTopics = new Map();
    const ws = socket;
    socket = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch {
      // Closing a socket that never connected may throw in some implementations; it is gone either way.
    }
  }

  // ------------------------------------------------------------ sharing one socket between tabs

  /** Find this tab's group from the token's user, then lead it or follow its leader. */
  async function join(prefetched) {
    const mine = ++joining;
    let token = prefetched;
    if (token === undefined) {
      try {
        token = await getToken({ forceRefresh: false });
      } catch (error) {
        if (mine !== joining || !wanted) return;
        onError(error, { getToken: true });
        return scheduleRetry(join);
      }
    }
    if (mine !== joining || !wanted) return;
    const user = userOf(token);
    // No user to scope by (not a JWT with a `sub`): sharing could mix users, so this tab keeps its own socket.
    if (user === null) {
      setRole('own');
      return openSocket(token);
    }
    enterGroup(user, token);
  }

  function enterGroup(user, token) {
    const name = `${GROUP_PREFIX} ${url} ${user}`;
    let channel;
    try {
      channel = new Channel(name);
    } catch (error) {
      return shareFailed(error, token);
    }
    let release;
    const held = new Promise((resolve) => (release = resolve));
    const abort = typeof AbortController === 'function' ? new AbortController() : null;
    const member = { user, name, channel, release, abort, leading: false, tabHeld: null };
    group = member;
    // This tab's own lock, held while it is in the group: a leader waiting for it learns the tab is gone.
    member.tabHeld = new Promise((granted) => {
      try {
        locks
          .request(tabLockName(name, tabId), () => {
            granted();
            return held;
          })
          .catch(() => granted());
      } catch {
        granted();
      }
    });
    channel.onmessage = (message) => {
      if (group === member) onGroupMessage(message.data);
    };
    // Held until the client closes or the tab goes (closed, crashed, reloaded): the browser releases it then.
    const lead = (first) => {
      if (group !== member || !wanted) return undefined;
      member.leading = true;
      becomeLeader(first);
      return held;
    };
    const request = (options, callback) => {
      let granted = false;
      const failed = (error) => {
        if (group !== member) return;
        if (error?.name !== 'AbortError') return shareFailed(error);
        // The lock this tab held was taken by a tab that found it unresponsive, which holds the socket
        // now. (A queued request this tab withdrew rejects with AbortError too, and changes nothing.)
        if (granted && member.leading) stepDown();
      };
      try {
        locks
          .request(name, options, (lock) => {
            granted = Boolean(lock);
            return callback(lock);
          })
          .catch(failed);
      } catch (error) {
        failed(error);
      }
    };
    member.takeOver = () => {
      member.abort?.abort(); // the queued request would be granted to this tab a second time
      request({ steal: true }, () => lead(undefined));
    };
    request({ ifAvailable: true }, (lock) => {
      if (lock) return lead(token);
      if (group !== member) return undefined;
      becomeFollower();
      // Queued behind the leader: granted when its tab closes, crashes or reloads.
      request(abort ? { signal: abort.signal } : {}, () => lead(undefined));
      return undefined;
    });
  }

  function becomeLeader(token) {
    setRole('leader');
    forgetPeers(); // the followers tell the new leader their topics when they hear from it
    // The previous leader's socket is gone and frames may have been lost since: this is a reconnect.
    if (state === 'open') setState('reconnecting');
    relay(stateMessage());
    attempt = 0;
    openSocket(token);
  }

  function becomeFollower() {
    setRole('follower');
    leaderId = null;
    post({ type: 'hello' }); // the leader answers with its state
  }

  function stateMessage() {
    return { type: 'state', state, leader: tabId };
  }

  function onGroupMessage(message) {
    if (message === null || typeof message !== 'object') return;
    if (role === 'leader') {
      if (message.type === 'hello' || message.type === 'check') post(stateMessage());
      if (message.type === 'check') checkConnection();
      if (message.type === 'topics') peerTopics(message.tab, message.topics);
      if (message.type === 'retry' && peers.get(message.tab)?.topics.has(message.topic)) retry(message.topic);
      return;
    }
    if (role !== 'follower') return;
    cancelLeaderCheck(); // the leader is alive
    const forMe = !Array.isArray(message.to) || message.to.includes(tabId);
    if (message.type === 'state' && STATES.includes(message.state) && message.state !== 'closed') {
      if (message.leader !== leaderId) {
        leaderId = message.leader; // a new leader knows nothing of this tab's topics yet
        if (topics.size > 0) postTopics();
      }
      followState(message.state);
    } else if (message.type === 'event' && typeof message.key === 'string' && message.key) {
      if (message.topic === undefined) deliver(message.key);
      else if (forMe && topics.has(message.topic)) deliver(message.key, message.topic);
    } else if (message.type === 'topic-state' && forMe && TOPIC_STATES.includes(message.state)) {
      if (message.state !== 'subscribing') setTopicState(message.topic, message.state);
    }
  }

  function followState(next) {
    // The same rule as with an own socket: reconnecting -> open means frames may have been lost.
    const isReconnect = state === 'reconnecting' && next === 'open';
    setState(next);
    if (next !== 'open') return;
    everOpened = true;
    if (isReconnect) resyncAfterTopics();
  }

  /** The leader tells the group; a follower's messages go to the leader through `post`. */
  function relay(message) {
    if (role === 'leader' && group) post(message);
  }

  function post(message) {
    try {
      group?.channel.postMessage(message);
    } catch (error) {
      onError(error, { share: true });
    }
  }

  function checkLeader() {
    post({ type: 'check' }); // the leader answers with its state, and pings its socket
    if (leaderCheck !== null) return;
    const member = group;
    leaderCheck = timers.setTimeout(() => {
      leaderCheck = null;
      if (group === member && wanted && role === 'follower') member.takeOver();
    }, LEADER_ANSWER_MS);
  }

  function cancelLeaderCheck() {
    if (leaderCheck !== null) timers.clearTimeout(leaderCheck);
    leaderCheck = null;
  }

  function stepDown() {
    // This tab was frozen or hung and another took the group over: give the socket up and follow.
    leaveGroup();
    abandonSocket(1000, 'another tab leads');
    cancelRetry();
    if (state === 'open') setState('reconnecting'); // frames may have been missed while frozen
    join();
  }

  function leaveGroup() {
    joining += 1; // a join waiting for its token is abandoned
    cancelLeaderCheck();
    forgetPeers();
    const member = group;
    if (!member) return;
    group = null;
    member.abort?.abort(); // a queued lock request is withdrawn
    member.release(); // a held lock passes to the next tab of the group
    try {
      member.channel.close();
    } catch {
      // Already closed: nothing more to release.
    }
  }

  function changeUser(token) {
    // Signed in as someone else: leave this user's group (and socket) for the new user's.
    leaveGroup();
    abandonSocket(1000, 'user changed');
    cancelRetry();
    if (state === 'open') setState('reconnecting');
    join(token);
  }

  async function verifyUser() {
    const member = group;
    let token;
    try {
      token = await getToken({ forceRefresh: false });
    } catch (error) {
      onError(error, { getToken: true });
      return;
    }
    if (group !== member || !wanted || role !== 'follower') return;
    if (typeof token === 'string' && userOf(token) !== member.user) changeUser(token);
  }

  function shareFailed(error, token) {
    // The browser has the APIs but refused them (an opaque origin, a storage policy): own socket.
    onError(error, { share: true });
    canShare = false;
    if (!wanted) return;
    const wasLeader = role === 'leader';
    leaveGroup();
    setRole('own');
    if (!wasLeader || socket === null) openSocket(token);
  }

  // ------------------------------------------------------------ page events

  function checkConnection() {
    if (socket !== null && state === 'open') return ping(socket); // it may have died while the laptop slept
    reconnectNow();
  }

  function reconnectNow() {
    // Only while waiting out a backoff: an attempt in flight or an open socket is left alone.
    if (!wanted || socket !== null || retryTimer === null) return;
    cancelRetry();
    retryAction();
  }

  function onOnline() {
    // Every tab of the browser hears `online`: the leader's own listener reconnects it.
    if (role !== 'follower') reconnectNow();
  }

  function onVisibility() {
    if (doc && doc.visibilityState !== 'visible') return;
    if (role === 'follower') {
      checkLeader(); // the leader may be a hidden tab whose socket died unnoticed, or a frozen tab
      return verifyUser(); // the user may have signed in as someone else meanwhile
    }
    checkConnection();
  }

  function addPageListeners() {
    win?.addEventListener?.('online', onOnline);
    doc?.addEventListener?.('visibilitychange', onVisibility);
  }

  function removePageListeners() {
    win?.removeEventListener?.('online', onOnline);
    doc?.removeEventListener?.('visibilitychange', onVisibility);
  }

  const client = {
    on,
    subscribe,
    onState,
    onRole,
    connect,
    close,
    get state() {
      return state;
    },
    get role() {
      return role;
    },
    get topics() {
      return [...topics.keys()];
    },
  };
  if (config.autoConnect) connect();
  return client;
}

/** The `sub` of a JWT's payload, or null. Read only to choose the group of tabs: never trusted. */
function userOf(token) {
  if (typeof token !== 'string') return null;
  const payload = token.split('.')[1];
  if (!payload || typeof atob !== 'function') return null;
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
    const claims = JSON.parse(json);
    return typeof claims?.sub === 'string' && claims.sub ? claims.sub : null;
  } catch {
    return null;
  }
}

function checkTopic(topic, caller) {
  if (typeof topic !== 'string' || !TOPIC_PATTERN.test(topic)) {
    throw new TypeError(`${caller}: \`topic\` must match ${TOPIC_PATTERN} (got ${JSON.stringify(topic)})`);
  }
}

/** Handlers are stored per key, and per topic and key for a topic's frames. */
function listenerKey(topic, key) {
  return topic === null ? key : `${topic} ${key}`; // neither a key nor a topic has a space
}

function abortError(topic) {
  const error = new Error(`unsubscribed from ${topic} before the server answered`);
  error.name = 'AbortError';
  return error;
}

function newTabId() {
  const uuid = globalThis.crypto?.randomUUID?.();
  return uuid ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function tabLockName(groupName, id) {
  return `${groupName} tab ${id}`;
}

const decoder = typeof TextDecoder === 'function' ? new TextDecoder() : null;

/** `{ key, topic }` of a `{"event": "<key>"}` or `{"event": "<key>", "topic": "<topic>"}` frame, or null. */
function frameOf(data) {
  let text = data;
  if (typeof data !== 'string') {
    // The local gateway may send binary frames; API Gateway sends text.
    if (!decoder || !(data instanceof ArrayBuffer || ArrayBuffer.isView(data))) return null;
    text = decoder.decode(data);
  }
  let frame;
  try {
    frame = JSON.parse(text);
  } catch {
    return null;
  }
  if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) return null;
  if (typeof frame.event !== 'string' || !frame.event) return null;
  if (frame.topic === undefined) return { key: frame.event, topic: null };
  const valid = typeof frame.topic === 'string' && TOPIC_PATTERN.test(frame.topic);
  return valid ? { key: frame.event, topic: frame.topic } : null;
}
