import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createRealtime, RESYNC } from '../realtime.js';
import { harness, settle } from './fakes.js';

const MINUTE = 60_000;

/** A harness with a connected, open client. */
async function openClient(options = {}, extra = {}) {
  const h = harness(options);
  const client = h.create(createRealtime, extra);
  client.connect();
  await settle();
  h.last.accept();
  return { h, client };
}

/** Wait out the backoff after a drop: the new socket is created, not yet answered. */
async function retry(h) {
  await h.clock.advance(backoffDelay(h));
}

/** The one pending timer after a drop is the backoff: its delay. */
function backoffDelay(h) {
  const delays = h.clock.pendingDelays();
  assert.equal(delays.length, 1, `expected only the retry timer, got ${JSON.stringify(delays)}`);
  return delays[0];
}

describe('connecting', () => {
  test('fetches a token for every connect and sends it as the bearer subprotocol, never in the URL', async () => {
    const { h } = await openClient();
    assert.deepEqual(h.last.protocols, ['bearer', 'token-1']);
    assert.equal(h.last.url, 'wss://example.test/ws');

    h.last.drop();
    await retry(h);
    assert.equal(h.sockets.length, 2);
    assert.deepEqual(h.last.protocols, ['bearer', 'token-2']);
    assert.deepEqual(h.tokenCalls, [{ forceRefresh: false }, { forceRefresh: false }]);
  });

  test('connects on creation unless autoConnect is false', async () => {
    const h = harness();
    const client = h.create(createRealtime, { autoConnect: true });
    assert.equal(client.state, 'connecting');
    await settle();
    assert.equal(h.sockets.length, 1);
  });

  test('reports states: connecting, open, reconnecting, open, closed', async () => {
    const { h, client } = await openClient();
    h.last.drop();
    await retry(h);
    h.last.accept();
    client.close();
    assert.deepEqual(h.states, ['connecting', 'open', 'reconnecting', 'open', 'closed']);
    assert.equal(client.state, 'closed');
  });

  test('close() stops reconnecting, closes the socket cleanly and removes its page listeners', async () => {
    const { h, client } = await openClient();
    const socket = h.last;
    assert.ok(h.page.listenerCount() + h.document.listenerCount() > 0);
    client.close();
    assert.equal(socket.closedByClient.code, 1000);
    socket.drop(); // the close event arriving afterwards changes nothing
    await h.clock.advance(10 * MINUTE);
    assert.equal(h.sockets.length, 1);
    assert.equal(h.page.listenerCount() + h.document.listenerCount(), 0);
    assert.equal(client.state, 'closed');
  });

  test('close() while the token is being fetched opens no socket', async () => {
    const h = harness();
    let release;
    const client = h.create(createRealtime, { getToken: () => new Promise((resolve) => (release = resolve)) });
    client.connect();
    client.close();
    release('late-token');
    await settle();
    assert.equal(h.sockets.length, 0);
    assert.equal(client.state, 'closed');
  });

  test('a getToken failure is reported and retried with backoff', async () => {
    const h = harness({ random: () => 1 });
    let calls = 0;
    const client = h.create(createRealtime, {
      getToken: async () => {
        calls += 1;
        if (calls === 1) throw new Error('network down');
        return 'good-token';
      },
    });
    client.connect();
    await settle();
    assert.equal(h.sockets.length, 0);
    assert.equal(h.errors.length, 1);
    assert.equal(client.state, 'reconnecting');
    assert.equal(backoffDelay(h), 500);
    await h.clock.advance(500);
    assert.deepEqual(h.last.protocols, ['bearer', 'good-token']);
  });

  test('a handshake that never completes is abandoned after connectTimeoutMs and retried', async () => {
    const h = harness();
    const client = h.create(createRealtime, { connectTimeoutMs: 5000 });
    client.connect();
    await settle();
    const stuck = h.last;
    await h.clock.advance(5000);
    assert.ok(stuck.closedByClient, 'the stuck socket is closed');
    assert.equal(client.state, 'reconnecting');
    await retry(h);
    assert.equal(h.sockets.length, 2);
    assert.deepEqual(h.tokenCalls.at(-1), { forceRefresh: true });
  });
});

describe('subscribers', () => {
  test('a handler gets { key, count } once per frame of its key, and "*" gets every key', async () => {
    const { h, client } = await openClient();
    const jobs = [];
    const all = [];
    client.on('jobs-updated', (event) => jobs.push(event));
    client.on('*', (event) => all.push(event.key));
    h.last.receive({ event: 'jobs-updated' });
    h.last.receive({ event: 'chat-messages-updated' });
    h.last.receive({ event: 'jobs-updated' });
    assert.deepEqual(jobs, [
      { key: 'jobs-updated', count: 1 },
      { key: 'jobs-updated', count: 1 },
    ]);
    assert.deepEqual(all, ['jobs-updated', 'chat-messages-updated', 'jobs-updated']);
  });

  test('unsubscribe stops delivery, also when called from inside a handler', async () => {
    const { h, client } = await openClient();
    const calls = [];
    const off = client.on('jobs-updated', () => calls.push('a'));
    let offB;
    client.on('jobs-updated', () => {
      calls.push('b');
      offC(); // unsubscribing a later handler during dispatch: it is not called for this frame
    });
    const offC = client.on('jobs-updated', () => calls.push('c'));
    offB = client.on('payments-updated', () => calls.push('p'));
    h.last.receive({ event: 'jobs-updated' });
    off();
    offB();
    off(); // twice is harmless
    h.last.receive({ event: 'jobs-updated' });
    h.last.receive({ event: 'payments-updated' });
    assert.deepEqual(calls, ['a', 'b', 'b']);
  });

  test('a handler that throws, or rejects, does not stop the others and is reported', async () => {
    const { h, client } = await openClient();
    const calls = [];
    client.on('jobs-updated', () => {
      throw new Error('boom');
    });
    client.on('jobs-updated', async () => {
      throw new Error('async boom');
    });
    client.on('jobs-updated', () => calls.push('second'));
    client.on('*', () => calls.push('star'));
    h.last.receive({ event: 'jobs-updated' });
    await settle();
    assert.deepEqual(calls, ['second', 'star']);
    assert.deepEqual(
      h.errors.map((e) => [e.error.message, e.context.key]),
      [
        ['boom', 'jobs-updated'],
        ['async boom', 'jobs-updated'],
      ],
    );
  });

  test('frames that are not {"event": string} are ignored, and pong is internal', async () => {
    const { h, client } = await openClient();
    const seen = [];
    client.on('*', (event) => seen.push(event.key));
    for (const junk of ['not json', '"jobs-updated"', 'null', '[]', '{}', '{"event": 5}', '{"event": ""}']) {
      h.last.receive(junk);
    }
    h.last.receive({ event: 'pong' });
    h.last.receive({ event: 'jobs-updated', extra: 'ignored' });
    assert.deepEqual(seen, ['jobs-updated']);
    assert.equal(h.errors.length, 0);
  });

  test('binary frames carrying the JSON are decoded', async () => {
    const { h, client } = await openClient();
    const seen = [];
    client.on('jobs-updated', (event) => seen.push(event.key));
    h.last.onmessage({ data: new TextEncoder().encode('{"event":"jobs-updated"}').buffer });
    assert.deepEqual(seen, ['jobs-updated']);
  });
});

describe('coalescing', () => {
  test('is off by default: every frame calls the handler at once', async () => {
    const { h, client } = await openClient();
    let calls = 0;
    client.on('jobs-updated', () => (calls += 1));
    for (let i = 0; i < 3; i += 1) h.last.receive({ event: 'jobs-updated' });
    assert.equal(calls, 3);
  });

  test('coalesceMs merges a burst of one key into one call with the count', async () => {
    const { h, client } = await openClient({}, { coalesceMs: 100 });
    const events = [];
    client.on('jobs-updated', (event) => events.push(event));
    client.on('chat-messages-updated', (event) => events.push(event));
    for (let i = 0; i < 3; i += 1) h.last.receive({ event: 'jobs-updated' });
    h.last.receive({ event: 'chat-messages-updated' });
    assert.deepEqual(events, [], 'nothing before the window closes');
    await h.clock.advance(100);
    assert.deepEqual(events, [
      { key: 'jobs-updated', count: 3 },
      { key: 'chat-messages-updated', count: 1 },
    ]);
    h.last.receive({ event: 'jobs-updated' });
    await h.clock.advance(100);
    assert.deepEqual(events.at(-1), { key: 'jobs-updated', count: 1 }, 'a new window after the first');
  });

  test('a per-key map coalesces only the keys it names', async () => {
    const { h, client } = await openClient({}, { coalesceMs: { 'jobs-updated': 250 } });
    const events = [];
    client.on('*', (event) => events.push(event));
    h.last.receive({ event: 'jobs-updated' });
    h.last.receive({ event: 'chat-messages-updated' });
    h.last.receive({ event: 'jobs-updated' });
    assert.deepEqual(events, [{ key: 'chat-messages-updated', count: 1 }]);
    await h.clock.advance(250);
    assert.deepEqual(events.at(-1), { key: 'jobs-updated', count: 2 });
  });
});

describe('reconnect', () => {
  test('emits resync after a reconnect, not on the first connect', async () => {
    const { h, client } = await openClient();
    const resyncs = [];
    const all = [];
    client.on(RESYNC, (event) => resyncs.push(event));
    client.on('*', (event) => all.push(event.key));
    client.on('jobs-updated', () => assert.fail('resync goes only to resync and * subscribers'));
    assert.equal(resyncs.length, 0);
    h.last.drop();
    await retry(h);
    assert.equal(resyncs.length, 0, 'not before the new socket is open');
    h.last.accept();
    assert.deepEqual(resyncs, [{ key: 'resync', count: 1 }]);
    assert.deepEqual(all, ['resync']);
  });

  test('emits resync when the first attempt failed and a later one opened', async () => {
    const h = harness();
    const client = h.create(createRealtime);
    const resyncs = [];
    client.on(RESYNC, () => resyncs.push(1));
    client.connect();
    await settle();
    h.last.refuse();
    await retry(h);
    h.last.accept();
    assert.equal(resyncs.length, 1, 'the page ran without a socket: whatever it fetched may be stale');
  });

  test('backoff delays stay within [0, min(cap, base * 2^n)] and reach the cap', async () => {
    const h = harness({ random: () => 0.999999 });
    const client = h.create(createRealtime);
    client.connect();
    await settle();
    const delays = [];
    for (let n = 0; n < 9; n += 1) {
      h.last.refuse();
      delays.push(backoffDelay(h));
      await h.clock.advance(delays.at(-1));
    }
    const ceilings = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
    delays.forEach((delay, n) => {
      assert.ok(delay >= 0 && delay <= ceilings[n], `attempt ${n}: ${delay} within [0, ${ceilings[n]}]`);
      assert.ok(delay > ceilings[n] * 0.999, `attempt ${n}: random near 1 gives the ceiling`);
    });
  });

  test('full jitter: the delay is random() times the ceiling, down to zero', async () => {
    const randoms = [0, 0.25, 0.5, 0.1];
    const h = harness({ randomValues: randoms });
    const client = h.create(createRealtime);
    client.connect();
    await settle();
    const delays = [];
    for (let n = 0; n < randoms.length; n += 1) {
      h.last.refuse();
      delays.push(backoffDelay(h));
      await h.clock.advance(delays.at(-1));
    }
    assert.deepEqual(delays, [0, 250, 1000, 400]); // ceilings 500, 1000, 2000, 4000
  });

  test('the backoff starts over once a connection stayed open for stableAfterMs', async () => {
    const h = harness({ random: () => 1 });
    const client = h.create(createRealtime, { stableAfterMs: 10_000 });
    client.connect();
    await settle();
    h.last.refuse();
    await h.clock.advance(500);
    h.last.refuse();
    await h.clock.advance(1000);
    h.last.accept();
    await h.clock.advance(9_000);
    h.last.drop(); // open 9 s: not stable, the exponent keeps growing (ceilings 500, 1000, 2000)
    assert.equal(backoffDelay(h), 2000);
    await h.clock.advance(2000);
    h.last.accept();
    await h.clock.advance(10_000);
    h.last.drop(); // open 10 s: stable, back to the base
    assert.equal(backoffDelay(h), 500);
  });

  test('a refused connection refreshes the token and backs off: no tight loop', async () => {
    const h = harness({ random: () => 1 });
    const client = h.create(createRealtime);
    client.connect();
    await settle();
    h.last.refuse();
    await settle();
    assert.equal(h.sockets.length, 1, 'no new attempt before the backoff delay');
    // Refuse every attempt for ten minutes of virtual time.
    for (let guard = 0; guard < 100 && h.clock.now < 10 * MINUTE; guard += 1) {
      await h.clock.advance(backoffDelay(h));
      h.last.refuse();
    }
    // 0.5+1+2+4+8+16 s, then one per 30 s: about 25 attempts in ten minutes, not thousands.
    assert.ok(h.sockets.length <= 26, `${h.sockets.length} attempts`);
    assert.ok(h.tokenCalls.slice(1).every((hint) => hint.forceRefresh === true));
    assert.equal(client.state, 'reconnecting');
  });

  test('after a refusal the token is force-refreshed once; once open, plain fetches again', async () => {
    const h = harness();
    const client = h.create(createRealtime);
    client.connect();
    await settle();
    h.last.refuse();
    await retry(h);
    h.last.accept();
    h.last.drop();
    await retry(h);
    assert.deepEqual(
      h.tokenCalls.map((hint) => hint.forceRefresh),
      [false, true, false],
    );
  });

  test('going online reconnects at once instead of waiting out the backoff', async () => {
    const h = harness({ random: () => 1 });
    const client = h.create(createRealtime, { baseDelayMs: 20_000 });
    client.connect();
    await settle();
    h.last.accept();
    h.last.drop();
    assert.equal(backoffDelay(h), 20_000);
    h.page.dispatch('online');
    await settle();
    assert.equal(h.sockets.length, 2);
    assert.deepEqual(h.clock.pendingDelays().filter((d) => d === 20_000), [], 'the backoff timer is gone');
    h.page.dispatch('online'); // an attempt in flight is left alone
    await settle();
    assert.equal(h.sockets.length, 2);
  });

  test('becoming visible reconnects at once; becoming hidden does not', async () => {
    const h = harness({ random: () => 1 });
    const client = h.create(createRealtime, { baseDelayMs: 20_000 });
    client.connect();
    await settle();
    h.last.accept();
    h.last.drop();
    h.document.visibilityState = 'hidden';
    h.document.dispatch('visibilitychange');
    await settle();
    assert.equal(h.sockets.length, 1);
    h.document.visibilityState = 'visible';
    h.document.dispatch('visibilitychange');
    await settle();
    assert.equal(h.sockets.length, 2);
  });

  test('becoming visible with an open socket checks it with a ping', async () => {
    const { h } = await openClient();
    h.document.dispatch('visibilitychange');
    assert.deepEqual(h.last.sent, [{ action: 'ping' }]);
    assert.equal(h.sockets.length, 1);
  });
});

describe('keep-alive', () => {
  test('pings every pingIntervalMs while pongs come back', async () => {
    const { h } = await openClient({}, { pingIntervalMs: 5 * MINUTE, pongTimeoutMs: 10_000 });
    await h.clock.advance(5 * MINUTE - 1);
    assert.deepEqual(h.last.sent, []);
    await h.clock.advance(1);
    assert.deepEqual(h.last.sent, [{ action: 'ping' }]);
    h.last.receive({ event: 'pong' });
    await h.clock.advance(5 * MINUTE);
    assert.deepEqual(h.last.sent, [{ action: 'ping' }, { action: 'ping' }]);
    h.last.receive({ event: 'pong' });
    await h.clock.advance(10_000);
    assert.equal(h.sockets.length, 1, 'still the same connection');
  });

  test('an extra ping (page became visible) does not start a second ping schedule', async () => {
    const { h } = await openClient({}, { pingIntervalMs: 5 * MINUTE });
    await h.clock.advance(MINUTE);
    h.document.dispatch('visibilitychange');
    h.last.receive({ event: 'pong' });
    await h.clock.advance(5 * MINUTE);
    h.last.receive({ event: 'pong' });
    assert.equal(h.last.sent.length, 2, 'one visibility ping and one scheduled 5 minutes after its pong');
  });

  test('a missing pong closes the connection, reconnects and resyncs', async () => {
    const { h, client } = await openClient({}, { pingIntervalMs: 5 * MINUTE, pongTimeoutMs: 10_000 });
    const resyncs = [];
    client.on(RESYNC, () => resyncs.push(1));
    const first = h.last;
    await h.clock.advance(5 * MINUTE + 9_999);
    assert.equal(first.closedByClient, null);
    await h.clock.advance(1);
    assert.ok(first.closedByClient, 'the silent socket is closed');
    assert.equal(client.state, 'reconnecting');
    first.receive({ event: 'jobs-updated' }); // a late frame from the abandoned socket is ignored
    await retry(h);
    assert.equal(h.sockets.length, 2);
    h.last.accept();
    assert.deepEqual(resyncs, [1]);
  });

  test('reconnects before the maximum connection age, at once, and resyncs', async () => {
    const { h, client } = await openClient({}, { maxConnectionAgeMs: 110 * MINUTE });
    const resyncs = [];
    client.on(RESYNC, () => resyncs.push(1));
    // Answer every ping so only the age limit can end the connection.
    h.last.send = function send(data) {
      this.sent.push(JSON.parse(data));
      queueMicrotask(() => this.receive({ event: 'pong' }));
    };
    await h.clock.advance(110 * MINUTE - 1);
    assert.equal(h.sockets.length, 1);
    await h.clock.advance(1);
    assert.equal(h.sockets[0].closedByClient.code, 1000);
    assert.equal(h.sockets.length, 2, 'the new connection is opened without a backoff delay');
    assert.equal(client.state, 'reconnecting');
    h.last.accept();
    assert.deepEqual(resyncs, [1]);
    assert.equal(client.state, 'open');
  });
});

describe('options', () => {
  test('rejects a missing url or getToken', () => {
    assert.throws(() => createRealtime({ getToken: async () => 't', autoConnect: false }), /url/);
    assert.throws(() => createRealtime({ url: 'wss://x', autoConnect: false }), /getToken/);
  });
});
