// The tabs of one user share one socket: election, relay, handover, scoping by user, fallback,
// and the keep-alive of a hidden leader, with fake Web Locks, BroadcastChannel and WebSocket.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createRealtime, RESYNC } from '../realtime.js';
import { fakeBrowserTabs, settle } from './fakes.js';

const MINUTE = 60_000;

/** `count` tabs of `user`, connected one after the other, the leader's socket accepted. */
async function openTabs(tabs, count, options = {}) {
  const opened = [];
  for (let n = 0; n < count; n += 1) {
    const tab = tabs.openTab(options);
    tab.client.connect();
    await settle();
    if (n === 0) lastSocket(tabs).accept();
    await settle();
    opened.push(tab);
  }
  return opened;
}

function lastSocket(tabs) {
  return tabs.sockets[tabs.sockets.length - 1];
}

function userOfSocket(socket) {
  const payload = socket.protocols[1].split('.')[1];
  return JSON.parse(Buffer.from(payload, 'base64url').toString()).sub;
}

function keysOf(tab) {
  return tab.events.map((event) => event.key);
}

describe('election', () => {
  test('tabs of one user hold one socket: the first leads, the others follow and mirror its state', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [first, second, third] = await openTabs(tabs, 3);
    assert.equal(tabs.sockets.length, 1);
    assert.deepEqual(
      [first, second, third].map((tab) => tab.client.role),
      ['leader', 'follower', 'follower'],
    );
    for (const tab of [first, second, third]) assert.equal(tab.client.state, 'open');
    assert.deepEqual(second.states, ['connecting', 'open']);
    assert.equal(tabs.browser.holderOf(tabs.browser.heldLocks()[0].name), first.name);
  });

  test('a follower that joins while the leader is connecting sees each state as the leader does', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const leader = tabs.openTab();
    leader.client.connect();
    await settle();
    const follower = tabs.openTab();
    follower.client.connect();
    await settle();
    assert.equal(follower.client.state, 'connecting');
    lastSocket(tabs).refuse();
    await settle();
    assert.equal(follower.client.state, 'reconnecting');
    await tabs.clock.advance(1000);
    lastSocket(tabs).accept();
    await settle();
    assert.deepEqual(follower.states, ['connecting', 'reconnecting', 'open']);
    assert.deepEqual(keysOf(follower), [RESYNC], 'it ran without a socket: resync, as the leader does');
    assert.deepEqual(keysOf(leader), [RESYNC]);
  });
});

describe('relay', () => {
  test('every key reaches every tab once, as { key, count: 1 }; pong stays with the leader', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const opened = await openTabs(tabs, 3);
    const jobs = opened.map(() => []);
    opened.forEach((tab, n) => tab.client.on('jobs-updated', (event) => jobs[n].push(event)));
    const socket = lastSocket(tabs);
    socket.receive({ event: 'jobs-updated' });
    socket.receive({ event: 'pong' });
    socket.receive({ event: 'chat-messages-updated' });
    socket.receive('not json');
    await settle();
    for (const [n, tab] of opened.entries()) {
      assert.deepEqual(jobs[n], [{ key: 'jobs-updated', count: 1 }], tab.name);
      assert.deepEqual(keysOf(tab), ['jobs-updated', 'chat-messages-updated'], tab.name);
    }
  });

  test('each follower coalesces with its own settings, from the raw frames', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [leader] = await openTabs(tabs, 1);
    const follower = tabs.openTab({ coalesceMs: 100 });
    follower.client.connect();
    await settle();
    const socket = lastSocket(tabs);
    for (let n = 0; n < 3; n += 1) socket.receive({ event: 'jobs-updated' });
    await settle();
    assert.equal(leader.events.length, 3, 'the leader does not coalesce');
    assert.deepEqual(follower.events, []);
    await tabs.clock.advance(100);
    assert.deepEqual(follower.events, [{ key: 'jobs-updated', count: 3 }]);
  });

  test('a follower sees reconnecting while the leader reconnects, then open and one resync', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [leader, follower] = await openTabs(tabs, 2);
    lastSocket(tabs).drop();
    await settle();
    assert.equal(follower.client.state, 'reconnecting');
    await tabs.clock.advance(250); // the backoff: 0.5 * 500 ms
    assert.equal(tabs.sockets.length, 2);
    lastSocket(tabs).accept();
    await settle();
    assert.equal(follower.client.state, 'open');
    assert.deepEqual(follower.states, ['connecting', 'open', 'reconnecting', 'open']);
    assert.deepEqual(keysOf(follower), [RESYNC]);
    assert.deepEqual(keysOf(leader), [RESYNC]);
  });

  test('a closed follower gets nothing more and leaves the leader alone', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [leader, follower] = await openTabs(tabs, 2);
    follower.client.close();
    lastSocket(tabs).receive({ event: 'jobs-updated' });
    await settle();
    assert.deepEqual(follower.events, []);
    assert.equal(follower.client.state, 'closed');
    assert.equal(follower.client.role, null);
    assert.equal(leader.client.state, 'open');
    assert.equal(tabs.live().length, 1);
  });
});

describe('handover', () => {
  for (const [how, end] of [
    ['crashes', (tab) => tab.crash()],
    ['closes its client', (tab) => tab.client.close()],
  ]) {
    test(`when the leader ${how}, a follower opens the socket at once and every tab resyncs`, async () => {
      const tabs = fakeBrowserTabs(createRealtime);
      const [leader, second, third] = await openTabs(tabs, 3);
      const old = lastSocket(tabs);
      end(leader);
      old.drop(); // the browser closes a crashed tab's socket; a closed client closed it itself
      await settle();
      assert.equal(tabs.sockets.length, 2, 'the new leader connects without waiting out a backoff');
      assert.deepEqual([second.client.role, third.client.role], ['leader', 'follower']);
      assert.equal(third.client.state, 'reconnecting');
      lastSocket(tabs).accept();
      await settle();
      for (const tab of [second, third]) {
        assert.equal(tab.client.state, 'open', tab.name);
        assert.deepEqual(keysOf(tab), [RESYNC], `${tab.name}: frames may have been lost in between`);
      }
      lastSocket(tabs).receive({ event: 'payments-updated' });
      await settle();
      assert.deepEqual(keysOf(third), [RESYNC, 'payments-updated']);
      assert.deepEqual(keysOf(second), [RESYNC, 'payments-updated']);
      assert.deepEqual(keysOf(leader), [], 'the old leader hears nothing more');
      assert.equal(tabs.live().length, 1);
    });
  }

  test('the last tab standing leads; a tab that joins later follows it', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [first, second] = await openTabs(tabs, 2);
    first.crash();
    await settle();
    lastSocket(tabs).accept();
    await settle();
    const late = tabs.openTab();
    late.client.connect();
    await settle();
    assert.deepEqual([second.client.role, late.client.role], ['leader', 'follower']);
    assert.equal(late.client.state, 'open');
    assert.deepEqual(keysOf(late), [], 'a fresh tab has nothing to resync');
    assert.equal(tabs.sockets.length, 2);
  });
});

describe('an unresponsive leader', () => {
  test('a follower that becomes visible takes the lock from a leader that does not answer (a frozen tab)', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [leader, second, third] = await openTabs(tabs, 3);
    const frozenSocket = lastSocket(tabs);
    tabs.browser.freeze(leader.name);
    second.document.dispatch('visibilitychange');
    await tabs.clock.advance(4_999);
    assert.equal(second.client.role, 'follower', 'the leader has 5 s to answer');
    await tabs.clock.advance(1);
    assert.equal(second.client.role, 'leader');
    assert.equal(tabs.sockets.length, 2);
    lastSocket(tabs).accept();
    await settle();
    for (const tab of [second, third]) {
      assert.equal(tab.client.state, 'open', tab.name);
      assert.deepEqual(keysOf(tab), [RESYNC], tab.name);
    }

    tabs.browser.thaw(leader.name);
    await settle();
    assert.equal(leader.client.role, 'follower', 'the thawed tab follows the new leader');
    assert.equal(frozenSocket.closedByClient?.reason, 'another tab leads');
    assert.equal(leader.client.state, 'open');
    assert.deepEqual(keysOf(leader), [RESYNC], 'it may have missed frames while frozen');
    lastSocket(tabs).receive({ event: 'jobs-updated' });
    await settle();
    for (const tab of [leader, second, third]) assert.deepEqual(keysOf(tab), [RESYNC, 'jobs-updated'], tab.name);
    assert.equal(tabs.live().length, 1);
  });

  test('a leader that answers keeps the lock and its socket', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [leader, follower] = await openTabs(tabs, 2);
    const socket = lastSocket(tabs);
    follower.document.dispatch('visibilitychange');
    await settle();
    assert.deepEqual(socket.sent, [{ action: 'ping' }]);
    socket.receive({ event: 'pong' });
    await tabs.clock.advance(60_000);
    assert.deepEqual([leader.client.role, follower.client.role], ['leader', 'follower']);
    assert.equal(tabs.sockets.length, 1);
    assert.deepEqual(keysOf(follower), []);
  });
});

describe('scoping by user', () => {
  test('tabs of different users (or endpoints) never share: each group has its own socket', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const alice = await openTabs(tabs, 2, { user: 'alice' });
    const aliceSocket = lastSocket(tabs);
    const bob = await openTabs(tabs, 2, { user: 'bob' });
    const bobSocket = lastSocket(tabs);
    const other = await openTabs(tabs, 1, { user: 'alice', url: 'wss://other.test/ws' });
    assert.equal(tabs.sockets.length, 3);
    assert.deepEqual([aliceSocket, bobSocket].map(userOfSocket), ['alice', 'bob']);
    assert.deepEqual([...alice, ...bob, ...other].map((tab) => tab.client.role), [
      'leader',
      'follower',
      'leader',
      'follower',
      'leader',
    ]);

    aliceSocket.receive({ event: 'chat-messages-updated' });
    await settle();
    for (const tab of alice) assert.deepEqual(keysOf(tab), ['chat-messages-updated']);
    for (const tab of [...bob, ...other]) assert.deepEqual(keysOf(tab), [], `${tab.name} got alice's key`);
  });

  test('a leader whose token now names another user hands its group over and joins the new one', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [leader, follower] = await openTabs(tabs, 2, { user: 'alice' });
    const [bob] = await openTabs(tabs, 1, { user: 'bob' });
    const bobSocket = lastSocket(tabs);
    leader.user = 'bob'; // signed out and in as bob in that tab
    tabs.sockets[0].drop(); // alice's socket drops; the reconnect fetches bob's token
    await tabs.clock.advance(250);
    assert.equal(leader.client.role, 'follower', 'bob already has a leader');
    assert.equal(follower.client.role, 'leader', "alice's other tab took alice's socket over");
    const aliceSocket = lastSocket(tabs);
    assert.equal(userOfSocket(aliceSocket), 'alice');
    aliceSocket.accept();
    bobSocket.receive({ event: 'payments-updated' });
    aliceSocket.receive({ event: 'chat-messages-updated' });
    await settle();
    assert.deepEqual(keysOf(leader).filter((key) => key !== RESYNC), ['payments-updated']);
    assert.deepEqual(keysOf(bob), ['payments-updated']);
    assert.deepEqual(keysOf(follower), [RESYNC, 'chat-messages-updated']);
    assert.ok(
      tabs.sockets.every((socket) => userOfSocket(socket) === 'alice' || socket === bobSocket),
      'no socket was opened for bob in alice group',
    );
  });

  test('a follower that finds another user signed in when it becomes visible moves to that group', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [, follower] = await openTabs(tabs, 2, { user: 'alice' });
    follower.user = 'bob';
    follower.document.dispatch('visibilitychange');
    await settle();
    assert.equal(follower.client.role, 'leader', 'the first tab of bob leads');
    assert.equal(follower.client.state, 'reconnecting');
    assert.equal(userOfSocket(lastSocket(tabs)), 'bob');
    tabs.sockets[0].receive({ event: 'chat-messages-updated' });
    lastSocket(tabs).accept();
    await settle();
    assert.deepEqual(keysOf(follower), [RESYNC], "bob's data is refetched; alice's key never arrives");
  });
});

describe('fallback: each tab its own socket', () => {
  const cases = [
    ['without Web Locks', { locks: null }],
    ['without BroadcastChannel', { BroadcastChannel: null }],
    ['with shareConnection: false', { shareConnection: false }],
  ];
  for (const [name, options] of cases) {
    test(name, async () => {
      const tabs = fakeBrowserTabs(createRealtime);
      const opened = [];
      for (let n = 0; n < 2; n += 1) {
        const tab = tabs.openTab(options);
        tab.client.connect();
        await settle();
        lastSocket(tabs).accept();
        opened.push(tab);
      }
      assert.equal(tabs.sockets.length, 2);
      assert.deepEqual(opened.map((tab) => tab.client.role), ['own', 'own']);
      assert.deepEqual(tabs.browser.posted, [], 'nothing is broadcast');
      tabs.sockets[0].receive({ event: 'jobs-updated' });
      await settle();
      assert.deepEqual(opened.map(keysOf), [['jobs-updated'], []]);
    });
  }

  test('a token without a `sub` to scope by: own socket', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const tab = tabs.openTab({ getToken: async () => 'opaque-token' });
    tab.client.connect();
    await settle();
    assert.equal(tab.client.role, 'own');
    assert.deepEqual(lastSocket(tabs).protocols, ['bearer', 'opaque-token']);
    assert.equal(tabs.browser.heldLocks().length, 0);
  });

  test('Web Locks refusing the request (an opaque origin): own socket, and the error reported', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const refusing = { request: () => Promise.reject(new DOMException('denied', 'SecurityError')) };
    const tab = tabs.openTab({ locks: refusing });
    tab.client.connect();
    await settle();
    assert.equal(tab.client.role, 'own');
    assert.equal(tabs.sockets.length, 1);
    assert.equal(tab.errors[0].error.name, 'SecurityError');
  });
});

describe('a hidden leader', () => {
  // Chrome's intensive throttling of a page hidden for 5 minutes: timers fire on the minute only.
  function throttled(clock) {
    const aligned = (delay) => Math.ceil((clock.now + Math.max(1000, delay)) / MINUTE) * MINUTE - clock.now;
    return {
      setTimeout: (fn, delay) => clock.setTimeout(fn, aligned(delay)),
      clearTimeout: clock.clearTimeout,
      now: () => clock.now,
    };
  }

  test('keeps a client frame within 10 minutes and rotates before 2 hours, with the default intervals', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const leader = tabs.openTab({ timers: throttled(tabs.clock) });
    leader.document.visibilityState = 'hidden';
    leader.client.connect();
    await settle();
    const activity = []; // { socket, at } for each open and each ping
    const answer = (socket) => {
      const close = socket.close.bind(socket);
      socket.close = (code, reason) => {
        socket.closedAt = tabs.clock.now;
        close(code, reason);
      };
      socket.accept();
      activity.push({ socket, at: tabs.clock.now, opened: true });
      socket.send = function send(data) {
        this.sent.push(JSON.parse(data));
        activity.push({ socket: this, at: tabs.clock.now });
        queueMicrotask(() => this.receive({ event: 'pong' }));
      };
    };
    answer(lastSocket(tabs));
    for (let minute = 0; minute < 5 * 60; minute += 1) {
      await tabs.clock.advance(MINUTE);
      const socket = lastSocket(tabs);
      if (socket.readyState === 0) answer(socket);
    }
    assert.ok(tabs.sockets.length >= 3, `rotated ${tabs.sockets.length - 1} times in 5 hours`);
    for (const socket of tabs.sockets) {
      const times = activity.filter((entry) => entry.socket === socket).map((entry) => entry.at);
      const gaps = times.slice(1).map((at, n) => at - times[n]);
      assert.ok(Math.max(...gaps) < 10 * MINUTE, `longest silence ${Math.max(...gaps) / MINUTE} min`);
      const closedAt = socket.closedAt ?? tabs.clock.now;
      assert.ok(closedAt - times[0] < 120 * MINUTE, `a connection lived ${(closedAt - times[0]) / MINUTE} min`);
    }
    assert.equal(lastSocket(tabs).closedByClient, null);
  });

  test('rotates on the wall clock when its timers were held back (a suspended laptop)', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    let slept = 0;
    const clock = tabs.clock;
    const timers = { setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, now: () => clock.now + slept };
    const [leader] = await openTabs(tabs, 1, { timers });
    slept = 115 * MINUTE; // the machine slept: no timer ran, the wall clock moved on
    leader.document.dispatch('visibilitychange'); // back: the visibility check would ping
    await settle();
    assert.equal(tabs.sockets.length, 2, 'a socket past the age limit is replaced, not pinged');
    assert.deepEqual(tabs.sockets[0].sent, []);
    assert.equal(tabs.sockets[0].closedByClient.reason, 'maximum connection age');
  });
});
