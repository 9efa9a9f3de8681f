// Topics with one socket: subscribe and its answers, counting, topic listeners, and the re-subscribes
// after a reconnect or the 2-hour rotation that come before `resync`.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createRealtime, RESYNC, TOPIC_PATTERN, TopicRefusedError } from '../realtime.js';
import { harness, settle } from './fakes.js';

const MINUTE = 60_000;

async function openClient(extra = {}) {
  const h = harness();
  const client = h.create(createRealtime, extra);
  client.connect();
  await settle();
  h.last.accept();
  return { h, client };
}

/** The subscribe / unsubscribe control messages a socket was sent, as `subscribe room:1`. */
function asked(socket) {
  return socket.sent.filter((message) => message.action !== 'ping').map((m) => `${m.action} ${m.topic}`);
}

/** Drop the socket and open the next one (the backoff with random 0.5 is at most 250 ms). */
async function reconnect(h) {
  h.last.drop();
  await h.clock.advance(1000);
  h.last.accept();
  await settle();
}

describe('subscribe', () => {
  test('asks once the socket is open and resolves on subscribed, to a handle whose state is subscribed', async () => {
    const h = harness();
    const client = h.create(createRealtime);
    const subscription = client.subscribe('room:42');
    assert.equal(subscription.state, 'subscribing');
    assert.equal(subscription.topic, 'room:42');
    client.connect();
    await settle();
    assert.deepEqual(asked(h.last), [], 'nothing is sent before the socket opens');
    h.last.accept();
    assert.deepEqual(asked(h.last), ['subscribe room:42']);
    h.last.receive({ event: 'subscribed', topic: 'room:42' });
    const handle = await subscription;
    assert.equal(handle.state, 'subscribed');
    assert.equal(subscription.state, 'subscribed');
    assert.deepEqual(client.topics, ['room:42']);
  });

  test('rejects with a TopicRefusedError naming the topic on subscribe-refused', async () => {
    const { h, client } = await openClient();
    const subscription = client.subscribe('room:7');
    h.last.receive({ event: 'subscribe-refused', topic: 'room:7' });
    await assert.rejects(subscription, (error) => {
      assert.ok(error instanceof TopicRefusedError);
      assert.ok(error instanceof Error);
      assert.equal(error.topic, 'room:7');
      assert.equal(error.name, 'TopicRefusedError');
      return true;
    });
    assert.equal(subscription.state, 'refused');
  });

  test('a refusal nobody awaits is no unhandled rejection: the state says it', async () => {
    const { h, client } = await openClient();
    const unhandled = [];
    const record = (reason) => unhandled.push(reason);
    process.on('unhandledRejection', record);
    try {
      const subscription = client.subscribe('room:7');
      h.last.receive({ event: 'subscribe-refused', topic: 'room:7' });
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(subscription.state, 'refused');
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', record);
    }
  });

  test('refuses topic names outside the contract with a TypeError, sending nothing', async () => {
    const { h, client } = await openClient();
    for (const bad of ['', 'Room:1', ':room', 'room 1', 'room/1', 'a'.repeat(129), 42, null]) {
      assert.throws(() => client.subscribe(bad), TypeError, String(bad));
      if (bad === null) continue; // on(key, h, { topic: null }) is the user's own frames, as without options
      assert.throws(() => client.on('room-messages-updated', () => {}, { topic: bad }), TypeError, String(bad));
    }
    assert.ok(TOPIC_PATTERN.test('a'.repeat(128)));
    client.subscribe('a'.repeat(128));
    client.subscribe('board.7_x-y:z');
    assert.deepEqual(asked(h.last), [`subscribe ${'a'.repeat(128)}`, 'subscribe board.7_x-y:z']);
  });

  test('counts holders: the server is asked once and told to stop when the last one lets go', async () => {
    const { h, client } = await openClient();
    const first = client.subscribe('room:1');
    const second = client.subscribe('room:1');
    assert.deepEqual(asked(h.last), ['subscribe room:1']);
    h.last.receive({ event: 'subscribed', topic: 'room:1' });
    await Promise.all([first, second]);
    const third = client.subscribe('room:1');
    assert.equal(await third.then((handle) => handle.state), 'subscribed', 'a late holder gets the answer at once');

    first.unsubscribe();
    first.unsubscribe(); // twice: still one holder fewer
    second.unsubscribe();
    await settle();
    assert.deepEqual(asked(h.last), ['subscribe room:1']);
    third.unsubscribe();
    await settle();
    assert.deepEqual(asked(h.last), ['subscribe room:1', 'unsubscribe room:1']);
    assert.deepEqual(client.topics, []);
  });

  test('letting go and taking a topic again at once (a remount) keeps the subscription', async () => {
    const { h, client } = await openClient();
    client.subscribe('room:1').unsubscribe();
    const again = client.subscribe('room:1');
    await settle();
    assert.deepEqual(asked(h.last), ['subscribe room:1']);
    h.last.receive({ event: 'subscribed', topic: 'room:1' });
    assert.equal((await again).state, 'subscribed');
  });

  test('taking a refused topic again asks the server again: access may have been granted since', async () => {
    const { h, client } = await openClient();
    const first = client.subscribe('room:1');
    const states = [];
    first.onState((state) => states.push(state));
    h.last.receive({ event: 'subscribe-refused', topic: 'room:1' });
    await assert.rejects(first, TopicRefusedError);
    const second = client.subscribe('room:1'); // e.g. added to the room meanwhile
    assert.deepEqual(asked(h.last), ['subscribe room:1', 'subscribe room:1']);
    assert.equal(first.state, 'subscribing');
    h.last.receive({ event: 'subscribed', topic: 'room:1' });
    assert.equal((await second).state, 'subscribed');
    assert.deepEqual(states, ['refused', 'subscribing', 'subscribed']);
  });

  test('letting go of a refused topic sends nothing: the server stored nothing', async () => {
    const { h, client } = await openClient();
    const subscription = client.subscribe('room:1');
    h.last.receive({ event: 'subscribe-refused', topic: 'room:1' });
    await assert.rejects(subscription, TopicRefusedError);
    subscription.unsubscribe();
    await settle();
    assert.deepEqual(asked(h.last), ['subscribe room:1']);
    assert.deepEqual(client.topics, []);
  });

  test('unsubscribing before the answer rejects that holder with an AbortError', async () => {
    const { h, client } = await openClient();
    const subscription = client.subscribe('room:1');
    subscription.unsubscribe();
    await assert.rejects(subscription, { name: 'AbortError' });
    await settle();
    assert.deepEqual(asked(h.last), ['subscribe room:1', 'unsubscribe room:1']);
  });

  test('the answer to the latest request counts: unsubscribed then refused is refused', async () => {
    const { h, client } = await openClient();
    const first = client.subscribe('room:1');
    h.last.receive({ event: 'subscribed', topic: 'room:1' });
    await first;
    first.unsubscribe();
    await settle();
    const again = client.subscribe('room:1');
    assert.deepEqual(asked(h.last), ['subscribe room:1', 'unsubscribe room:1', 'subscribe room:1']);
    h.last.receive({ event: 'unsubscribed', topic: 'room:1' }); // the answer to the unsubscribe
    assert.equal(again.state, 'subscribing');
    h.last.receive({ event: 'subscribe-refused', topic: 'room:1' }); // e.g. removed from the room meanwhile
    await assert.rejects(again, TopicRefusedError);
  });

  test('when the server ends a subscription (access revoked) the state becomes refused', async () => {
    const { h, client } = await openClient();
    const subscription = client.subscribe('room:1');
    const states = [];
    subscription.onState((state) => states.push(state));
    h.last.receive({ event: 'subscribed', topic: 'room:1' });
    await subscription;
    h.last.receive({ event: 'unsubscribed', topic: 'room:1' });
    assert.equal(subscription.state, 'refused');
    assert.deepEqual(states, ['subscribed', 'refused']);
  });
});

describe('topic listeners', () => {
  test("on(key, h, { topic }) gets only that topic's frames; a plain on(key) or '*' never gets a topic's", async () => {
    const { h, client } = await openClient();
    const seen = [];
    client.subscribe('room:1');
    client.subscribe('room:2');
    client.on('room-messages-updated', (event) => seen.push(['room:1', event]), { topic: 'room:1' });
    client.on('*', (event) => seen.push(['room:2 *', event]), { topic: 'room:2' });
    client.on('room-messages-updated', (event) => seen.push(['user', event]));
    client.on('*', (event) => seen.push(['user *', event]));
    h.last.receive({ event: 'subscribed', topic: 'room:1' });
    h.last.receive({ event: 'subscribed', topic: 'room:2' });
    h.last.receive({ event: 'room-messages-updated', topic: 'room:1' });
    h.last.receive({ event: 'presence-updated', topic: 'room:2' });
    h.last.receive({ event: 'room-messages-updated', topic: 'room:3' }); // not wanted here: dropped
    h.last.receive({ event: 'room-messages-updated', topic: 'Not A Topic' });
    h.last.receive({ event: 'room-messages-updated' }); // the user's own frame
    assert.deepEqual(seen, [
      ['room:1', { key: 'room-messages-updated', count: 1, topic: 'room:1' }],
      ['room:2 *', { key: 'presence-updated', count: 1, topic: 'room:2' }],
      ['user', { key: 'room-messages-updated', count: 1 }],
      ['user *', { key: 'room-messages-updated', count: 1 }],
    ]);
  });

  test("a topic's frames stop once the topic is let go, even with its listener still there", async () => {
    const { h, client } = await openClient();
    const seen = [];
    const subscription = client.subscribe('room:1');
    client.on('room-messages-updated', (event) => seen.push(event.topic), { topic: 'room:1' });
    h.last.receive({ event: 'room-messages-updated', topic: 'room:1' });
    subscription.unsubscribe();
    await settle();
    h.last.receive({ event: 'room-messages-updated', topic: 'room:1' }); // in flight before the unsubscribe
    assert.deepEqual(seen, ['room:1']);
  });

  test('coalescing merges per topic and key', async () => {
    const { h, client } = await openClient({ coalesceMs: 100 });
    const seen = [];
    for (const topic of ['room:1', 'room:2']) {
      client.subscribe(topic);
      client.on('room-messages-updated', (event) => seen.push(event), { topic });
    }
    client.on('room-messages-updated', (event) => seen.push(event));
    for (let n = 0; n < 3; n += 1) h.last.receive({ event: 'room-messages-updated', topic: 'room:1' });
    h.last.receive({ event: 'room-messages-updated', topic: 'room:2' });
    h.last.receive({ event: 'room-messages-updated' });
    await h.clock.advance(100);
    assert.deepEqual(seen, [
      { key: 'room-messages-updated', count: 3, topic: 'room:1' },
      { key: 'room-messages-updated', count: 1, topic: 'room:2' },
      { key: 'room-messages-updated', count: 1 },
    ]);
  });
});

describe('after a reconnect', () => {
  test('every topic still wanted is asked for again, and resync comes only once all are answered', async () => {
    const { h, client } = await openClient();
    const order = [];
    client.on(RESYNC, () => order.push('resync'));
    const one = client.subscribe('room:1');
    const two = client.subscribe('room:2');
    client.subscribe('room:3').unsubscribe();
    h.last.receive({ event: 'subscribed', topic: 'room:1' });
    h.last.receive({ event: 'subscribed', topic: 'room:2' });
    await Promise.all([one, two]);
    await settle();

    await reconnect(h);
    assert.deepEqual(asked(h.last), ['subscribe room:1', 'subscribe room:2']);
    assert.deepEqual(order, [], 'no resync before the answers');
    h.last.receive({ event: 'subscribed', topic: 'room:1' });
    assert.deepEqual(order, []);
    h.last.receive({ event: 'subscribed', topic: 'room:2' });
    assert.deepEqual(order, ['resync']);
    assert.equal(two.state, 'subscribed');
  });

  test('a refused re-subscribe sets the state to refused, and resync still comes', async () => {
    const { h, client } = await openClient();
    const order = [];
    client.on(RESYNC, () => order.push('resync'));
    const subscription = client.subscribe('room:1');
    subscription.onState((state) => order.push(state));
    h.last.receive({ event: 'subscribed', topic: 'room:1' });
    await subscription;
    await reconnect(h);
    h.last.receive({ event: 'subscribe-refused', topic: 'room:1' }); // removed from the room while offline
    assert.deepEqual(order, ['subscribed', 'refused', 'resync']);
    assert.equal(subscription.state, 'refused');
  });

  test('a server that never answers delays resync by subscribeTimeoutMs at most', async () => {
    const { h, client } = await openClient({ subscribeTimeoutMs: 3000 });
    const order = [];
    client.on(RESYNC, () => order.push('resync'));
    client.subscribe('room:1');
    await reconnect(h);
    await h.clock.advance(2999);
    assert.deepEqual(order, []);
    await h.clock.advance(1);
    assert.deepEqual(order, ['resync']);
    h.last.receive({ event: 'subscribed', topic: 'room:1' });
    assert.deepEqual(order, ['resync'], 'once');
  });

  test('without topics, resync comes right after the reconnect as before', async () => {
    const { h, client } = await openClient();
    const order = [];
    client.on(RESYNC, () => order.push('resync'));
    await reconnect(h);
    assert.deepEqual(order, ['resync']);
  });

  test('the 2-hour rotation re-subscribes on the new socket before resync', async () => {
    const h = harness();
    const client = h.create(createRealtime, { pingIntervalMs: 200 * MINUTE });
    const order = [];
    client.on(RESYNC, () => order.push('resync'));
    client.subscribe('room:1');
    client.connect();
    await settle();
    h.last.accept();
    h.last.receive({ event: 'subscribed', topic: 'room:1' });
    await h.clock.advance(110 * MINUTE);
    assert.equal(h.sockets.length, 2);
    h.last.accept();
    assert.deepEqual(asked(h.last), ['subscribe room:1']);
    assert.deepEqual(order, []);
    h.last.receive({ event: 'subscribed', topic: 'room:1' });
    assert.deepEqual(order, ['resync']);
  });
});
