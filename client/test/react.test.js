// The React binding, rendered by the real react-dom client into a tiny fake DOM (the components under
// test render nothing, so React needs only a container node). Effects and re-renders run for real.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';

import { act, createElement, StrictMode } from 'react';
import { createRoot } from 'react-dom/client';

import { RealtimeProvider, useRealtimeClient, useRealtimeEvent, useRealtimeState, useRealtimeTopic } from '../react.js';
import { createRealtime } from '../realtime.js';
import { harness, settle } from './fakes.js';

globalThis.IS_REACT_ACT_ENVIRONMENT = true;
// What react-dom reads from the global window when it schedules and commits.
globalThis.window ??= { event: undefined, HTMLIFrameElement: class {}, addEventListener() {}, removeEventListener() {} };

function fakeContainer() {
  const ownerDocument = { nodeType: 9, addEventListener() {}, removeEventListener() {} };
  return {
    nodeType: 1,
    nodeName: 'DIV',
    tagName: 'DIV',
    namespaceURI: 'http://www.w3.org/1999/xhtml',
    ownerDocument,
    childNodes: [],
    addEventListener() {},
    removeEventListener() {},
  };
}

let root;

beforeEach(() => {
  root = createRoot(fakeContainer());
});

afterEach(async () => {
  await act(async () => root.unmount());
});

async function render(element) {
  await act(async () => root.render(element));
}

/** Run `fn` (socket events, timers) inside act so React applies the resulting updates. */
async function inAct(fn) {
  await act(async () => {
    await fn();
    await settle();
  });
}

/** A provider around `child` whose client is created by the provider itself, on the harness' fakes. */
function ownedProvider(h, child, getToken = async () => 'token-from-props') {
  return createElement(
    RealtimeProvider,
    {
      url: 'wss://example.test/ws',
      getToken,
      options: {
        WebSocket: h.FakeWebSocket,
        timers: { setTimeout: h.clock.setTimeout, clearTimeout: h.clock.clearTimeout },
        random: () => 0.5,
        window: h.page,
      },
    },
    child,
  );
}

describe('RealtimeProvider', () => {
  test('with url and getToken: connects on mount with the token, closes on unmount', async () => {
    const h = harness();
    const states = [];
    function Status() {
      states.push(useRealtimeState());
      return null;
    }
    await render(ownedProvider(h, createElement(Status)));
    await inAct(() => {});
    assert.equal(h.sockets.length, 1);
    assert.deepEqual(h.last.protocols, ['bearer', 'token-from-props']);
    await inAct(() => h.last.accept());
    assert.equal(states.at(-1), 'open');
    const socket = h.last;
    await act(async () => root.unmount());
    assert.equal(socket.closedByClient.code, 1000);
    root = createRoot(fakeContainer()); // for afterEach
  });

  test('uses the latest getToken on reconnect without creating a new client', async () => {
    const h = harness();
    await render(ownedProvider(h, null, async () => 'first'));
    await inAct(() => {});
    await inAct(() => h.last.accept());
    await render(ownedProvider(h, null, async () => 'second'));
    await inAct(async () => {
      h.last.drop();
      await h.clock.advance(1000);
    });
    assert.equal(h.sockets.length, 2);
    assert.deepEqual(h.last.protocols, ['bearer', 'second']);
  });

  test('in StrictMode (mount, unmount, mount) ends with exactly one live connection', async () => {
    const h = harness();
    await render(createElement(StrictMode, null, ownedProvider(h, null)));
    await inAct(() => {});
    const live = h.sockets.filter((socket) => socket.closedByClient === null && socket.onopen !== null);
    assert.equal(live.length, 1);
  });

  test('with a client prop: shares it and neither connects nor closes it', async () => {
    const h = harness();
    const client = h.create(createRealtime);
    const seen = [];
    function Probe() {
      seen.push(useRealtimeClient());
      return null;
    }
    await render(createElement(RealtimeProvider, { client }, createElement(Probe)));
    await act(async () => root.unmount());
    root = createRoot(fakeContainer());
    assert.equal(seen[0], client);
    assert.equal(h.sockets.length, 0);
    assert.equal(client.state, 'closed');
  });
});

describe('useRealtimeEvent', () => {
  async function mounted(hookOptions) {
    const h = harness();
    const client = h.create(createRealtime);
    client.connect();
    await settle();
    h.last.accept();
    const calls = [];
    function Listener({ label }) {
      useRealtimeEvent('jobs-updated', (event) => calls.push(`${label}:${event.key}`), hookOptions);
      return null;
    }
    const tree = (label) => createElement(RealtimeProvider, { client }, createElement(Listener, { label }));
    await render(tree('v1'));
    return { h, client, calls, tree };
  }

  test('calls the handler for its key and, by default, on resync', async () => {
    const { h, calls } = await mounted();
    await inAct(() => h.last.receive({ event: 'jobs-updated' }));
    await inAct(() => h.last.receive({ event: 'payments-updated' }));
    await inAct(async () => {
      h.last.drop();
      await h.clock.advance(1000);
      h.last.accept();
    });
    assert.deepEqual(calls, ['v1:jobs-updated', 'v1:resync']);
  });

  test('with { resync: false } it ignores resync', async () => {
    const { h, calls } = await mounted({ resync: false });
    await inAct(async () => {
      h.last.drop();
      await h.clock.advance(1000);
      h.last.accept();
      h.last.receive({ event: 'jobs-updated' });
    });
    assert.deepEqual(calls, ['v1:jobs-updated']);
  });

  test('uses the latest handler after a re-render, and stops on unmount', async () => {
    const { h, calls, tree } = await mounted();
    await render(tree('v2'));
    await inAct(() => h.last.receive({ event: 'jobs-updated' }));
    await act(async () => root.unmount());
    root = createRoot(fakeContainer());
    h.last.receive({ event: 'jobs-updated' });
    assert.deepEqual(calls, ['v2:jobs-updated']);
  });

  test('outside a provider it throws a clear error', async () => {
    function Orphan() {
      useRealtimeEvent('jobs-updated', () => {});
      return null;
    }
    const orphanRoot = createRoot(fakeContainer(), { onUncaughtError: () => {} });
    await assert.rejects(
      async () => act(async () => orphanRoot.render(createElement(Orphan))),
      /no <RealtimeProvider> above this component/,
    );
  });
});

describe('useRealtimeState', () => {
  test('re-renders on every state change', async () => {
    const h = harness({ random: () => 1 });
    const client = h.create(createRealtime);
    const states = [];
    function Status() {
      states.push(useRealtimeState());
      return null;
    }
    await render(createElement(RealtimeProvider, { client }, createElement(Status)));
    await inAct(() => client.connect());
    await inAct(() => h.last.accept());
    await inAct(() => h.last.drop());
    await inAct(() => client.close());
    assert.deepEqual([...new Set(states)], ['closed', 'connecting', 'open', 'reconnecting']);
    assert.equal(states.at(-1), 'closed');
  });
});

describe('useRealtimeTopic', () => {
  async function openClient() {
    const h = harness();
    const client = h.create(createRealtime);
    client.connect();
    await settle();
    h.last.accept();
    return { h, client };
  }

  function asked(socket) {
    return socket.sent.filter((message) => message.action !== 'ping').map((m) => `${m.action} ${m.topic}`);
  }

  test('subscribes while mounted and re-renders with the answer: subscribing, subscribed, then refused', async () => {
    const { h, client } = await openClient();
    const states = [];
    function Room({ topic }) {
      states.push(useRealtimeTopic(topic));
      return null;
    }
    const tree = (topic) => createElement(RealtimeProvider, { client }, createElement(Room, { topic }));
    await render(tree('room:1'));
    assert.deepEqual(asked(h.last), ['subscribe room:1']);
    assert.equal(states.at(-1), 'subscribing');
    await inAct(() => h.last.receive({ event: 'subscribed', topic: 'room:1' }));
    assert.equal(states.at(-1), 'subscribed');
    await inAct(() => h.last.receive({ event: 'unsubscribed', topic: 'room:1' })); // removed from the room
    assert.equal(states.at(-1), 'refused');

    await render(tree('room:2')); // another room: the first is let go
    assert.equal(states.at(-1), 'subscribing');
    await inAct(() => h.last.receive({ event: 'subscribe-refused', topic: 'room:2' }));
    assert.equal(states.at(-1), 'refused');
    await render(tree(null));
    assert.equal(states.at(-1), null);
    await inAct(() => {});
    // Both ended refused (revoked, refused): nothing stored on the server, so nothing to unsubscribe.
    assert.deepEqual(asked(h.last), ['subscribe room:1', 'subscribe room:2']);
    assert.deepEqual(client.topics, []);
  });

  test('two components wanting one topic share one subscription; the last to unmount lets it go', async () => {
    const { h, client } = await openClient();
    function Room() {
      useRealtimeTopic('room:1');
      return null;
    }
    const tree = (count) =>
      createElement(RealtimeProvider, { client }, ...Array.from({ length: count }, (_, n) => createElement(Room, { key: n })));
    await render(tree(2));
    await render(tree(1));
    await inAct(() => {});
    assert.deepEqual(asked(h.last), ['subscribe room:1']);
    await render(tree(0));
    await inAct(() => {});
    assert.deepEqual(asked(h.last), ['subscribe room:1', 'unsubscribe room:1']);
  });

  test('in StrictMode (mount, unmount, mount) the topic is asked for once', async () => {
    const { h, client } = await openClient();
    function Room() {
      useRealtimeTopic('room:1');
      return null;
    }
    await render(createElement(StrictMode, null, createElement(RealtimeProvider, { client }, createElement(Room))));
    await inAct(() => {});
    assert.deepEqual(asked(h.last), ['subscribe room:1']);
  });

  test("useRealtimeEvent with { topic } gets that topic's frames and resync, nothing of the user's own", async () => {
    const { h, client } = await openClient();
    const calls = [];
    function Room() {
      useRealtimeTopic('room:1');
      useRealtimeEvent('room-messages-updated', (event) => calls.push(`${event.topic ?? 'user'}:${event.key}`), {
        topic: 'room:1',
      });
      return null;
    }
    await render(createElement(RealtimeProvider, { client }, createElement(Room)));
    await inAct(() => {
      h.last.receive({ event: 'subscribed', topic: 'room:1' });
      h.last.receive({ event: 'room-messages-updated', topic: 'room:1' });
      h.last.receive({ event: 'room-messages-updated', topic: 'room:2' });
      h.last.receive({ event: 'room-messages-updated' });
    });
    await inAct(async () => {
      h.last.drop();
      await h.clock.advance(1000);
      h.last.accept();
    });
    assert.deepEqual(calls, ['room:1:room-messages-updated'], 'resync waits for the re-subscribe');
    await inAct(() => h.last.receive({ event: 'subscribed', topic: 'room:1' }));
    assert.deepEqual(calls, ['room:1:room-messages-updated', 'user:resync']);
  });
});
