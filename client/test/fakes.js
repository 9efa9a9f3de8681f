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
        // A browser without Web Locks or BroadcastChannel: each client has its own socket.
        locks: null,
        BroadcastChannel: null,
        ...extra,
      });
      client.onState((state) => states.push(state));
      this.client = client;
      return client;
    },
  };
}

/**
 * One browser's Web Locks and BroadcastChannel, shared by the tabs the test opens, as a real
 * browser shares them between the tabs of one origin. `crash(tab)` ends a tab the way closing,
 * crashing or reloading does: its locks are released and its channels closed, with no goodbye.
 */
export class FakeBrowser {
  constructor() {
    this.holders = new Map(); // lock name -> the granted request
    this.queues = new Map(); // lock name -> requests waiting, in order
    this.channels = new Set();
    this.posted = []; // every message posted on any channel: { tab, name, data }
    this.frozen = new Map(); // tab -> deliveries held until it thaws
  }

  /** A frozen tab (a mobile browser's background tab) runs nothing: its messages wait for `thaw`. */
  freeze(tab) {
    if (!this.frozen.has(tab)) this.frozen.set(tab, []);
  }

  thaw(tab) {
    const held = this.frozen.get(tab) ?? [];
    this.frozen.delete(tab);
    for (const deliver of held) queueMicrotask(deliver);
  }

  /** A LockManager (`navigator.locks`) for `tab`. */
  locksFor(tab) {
    return { request: (name, options, callback) => this.#request(tab, name, options, callback) };
  }

  /** A BroadcastChannel class for `tab`. */
  channelClassFor(tab) {
    const browser = this;
    return class FakeBroadcastChannel {
      constructor(name) {
        this.name = name;
        this.tab = tab;
        this.onmessage = null;
        browser.channels.add(this);
      }

      postMessage(data) {
        if (!browser.channels.has(this)) throw new Error('InvalidStateError: channel closed');
        const copy = structuredClone(data);
        browser.posted.push({ tab, name: this.name, data: copy });
        for (const other of browser.channels) {
          if (other === this || other.name !== this.name) continue;
          // Delivered later and in order, as a task per message; never to a closed channel.
          const deliver = () => {
            if (browser.channels.has(other)) other.onmessage?.({ data: structuredClone(copy) });
          };
          const held = browser.frozen.get(other.tab);
          if (held) held.push(deliver);
          else queueMicrotask(deliver);
        }
      }

      close() {
        browser.channels.delete(this);
      }
    };
  }

  /** The tab holding lock `name`, or null. */
  holderOf(name) {
    return this.holders.get(name)?.tab ?? null;
  }

  /** Names of the locks held, with their holders. */
  heldLocks() {
    return [...this.holders.entries()].map(([name, request]) => ({ name, tab: request.tab }));
  }

  crash(tab) {
    for (const channel of [...this.channels]) if (channel.tab === tab) this.channels.delete(channel);
    for (const [name, queue] of this.queues) this.queues.set(name, queue.filter((request) => request.tab !== tab));
    for (const [name, request] of [...this.holders]) {
      if (request.tab !== tab) continue;
      this.holders.delete(name);
      this.#grant(name);
    }
  }

  #request(tab, name, options, callback) {
    if (typeof options === 'function') [callback, options] = [options, {}];
    return new Promise((resolve, reject) => {
      const request = { tab, name, callback, resolve, reject };
      const { signal } = options;
      if (signal?.aborted) return reject(new DOMException('aborted', 'AbortError'));
      const queue = this.queues.get(name) ?? [];
      this.queues.set(name, queue);
      if (options.steal) {
        // The holder loses the lock at once (its request rejects with AbortError); the thief is next.
        const holder = this.holders.get(name);
        this.holders.delete(name);
        holder?.reject(new DOMException('the lock was stolen', 'AbortError'));
        queue.unshift(request);
        return this.#grant(name);
      }
      if (options.ifAvailable && (this.holders.has(name) || queue.length > 0)) {
        queueMicrotask(() => Promise.resolve().then(() => callback(null)).then(resolve, reject));
        return;
      }
      signal?.addEventListener('abort', () => {
        const waiting = this.queues.get(name) ?? [];
        if (!waiting.includes(request)) return; // already granted: aborting changes nothing
        this.queues.set(name, waiting.filter((other) => other !== request));
        // Late, as from a browser's lock manager in another process: after a steal made meanwhile.
        settle().then(() => reject(new DOMException('aborted', 'AbortError')));
      });
      queue.push(request);
      this.#grant(name);
    });
  }

  #grant(name) {
    if (this.holders.has(name)) return;
    const queue = this.queues.get(name) ?? [];
    const next = queue.shift();
    if (!next) return;
    this.holders.set(name, next);
    queueMicrotask(async () => {
      let result;
      let failure = null;
      try {
        result = await next.callback({ name, mode: 'exclusive' });
      } catch (error) {
        failure = error;
      }
      if (this.holders.get(name) !== next) return; // the tab crashed meanwhile: released already
      this.holders.delete(name);
      if (failure) next.reject(failure);
      else next.resolve(result);
      this.#grant(name);
    });
  }
}

/** A token shaped like a Firebase ID token (header.payload.signature) for user `sub`. */
export function tokenFor(sub, serial = 1) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'RS256', typ: 'JWT' })}.${part({ sub, user_id: sub, serial })}.c2lnbmF0dXJl`;
}

/**
 * Tabs of one browser (clients made by `createRealtime`) sharing a virtual clock, one WebSocket server (`sockets`: every socket any
 * tab opened) and the browser's locks and channels. `openTab({ user })` returns a tab whose
 * `client` is created (not connected) with the browser's APIs; `tab.user` may be changed later
 * to make its getToken return another user's token.
 */
export function fakeBrowserTabs(createRealtime) {
  const clock = new FakeClock();
  const browser = new FakeBrowser();
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  let tabNumber = 0;
  return {
    clock,
    browser,
    sockets,
    /** Sockets not closed by their client nor dropped: what the gateway holds. */
    live() {
      return sockets.filter((socket) => socket.readyState !== FakeWebSocket.CLOSED);
    },
    openTab({ user = 'alice', url = 'wss://example.test/ws', shared = true, ...extra } = {}) {
      tabNumber += 1;
      const name = `tab-${tabNumber}`;
      const document = new FakeEventTarget({ visibilityState: 'visible' });
      const page = new FakeEventTarget({ document });
      const tab = {
        name,
        user,
        page,
        document,
        errors: [],
        states: [],
        roles: [],
        tokenCalls: [],
        events: [], // every { key, count } its '*' subscribers saw
        crash: () => browser.crash(name),
      };
      let serial = 0;
      tab.client = createRealtime({
        url,
        getToken: async (hint) => {
          tab.tokenCalls.push(hint);
          serial += 1;
          return tokenFor(tab.user, serial);
        },
        WebSocket: FakeWebSocket,
        timers: { setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, now: () => clock.now },
        random: () => 0.5,
        window: page,
        onError: (error, context) => tab.errors.push({ error, context }),
        autoConnect: false,
        locks: shared ? browser.locksFor(name) : null,
        BroadcastChannel: shared ? browser.channelClassFor(name) : null,
        ...extra,
      });
      tab.client.onState((state) => tab.states.push(state));
      tab.client.onRole((role) => tab.roles.push(role));
      tab.client.on('*', (event) => tab.events.push(event));
      return tab;
    },
  };
}
