// Test doubles for client/realtime.js: a WebSocket the test drives by hand, a virtual clock,
// and a page (window + document) that can go online and change visibility.

/** A virtual clock: timers run only when the test calls `advance`. */
export class FakeClock {
  constructor() {
    this.now = 0;
    this.nextId = 1;
    this.timers = new Map(); // id -> { at, fn, delay }
  }

  setTimeout = (fn, delay = 0) => {
    const id = this.nextId++;
    this.timers.set(id, { at: this.now + Math.max(0, delay), fn, delay });
    return id;
  };

  clearTimeout = (id) => {
    this.timers.delete(id);
  };

  /** Delays of the timers still pending, in creation order. */
  pendingDelays() {
    return [...this.timers.values()].map((timer) => timer.delay);
  }

  /** Run every timer due within `ms`, in time order, then settle promises between timers. */
  async advance(ms) {
    const until = this.now + ms;
    for (;;) {
      let nextId = null;
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= until && (next === null || timer.at < next.at)) {
          nextId = id;
          next = timer;
        }
      }
      if (next === null) break;
      this.timers.delete(nextId);
      this.now = next.at;
      next.fn();
      await settle();
    }
    this.now = until;
    await settle();
  }
}

/** Let pending promise callbacks (an async getToken) run. */
export async function settle() {
  for (let i = 0; i < 10; i += 1) await Promise.resolve();
}

/** A WebSocket class whose instances the test opens, refuses, feeds and closes. */
export function fakeWebSocketClass() {
  const sockets = [];
  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;

    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = FakeWebSocket.CONNECTING;
      this.sent = [];
      this.closedByClient = null;
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      sockets.push(this);
    }

    send(data) {
      if (this.readyState !== FakeWebSocket.OPEN) throw new Error('InvalidStateError: not open');
      this.sent.push(JSON.parse(data));
    }

    close(code, reason) {
      this.closedByClient = { code, reason };
      this.readyState = FakeWebSocket.CLOSED;
    }

    // ---- what the server (the test) does

    accept() {
      this.readyState = FakeWebSocket.OPEN;
      this.onopen?.({ type: 'open' });
    }

    /** A refused upgrade (401/403) as browsers report it: error, then close 1006, never open. */
    refuse() {
      this.readyState = FakeWebSocket.CLOSED;
      this.onerror?.({ type: 'error' });
      this.onclose?.({ type: 'close', code: 1006, reason: '', wasClean: false });
    }

    receive(data) {
      this.onmessage?.({ type: 'message', data: typeof data === 'string' ? data : JSON.stringify(data) });
    }

    drop(code = 1006) {
      this.readyState = FakeWebSocket.CLOSED;
      this.onclose?.({ type: 'close', code, reason: '', wasClean: code !== 1006 });
    }
  }
  return { FakeWebSocket, sockets };
}

/** A minimal event target with `addEventListener` / `dispatch(type)`. */
export class FakeEventTarget {
  constructor(props = {}) {
    Object.assign(this, props);
    this.listeners = new Map();
  }

  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }

  removeEventListener(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }

  dispatch(type) {
    for (const fn of [...(this.listeners.get(type) ?? [])]) fn({ type });
  }

  listenerCount() {
    let count = 0;
    for (const set of this.listeners.values()) count += set.size;
    return count;
  }
}

/**
 * Everything createRealtime needs, faked: `harness.client`, `harness.sockets` (made by
 * `harness.FakeWebSocket`), `harness.clock`,
 * `harness.tokenCalls`, `harness.errors`, `harness.page` / `harness.document`.
 */
export function harness(options = {}) {
  const clock = new FakeClock();
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const document = new FakeEventTarget({ visibilityState: 'visible' });
  const page = new FakeEventTarget({ document });
  const tokenCalls = [];
  const errors = [];
  const states = [];
  let tokenNumber = 0;
  const randomValues = options.randomValues ? [...options.randomValues] : null;
  const random = options.random ?? (() => (randomValues && randomValues.length ? randomValues.shift() : 0.5));
  return {
    FakeWebSocket,
    clock,
    sockets,
    page,
    document,
    tokenCalls,
    errors,
    states,
    get last() {
      return sockets[sockets.length - 1];
    },
    create(createRealtime, extra = {}) {
      const client = createRealtime({
        url: 'wss://example.test/ws',
        getToken: async (hint) => {
          tokenCalls.push(hint);
          tokenNumber += 1;
          return `token-${tokenNumber}`;
        },
        WebSocket: FakeWebSocket,
        timers: { setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout },
        random,
        window: page,
        onError: (error, context) => errors.push({ error, context }),
        autoConnect: false,
        ...extra,
      });
      client.onState((state) => states.push(state));
      this.client = client;
      return client;
    },
  };
}
