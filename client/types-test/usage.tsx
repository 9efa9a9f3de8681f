// What an app writes with the package, checked by `tsc --noEmit --strict` (make test).
// It imports the package by name, as an app does: the types come from package.json's "exports".
import { initializeApp } from 'firebase/app';
import { browserSessionPersistence, getAuth, onIdTokenChanged, setPersistence, type User } from 'firebase/auth';
import { useEffect, useState } from 'react';

import {
  createRealtime,
  RESYNC,
  ROLES,
  STATES,
  TOPIC_PATTERN,
  TOPIC_STATES,
  TopicRefusedError,
  type ConnectionState,
  type Role,
  type RealtimeClient,
  type RealtimeEvent,
  type TopicHandle,
  type TopicState,
  type TopicSubscription,
} from 'chalice-realtime-client';
import {
  RealtimeProvider,
  useRealtimeClient,
  useRealtimeEvent,
  useRealtimeState,
  useRealtimeTopic,
} from 'chalice-realtime-client/react';

const API_URL = 'https://xyz789.execute-api.eu-west-1.amazonaws.com/api';
const WS_URL = 'wss://abc123.execute-api.eu-west-1.amazonaws.com/api/';

const auth = getAuth(initializeApp({ apiKey: 'key', authDomain: 'demo.firebaseapp.com', projectId: 'demo' }));
void setPersistence(auth, browserSessionPersistence);

// ------------------------------------------------------------------ without React

export function plainPage(user: User): RealtimeClient {
  const realtime = createRealtime({
    url: WS_URL,
    getToken: ({ forceRefresh }) => user.getIdToken(forceRefresh),
    coalesceMs: { 'jobs-updated': 200 },
    onError: (error, context) => console.warn('realtime', context, error),
    window,
    document,
  });
  const off = realtime.on('jobs-updated', (event: RealtimeEvent) => {
    const merged: number = event.count;
    console.log(event.key, merged);
  });
  realtime.on(RESYNC, async () => {
    await fetch(`${API_URL}/jobs`);
  });
  realtime.onState((state: ConnectionState) => {
    document.title = state;
  });
  const known: readonly ConnectionState[] = STATES;
  console.log(known.includes(realtime.state));
  realtime.onRole((role: Role | null) => {
    document.body.dataset.role = role ?? 'closed';
  });
  const roles: readonly Role[] = ROLES;
  console.log(realtime.role !== null && roles.includes(realtime.role));
  off();
  return realtime;
}

// Topics: subscribe, await the answer, listen to the topic's frames, let go.
export async function roomPage(realtime: RealtimeClient, roomId: string): Promise<() => void> {
  const topic = `room:${roomId}`;
  if (!TOPIC_PATTERN.test(topic)) throw new Error('not a topic');
  const subscription: TopicSubscription = realtime.subscribe(topic);
  const stopListening = realtime.on(
    'room-messages-updated',
    (event) => {
      const from: string | undefined = event.topic;
      console.log(from, event.count);
    },
    { topic },
  );
  subscription.onState((state: TopicState) => console.log(topic, state, TOPIC_STATES.indexOf(state)));
  try {
    const handle: TopicHandle = await subscription;
    console.log(handle.topic, handle.state === 'subscribed');
  } catch (error) {
    if (error instanceof TopicRefusedError) console.log('refused:', error.topic);
  }
  console.log(realtime.topics.includes(topic));
  return () => {
    stopListening();
    subscription.unsubscribe();
  };
}

// A client for tests: every collaborator injected.
export const testClient = createRealtime({
  url: 'ws://127.0.0.1:8001',
  getToken: () => 'token',
  autoConnect: false,
  WebSocket,
  timers: {
    setTimeout: (callback, ms) => setTimeout(callback, ms),
    clearTimeout: (id) => clearTimeout(id),
    now: () => Date.now(),
  },
  shareConnection: true,
  locks: navigator.locks,
  BroadcastChannel,
  random: () => 0.5,
  window: null,
  document: null,
});

// ------------------------------------------------------------------ React

export function App() {
  const [user, setUser] = useState<User | null>(auth.currentUser);
  useEffect(() => onIdTokenChanged(auth, setUser), []);
  if (!user) return null;
  return (
    <RealtimeProvider
      key={user.uid}
      url={WS_URL}
      getToken={({ forceRefresh }) => user.getIdToken(forceRefresh)}
      options={{ coalesceMs: 100 }}
    >
      <UnreadBadge user={user} />
    </RealtimeProvider>
  );
}

export function Shared({ client }: { client: RealtimeClient }) {
  return (
    <RealtimeProvider client={client}>
      <ConnectionDot />
    </RealtimeProvider>
  );
}

function UnreadBadge({ user }: { user: User }) {
  const [unread, setUnread] = useState<number | null>(null);
  const refetch = async () => {
    const token = await user.getIdToken();
    const response = await fetch(`${API_URL}/messages/unread-count`, { headers: { Authorization: `Bearer ${token}` } });
    if (response.ok) setUnread(((await response.json()) as { unread: number }).unread);
  };
  useRealtimeEvent('chat-messages-updated', refetch);
  useRealtimeEvent('jobs-updated', (event) => console.log(event.count), { resync: false });
  return <span>{unread ?? '…'}</span>;
}

export function RoomMessages({ roomId }: { roomId: string | null }) {
  const topic = roomId === null ? null : `room:${roomId}`;
  const access: TopicState | null = useRealtimeTopic(topic);
  const always: TopicState = useRealtimeTopic('room:lobby');
  useRealtimeEvent('room-messages-updated', (event) => console.log(event.topic), { topic });
  useRealtimeEvent('presence-updated', () => undefined, { topic: 'room:lobby', resync: false });
  if (access === 'refused') return <p>not a member</p>;
  return <span>{always}</span>;
}

function ConnectionDot() {
  const state: ConnectionState = useRealtimeState();
  const client: RealtimeClient = useRealtimeClient();
  return <span title={client.state} className={`dot dot-${state}`} />;
}
