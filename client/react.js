// React binding for client/realtime.js. React is the app's own (a peer dependency): this module
// imports the bare specifier 'react', which the app's bundler or import map resolves. No JSX, no build step.

import {
  createContext,
  createElement,
  useContext,
  useEffect,
  useLayoutEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
} from 'react';

import { createRealtime, RESYNC } from './realtime.js';

const RealtimeContext = createContext(null);

/**
 * Makes a realtime client available to the components below it.
 *
 * createElement(RealtimeProvider, { url: WS_URL, getToken: ({ forceRefresh }) => user.getIdToken(forceRefresh) }, app)
 *
 * Pass `client` to share one you created (the provider then neither connects nor closes it), or
 * `url` + `getToken` (+ `options` for createRealtime) and the provider creates the client, connects it
 * on mount and closes it on unmount. The latest `getToken` is always used; a new `url` means a new client.
 */
export function RealtimeProvider({ client, url, getToken, options, children }) {
  const getTokenRef = useRef(getToken);
  useIsomorphicLayoutEffect(() => {
    getTokenRef.current = getToken;
  });
  const owned = useMemo(() => {
    if (client) return null;
    // Created without connecting: rendering must stay free of side effects (StrictMode renders twice).
    return createRealtime({
      ...options,
      url,
      getToken: (hint) => getTokenRef.current(hint),
      autoConnect: false,
    });
    // `options` are read once per url: pass a new url (or a `key`) to change them.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, url]);

  useEffect(() => {
    if (!owned) return undefined;
    owned.connect();
    return () => owned.close();
  }, [owned]);

  return createElement(RealtimeContext.Provider, { value: client ?? owned }, children);
}

/** The client of the nearest RealtimeProvider (throws outside one). */
export function useRealtimeClient() {
  const client = useContext(RealtimeContext);
  if (!client) throw new Error('useRealtimeClient: no <RealtimeProvider> above this component');
  return client;
}

/**
 * Calls `handler({ key, count })` when `key` arrives, and, unless `{ resync: false }`, also on
 * `resync` (after every reconnect), so one refetch function covers both.
 *
 * useRealtimeEvent('chat-messages-updated', () => refetchUnread());
 * useRealtimeEvent('room-messages-updated', () => refetchRoom(), { topic: `room:${roomId}` });
 *
 * With `topic`, only that topic's frames (`{ key, count, topic }`) call it; the topic itself is
 * subscribed by `useRealtimeTopic`. A `null` topic listens to nothing (no room selected yet).
 * The latest `handler` is used without resubscribing, so an inline arrow function is fine.
 */
export function useRealtimeEvent(key, handler, { resync = true, topic } = {}) {
  const client = useRealtimeClient();
  const handlerRef = useRef(handler);
  useIsomorphicLayoutEffect(() => {
    handlerRef.current = handler;
  });
  const off = topic === null;
  useEffect(() => {
    if (off) return undefined;
    const call = (event) => handlerRef.current(event);
    const unsubscribes = [client.on(key, call, topic === undefined ? undefined : { topic })];
    // '*' and 'resync' subscriptions already receive resync: subscribing twice would call twice.
    if (resync && (topic !== undefined || (key !== '*' && key !== RESYNC))) unsubscribes.push(client.on(RESYNC, call));
    return () => unsubscribes.forEach((unsubscribe) => unsubscribe());
  }, [client, key, resync, topic, off]);
}

/**
 * Subscribes to `topic` while the component is mounted (and while `topic` is the same) and
 * returns the server's answer, re-rendering on change: `subscribing`, `subscribed` or `refused`
 * (also after a reconnect whose re-subscribe is refused). `null` subscribes to nothing and returns null.
 *
 * const access = useRealtimeTopic(`room:${roomId}`);
 * if (access === 'refused') return <p>This room is not yours.</p>;
 */
export function useRealtimeTopic(topic) {
  const client = useRealtimeClient();
  const [seen, setSeen] = useState(null); // { client, topic, state }: the answer for what was rendered
  useEffect(() => {
    if (topic === null || topic === undefined) return undefined;
    const subscription = client.subscribe(topic);
    const show = (state) => setSeen({ client, topic, state });
    show(subscription.state);
    const off = subscription.onState(show);
    return () => {
      off();
      subscription.unsubscribe();
    };
  }, [client, topic]);
  if (topic === null || topic === undefined) return null;
  // Until the effect runs for a new topic, the previous topic's answer is not this one's.
  return seen && seen.client === client && seen.topic === topic ? seen.state : 'subscribing';
}

/** The connection state, re-rendering on change: `connecting | open | reconnecting | closed`. */
export function useRealtimeState() {
  const client = useRealtimeClient();
  const read = () => client.state;
  return useSyncExternalStore(client.onState, read, read);
}

// useLayoutEffect warns during server rendering; there the handler ref is never read anyway.
const useIsomorphicLayoutEffect = typeof document === 'undefined' ? useEffect : useLayoutEffect;
