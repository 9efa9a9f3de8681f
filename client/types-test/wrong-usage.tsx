// Calls the types must refuse. Each `@ts-expect-error` fails the check if its line compiles, and
// client/test/package.test.js removes the directives to show that tsc then reports these errors.
import { createRealtime } from 'chalice-realtime-client';
import { RealtimeProvider, useRealtimeEvent, useRealtimeTopic } from 'chalice-realtime-client/react';

const getToken = () => Promise.resolve('token');

export const client = createRealtime({
  url: 'wss://example.test',
  getToken,
  // @ts-expect-error wrong-option: no such option
  reconnect: true,
});

// @ts-expect-error wrong-handler: handlers receive { key, count }, not a string
client.on('jobs-updated', (key: string) => key.toUpperCase());

// @ts-expect-error wrong-state: a state listener receives a ConnectionState, not a number
client.onState((state: number) => state + 1);

// @ts-expect-error wrong-topic: a topic is a string
client.subscribe(42);

// @ts-expect-error wrong-listen-option: on takes { topic }
client.on('room-messages-updated', () => undefined, { room: 'room:1' });

// @ts-expect-error wrong-topic-state: a subscription's state is subscribing, subscribed or refused
export const opened: 'open' = client.subscribe('room:1').state;

// @ts-expect-error missing-token: getToken is required
export const noToken = createRealtime({ url: 'wss://example.test' });

export function Component() {
  // @ts-expect-error wrong-hook-option: useRealtimeEvent takes { resync }
  useRealtimeEvent('jobs-updated', () => undefined, { once: true });
  // @ts-expect-error nullable-topic: with a topic that may be null, the state may be null too
  const state: 'subscribed' | 'subscribing' | 'refused' = useRealtimeTopic(Math.random() > 0.5 ? 'room:1' : null);
  console.log(state);
  // @ts-expect-error wrong-provider: a provider needs url and getToken, or a client
  return <RealtimeProvider url="wss://example.test">{null}</RealtimeProvider>;
}
