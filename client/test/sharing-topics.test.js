// Topics over one shared socket: the leader subscribes the union of its tabs' topics, relays each
// topic frame only to the tabs that want it, and after a handover re-subscribes before resync.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createRealtime, RESYNC, TopicRefusedError } from '../realtime.js';
import { fakeBrowserTabs, settle } from './fakes.js';

/** `count` tabs of one user, connected one after the other, the leader's socket accepted. */
async function openTabs(tabs, count) {
  const opened = [];
  for (let n = 0; n < count; n += 1) {
    const tab = tabs.openTab();
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

function asked(socket) {
  return socket.sent.filter((message) => message.action !== 'ping').map((m) => `${m.action} ${m.topic}`);
}

/** The server acknowledges every subscribe the socket was sent and has not answered yet. */
function acknowledge(socket, answers = {}) {
  socket.answered ??= 0;
  const requests = socket.sent.filter((message) => message.action !== 'ping');
  for (const request of requests.slice(socket.answered)) {
    const event = request.action === 'unsubscribe' ? 'unsubscribed' : (answers[request.topic] ?? 'subscribed');
    socket.receive({ event, topic: request.topic });
  }
  socket.answered = requests.length;
}

/** What each topic handler of `tab` saw, as `room:1 room-messages-updated`. */
function listen(tab, topic, seen) {
  tab.client.on('*', (event) => seen.push(`${tab.name} ${event.topic} ${event.key}`), { topic });
}

describe('topics across tabs', () => {
  test("two tabs wanting two rooms: one socket subscribes both; each tab gets only its room's frames", async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [leader, follower] = await openTabs(tabs, 2);
    const seen = [];
    for (const tab of [leader, follower]) for (const topic of ['room:1', 'room:2']) listen(tab, topic, seen);
    const mine = leader.client.subscribe('room:1');
    const theirs = follower.client.subscribe('room:2');
    await settle();
    const socket = lastSocket(tabs);
    assert.equal(tabs.sockets.length, 1);
    assert.deepEqual(asked(socket), ['subscribe room:1', 'subscribe room:2']);
    acknowledge(socket);
    await settle();
    assert.equal((await mine).state, 'subscribed');
    assert.equal((await theirs).state, 'subscribed', 'the answer reached the follower');

    tabs.browser.posted.length = 0;
    socket.receive({ event: 'room-messages-updated', topic: 'room:1' });
    socket.receive({ event: 'room-messages-updated', topic: 'room:2' });
    socket.receive({ event: 'presence-updated', topic: 'room:2' });
    await settle();
    assert.deepEqual(seen, [
      'tab-1 room:1 room-messages-updated',
      'tab-2 room:2 room-messages-updated',
      'tab-2 room:2 presence-updated',
    ]);
    // room:1 is only the leader's: nothing of it went over the channel.
    const relayed = tabs.browser.posted.filter((message) => message.data.type === 'event');
    assert.deepEqual(
      relayed.map((message) => message.data.topic),
      ['room:2', 'room:2'],
    );
    assert.deepEqual(keys(leader), [], "no '*' handler of the user's own frames saw a topic frame");
    assert.deepEqual(keys(follower), []);
  });

  test('a refusal reaches the follower that asked: its promise rejects', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [, follower] = await openTabs(tabs, 2);
    const subscription = follower.client.subscribe('room:9');
    await settle();
    acknowledge(lastSocket(tabs), { 'room:9': 'subscribe-refused' });
    await assert.rejects(subscription, TopicRefusedError);
    assert.equal(subscription.state, 'refused');
  });

  test('a follower taking a refused topic again has the leader ask again', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [, follower] = await openTabs(tabs, 2);
    const first = follower.client.subscribe('room:9');
    await settle();
    acknowledge(lastSocket(tabs), { 'room:9': 'subscribe-refused' });
    await assert.rejects(first, TopicRefusedError);
    first.unsubscribe();
    const second = follower.client.subscribe('room:9');
    await settle();
    assert.deepEqual(asked(lastSocket(tabs)), ['subscribe room:9', 'subscribe room:9']);
    acknowledge(lastSocket(tabs));
    assert.equal((await second).state, 'subscribed');
  });

  test("the leader taking a topic a follower holds gets the socket's answer; a refusal is asked again", async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [leader, follower] = await openTabs(tabs, 2);
    follower.client.subscribe('room:1');
    follower.client.subscribe('room:2');
    await settle();
    const socket = lastSocket(tabs);
    acknowledge(socket, { 'room:2': 'subscribe-refused' });
    await settle();
    const held = leader.client.subscribe('room:1');
    assert.equal((await held).state, 'subscribed');
    const refused = leader.client.subscribe('room:2');
    await settle();
    assert.deepEqual(asked(socket), ['subscribe room:1', 'subscribe room:2', 'subscribe room:2']);
    acknowledge(socket);
    await settle();
    assert.equal((await refused).state, 'subscribed');
  });

  test('a follower newly taking a topic refused for another tab has it asked again', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [leader, follower] = await openTabs(tabs, 2);
    const refused = leader.client.subscribe('room:2');
    await settle();
    const socket = lastSocket(tabs);
    acknowledge(socket, { 'room:2': 'subscribe-refused' });
    await assert.rejects(refused, TopicRefusedError);
    const again = follower.client.subscribe('room:2');
    await settle();
    assert.deepEqual(asked(socket), ['subscribe room:2', 'subscribe room:2']);
    acknowledge(socket);
    await settle();
    assert.equal((await again).state, 'subscribed');
    assert.equal(refused.state, 'subscribed', 'the answer is every holder\'s');
  });

  test('a topic is unsubscribed only when no tab wants it any more', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [leader, follower, third] = await openTabs(tabs, 3);
    const socket = lastSocket(tabs);
    const held = [leader, follower, third].map((tab) => tab.client.subscribe('room:1'));
    await settle();
    assert.deepEqual(asked(socket), ['subscribe room:1'], 'asked once for three tabs');
    acknowledge(socket);
    await settle();
    for (const subscription of held) assert.equal((await subscription).state, 'subscribed');

    held[0].unsubscribe(); // the leader's own
    held[1].unsubscribe();
    await settle();
    assert.deepEqual(asked(socket), ['subscribe room:1'], 'the third tab still wants it');
    held[2].unsubscribe();
    await settle();
    assert.deepEqual(asked(socket), ['subscribe room:1', 'unsubscribe room:1']);
  });

  test("a follower that joins a topic the socket has already gets its answer at once, with no new request", async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [leader] = await openTabs(tabs, 1);
    leader.client.subscribe('room:1');
    await settle();
    acknowledge(lastSocket(tabs));
    const [follower] = await openTabs(tabs, 1);
    const subscription = follower.client.subscribe('room:1');
    await settle();
    assert.equal((await subscription).state, 'subscribed');
    assert.deepEqual(asked(lastSocket(tabs)), ['subscribe room:1']);
  });

  for (const [label, end] of [
    ['closes', (tab) => tab.client.close()],
    ['crashes', (tab) => tab.crash()],
  ]) {
    test(`a follower that ${label} has its topics unsubscribed`, async () => {
      const tabs = fakeBrowserTabs(createRealtime);
      const [leader, follower] = await openTabs(tabs, 2);
      leader.client.subscribe('room:1');
      follower.client.subscribe('room:1');
      follower.client.subscribe('room:2');
      await settle();
      const socket = lastSocket(tabs);
      acknowledge(socket);
      end(follower);
      await settle();
      assert.deepEqual(asked(socket), ['subscribe room:1', 'subscribe room:2', 'unsubscribe room:2']);
    });
  }

  test('when the leader reconnects, a follower resyncs only once its topic is subscribed again', async () => {
    const tabs = fakeBrowserTabs(createRealtime);
    const [leader, follower] = await openTabs(tabs, 2);
    const order = [];
    follower.client.subscribe('room:2').onState((state) => order.push(state));
    follower.client.on(RESYNC, () => order.push('resync'));
    await settle();
    acknowledge(lastSocket(tabs));
    await settle();
    lastSocket(tabs).drop();
    await settle();
    await tabs.clock.advance(1000);
    lastSocket(tabs).accept();
    await settle();
    assert.deepEqual(asked(lastSocket(tabs)), ['subscribe room:2']);
    assert.deepEqual(order, ['subscribed'], 'no resync before the answer');
    acknowledge(lastSocket(tabs), { 'room:2': 'subscribe-refused' });
    await settle();
    assert.deepEqual(order, ['subscribed', 'refused', 'resync']);
    assert.deepEqual(keys(leader), [RESYNC]);
  });

  for (const [label, end] of [
    ['is closed', (tab) => tab.client.close()],
    ['crashes', (tab) => tab.crash()],
  ]) {
    test(`when the leader ${label}, the new leader subscribes every remaining tab's topics before resync`, async () => {
      const tabs = fakeBrowserTabs(createRealtime);
      const [leader, second, third] = await openTabs(tabs, 3);
      const seen = [];
      const order = [];
      leader.client.subscribe('room:0');
      second.client.subscribe('room:1');
      third.client.subscribe('room:2');
      for (const [tab, topic] of [
        [second, 'room:1'],
        [third, 'room:2'],
      ]) {
        listen(tab, topic, seen);
        tab.client.on(RESYNC, () => order.push(`${tab.name} resync`));
      }
      await settle();
      acknowledge(lastSocket(tabs));
      await settle();

      end(leader);
      await settle();
      assert.equal(tabs.sockets.length, 2);
      const socket = lastSocket(tabs);
      socket.accept();
      await settle();
      const newLeader = [second, third].find((tab) => tab.client.role === 'leader');
      assert.ok(newLeader, 'a tab took the socket over');
      assert.deepEqual(asked(socket).sort(), ['subscribe room:1', 'subscribe room:2']);
      assert.deepEqual(order, [], 'no resync before the re-subscribes are answered');
      acknowledge(socket);
      await settle();
      assert.deepEqual(order.sort(), ['tab-2 resync', 'tab-3 resync']);

      socket.receive({ event: 'room-messages-updated', topic: 'room:1' });
      socket.receive({ event: 'room-messages-updated', topic: 'room:2' });
      socket.receive({ event: 'room-messages-updated', topic: 'room:0' }); // the closed tab's: nobody's now
      await settle();
      assert.deepEqual(seen, ['tab-2 room:1 room-messages-updated', 'tab-3 room:2 room-messages-updated']);
    });
  }
});

function keys(tab) {
  return tab.events.map((event) => event.key);
}
