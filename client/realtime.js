// Browser client for push-to-refetch realtime: the server sends only event keys
// (`{"event": "jobs-updated"}`) and components refetch over REST when their key arrives.
// Plain ES module, no dependencies, no build step.

/** Connection states, in the order a page usually sees them. */
export const STATES = Object.freeze(['connecting', 'open', 'reconnecting', 'closed']);

/** The synthetic key emitted after every reconnect: refetch whatever is on screen. */
export const RESYNC = 'resync';

const PONG = 'pong';

const DEFAULTS = Object.freeze({
  autoConnect: true,
  coalesceMs: 0,
  baseDelayMs: 500,
  maxDelayMs: 30_000,
  stableAfterMs: 10_000,
  connectTimeoutMs: 15_000,
  pingIntervalMs: 5 * 60_000, // API Gateway closes connections idle for 10 minutes.
  pongTimeoutMs: 10_000,
  maxConnectionAgeMs: 110 * 60_000, // API Gateway closes every connection at 2 hours.
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

  const handlers = new Map(); // key -> Set of subscriptions
  const stateListeners = new Set();
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

  // ------------------------------------------------------------ subscribers

  function on(key, handler) {
    if (typeof key !== 'string' || !key) throw new TypeError('on: `key` must be a non-empty string');
    if (typeof handler !== 'function') throw new TypeError('on: `handler` must be a function');
    const subscription = { handler, active: true };
    if (!handlers.has(key)) handlers.set(key, new Set());
    handlers.get(key).add(subscription);
    return function unsubscribe() {
      subscription.active = false;
      const set = handlers.get(key);
      if (!set) return;
      set.delete(subscription);
      if (set.size === 0) handlers.delete(key);
    };
  }

  function onState(listener) {
    if (typeof listener !== 'function') throw new TypeError('onState: `listener` must be a function');
    const entry = { listener };
    stateListeners.add(entry);
    return () => stateListeners.delete(entry);
  }

  function setState(next) {
    if (next === state) return;
    state = next;
    for (const entry of [...stateListeners]) {
      if (!stateListeners.has(entry)) continue;
      guard(() => entry.listener(next), { stateListener: next });
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

  function dispatch(key, count) {
    const event = Object.freeze({ key, count });
    // Snapshot first: a handler may unsubscribe itself or others while we iterate.
    const targets = [...(handlers.get(key) ?? []), ...(key === '*' ? [] : (handlers.get('*') ?? []))];
    for (const subscription of targets) {
      if (!subscription.active) continue;
      guard(() => subscription.handler(event), { key });
    }
  }

  function coalesceWindow(key) {
    const setting = config.coalesceMs;
    if (typeof setting === 'number') return setting;
    return (setting && setting[key]) || 0;
  }

  function deliver(key) {
    const windowMs = coalesceWindow(key);
    if (!(windowMs > 0)) return dispatch(key, 1);
    const open = pending.get(key);
    if (open) {
      open.count += 1;
      return;
    }
    const entry = { count: 1, timer: null };
    entry.timer = timers.setTimeout(() => {
      pending.delete(key);
      dispatch(key, entry.count);
    }, windowMs);
    pending.set(key, entry);
  }

  // ------------------------------------------------------------ connection

  function connect() {
    if (wanted) return;
    wanted = true;
    addPageListeners();
    // A client that was open before, then closed, may have missed frames: resync on its next open.
    setState(everOpened ? 'reconnecting' : 'connecting');
    openSocket();
  }

  function close() {
    wanted = false;
    removePageListeners();
    abandonSocket(1000, 'client closed');
    cancelRetry();
    for (const entry of pending.values()) timers.clearTimeout(entry.timer);
    pending.clear();
    setState('closed');
  }

  async function openSocket() {
    const mine = ++generation;
    const refresh = forceRefresh;
    let token;
    try {
      token = await getToken({ forceRefresh: refresh });
    } catch (error) {
      if (mine !== generation) return;
      onError(error, { getToken: true });
      return scheduleRetry();
    }
    if (mine !== generation || !wanted) return;
    if (typeof token !== 'string' || !token) {
      onError(new TypeError('getToken did not return a token'), { getToken: true });
      return scheduleRetry();
    }

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
      if (isReconnect) dispatch(RESYNC, 1);
    };
    ws.onmessage = (message) => {
      if (socket !== ws) return;
      const key = eventKeyOf(message.data);
      if (key === null) return;
      if (key === PONG) return pongReceived();
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

  function scheduleRetry() {
    if (!wanted) return;
    setState('reconnecting');
    cancelRetry();
    // Full jitter: uniform in [0, min(cap, base * 2^attempt)], so many clients spread out.
    const ceiling = Math.min(config.maxDelayMs, config.baseDelayMs * 2 ** attempt);
    attempt += 1;
    retryTimer = timers.setTimeout(() => {
      retryTimer = null;
      openSocket();
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

  // ------------------------------------------------------------ page events

  function reconnectNow() {
    // Only while waiting out a backoff: an attempt in flight or an open socket is left alone.
    if (!wanted || socket !== null || retryTimer === null) return;
    cancelRetry();
    openSocket();
  }

  function onOnline() {
    reconnectNow();
  }

  function onVisibility() {
    if (doc && doc.visibilityState !== 'visible') return;
    if (socket !== null && state === 'open') return ping(socket); // it may have died while the laptop slept
    reconnectNow();
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
    onState,
    connect,
    close,
    get state() {
      return state;
    },
  };
  if (config.autoConnect) connect();
  return client;
}

const decoder = typeof TextDecoder === 'function' ? new TextDecoder() : null;

/** The key of a `{"event": "<key>"}` frame, or null for anything else. */
function eventKeyOf(data) {
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
  return typeof frame.event === 'string' && frame.event ? frame.event : null;
}
