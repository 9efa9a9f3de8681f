// Types for realtime.js: the browser side of the push-to-refetch contract. The server sends only
// `{"event": "<key>"}` frames (and `{"event": "<key>", "topic": "<topic>"}` for a topic's);
// handlers learn which data changed and refetch it over REST.

/** The connection state, in the order a page usually sees them. */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Every connection state, in that order. */
export declare const STATES: readonly ConnectionState[];

/** The synthetic key emitted after every reconnect: refetch whatever is on screen. */
export declare const RESYNC: 'resync';

/**
 * Who holds the socket for this client: `own` (its own socket: sharing off or unavailable),
 * `leader` (holds the one socket of its group of tabs) or `follower` (another tab of the group does).
 */
export type Role = 'own' | 'leader' | 'follower';

/** Every role. */
export declare const ROLES: readonly Role[];

/** What a handler receives: the key, and how many frames of it a coalescing window merged (1 without). */
export interface RealtimeEvent {
  readonly key: string;
  readonly count: number;
  /** The topic of a topic's frame (handlers registered with `{ topic }`); absent for the user's own frames. */
  readonly topic?: string;
}

/**
 * A topic subscription: waiting for the server (`subscribing`), acknowledged (`subscribed`), or
 * `refused` (not authorized, a limit reached, or ended by the server when access was revoked).
 */
export type TopicState = 'subscribing' | 'subscribed' | 'refused';

/** Every topic state, in that order. */
export declare const TOPIC_STATES: readonly TopicState[];

/** The contract's topic names: `^[a-z0-9][a-z0-9:._-]{0,127}$` (`room:42`). */
export declare const TOPIC_PATTERN: RegExp;

/** How `subscribe(topic)` rejects when the server answers `subscribe-refused`. */
export declare class TopicRefusedError extends Error {
  constructor(topic: string);
  readonly name: 'TopicRefusedError';
  /** The topic the server refused. */
  readonly topic: string;
}

/** One holder of a topic: the topic is unsubscribed once every holder has called `unsubscribe()`. */
export interface TopicHandle {
  readonly topic: string;
  /** The server's latest answer for the topic (renewed after every reconnect). */
  readonly state: TopicState;
  /** Called whenever the state changes, e.g. `refused` when a re-subscribe after a reconnect is refused. */
  onState(listener: (state: TopicState) => void): Unsubscribe;
  /** Let go of the topic; calling it again does nothing. Pending, the promise rejects with an `AbortError`. */
  unsubscribe(): void;
}

/**
 * What `subscribe(topic)` returns: a promise that resolves (to the handle) on `subscribed` and
 * rejects with a `TopicRefusedError` on `subscribe-refused`, and the handle itself, usable at once.
 */
export interface TopicSubscription extends Promise<TopicHandle>, TopicHandle {}

/** Which frames `on` listens to: a topic's (`{ topic: 'room:42' }`) instead of the user's own. */
export interface ListenOptions {
  readonly topic?: string;
}

/** Called once per frame of its key (or per coalescing window). A rejected promise goes to `onError`. */
export type RealtimeHandler = (event: RealtimeEvent) => void | Promise<void>;

/** Called on every change of the connection state. */
export type StateListener = (state: ConnectionState) => void;

/** Called on every change of the role; `null` once the client is closed. */
export type RoleListener = (role: Role | null) => void;

/** Removes the subscription it was returned for; calling it again does nothing. */
export type Unsubscribe = () => void;

/**
 * Returns a Firebase ID token, e.g. `({ forceRefresh }) => user.getIdToken(forceRefresh)`.
 * Called before every connection attempt; `forceRefresh` is true after a refused attempt.
 */
export type GetToken = (request: { readonly forceRefresh: boolean }) => string | Promise<string>;

/** Where a reported error came from: a handler's key, a state listener, getToken, connect or ping. */
export type ErrorContext =
  | { readonly key: string }
  | { readonly key: string; readonly topic: string }
  | { readonly topic: string }
  | { readonly stateListener: ConnectionState }
  | { readonly roleListener: Role | null }
  | { readonly share: true }
  | { readonly getToken: true }
  | { readonly connect: true }
  | { readonly ping: true };

/** The part of a WebSocket the client uses (the browser's `WebSocket` fits). */
export interface WebSocketLike {
  binaryType: string;
  // Handler parameters are `any` so that the browser's WebSocket (MessageEvent, CloseEvent) fits.
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: the browser's, or one injected for tests. */
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

/** The timer functions the client schedules with (injectable for tests). */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(id: any): void;
  /** The wall clock in ms (default `Date.now`): the connection's age is checked against it. */
  now?(): number;
}

/** The part of the Web Locks API (`navigator.locks`) the client uses to elect a leader tab. */
export interface LockManagerLike {
  request(name: string, options: any, callback: (lock: unknown) => unknown): Promise<unknown>;
}

/** The part of a BroadcastChannel the client uses to relay frames and state between tabs. */
export interface BroadcastChannelLike {
  onmessage: ((event: any) => void) | null;
  postMessage(message: unknown): void;
  close(): void;
}

/** A BroadcastChannel constructor: the browser's, or one injected for tests. */
export type BroadcastChannelConstructor = new (name: string) => BroadcastChannelLike;

/** The part of `window` / `document` the client listens to (`online`, `visibilitychange`). */
export interface PageEvents {
  addEventListener?(type: string, listener: () => void): void;
  removeEventListener?(type: string, listener: () => void): void;
}

export interface RealtimeOptions {
  /** `wss://{api-id}.execute-api.{region}.amazonaws.com/{stage}`, locally `ws://127.0.0.1:8001`. */
  url: string;
  /** Called before every connection attempt; the token travels as the subprotocol pair `bearer, <token>`. */
  getToken: GetToken;
  /** Connect on creation (default `true`); `false` waits for `connect()`. */
  autoConnect?: boolean;
  /** Merge frames of a key arriving within this many ms into one call: one number, or per key. Default 0 (off). */
  coalesceMs?: number | { readonly [key: string]: number };
  /** Backoff base (default 500 ms). */
  baseDelayMs?: number;
  /** Backoff cap (default 30,000 ms). */
  maxDelayMs?: number;
  /** A connection open this long resets the backoff (default 10,000 ms). */
  stableAfterMs?: number;
  /** A handshake still pending after this counts as failed (default 15,000 ms). */
  connectTimeoutMs?: number;
  /** Keep-alive ping period (default 300,000 ms: API Gateway closes idle connections at 10 minutes). */
  pingIntervalMs?: number;
  /** How long to wait for the ping's `pong` (default 10,000 ms). */
  pongTimeoutMs?: number;
  /** Reconnect before API Gateway's 2-hour limit (default 6,600,000 ms). */
  maxConnectionAgeMs?: number;
  /** After a reconnect, `resync` waits for the re-subscribes' answers at most this long (default 10,000 ms). */
  subscribeTimeoutMs?: number;
  /**
   * Share one socket among the tabs of the same origin, url and user (default `true`): a leader tab
   * holds it and the others follow over BroadcastChannel. Without Web Locks or BroadcastChannel,
   * or with `false`, each client has its own socket.
   */
  shareConnection?: boolean;
  /** Handler, state-listener and getToken failures (default `console.error`). */
  onError?: (error: unknown, context: ErrorContext) => void;
  /** The WebSocket constructor (default the browser's). */
  WebSocket?: WebSocketConstructor;
  /** The Web Locks API (default `navigator.locks`; `null` for none). */
  locks?: LockManagerLike | null;
  /** The BroadcastChannel constructor (default the browser's; `null` for none). */
  BroadcastChannel?: BroadcastChannelConstructor | null;
  /** Timer functions (default the global ones). */
  timers?: Timers;
  /** A number in [0, 1) for the backoff jitter (default `Math.random`). */
  random?: () => number;
  /** Listened to for `online` (default the global `window`; `null` for none). */
  window?: (PageEvents & { readonly document?: PageDocument | null }) | null;
  /** Listened to for `visibilitychange` (default `window.document`; `null` for none). */
  document?: PageDocument | null;
}

/** The part of `document` the client reads. */
export interface PageDocument extends PageEvents {
  readonly visibilityState?: string;
}

export interface RealtimeClient {
  /**
   * Listen to an event key (`'*'` for every key, `resync` included) of the user's own frames, or,
   * with `{ topic }`, of that topic's frames only (`'*'`: every key of the topic; no `resync`).
   */
  on(key: string, handler: RealtimeHandler, options?: ListenOptions): Unsubscribe;
  /**
   * Ask the server for a topic's frames. Counted per topic: the server is asked once however many
   * parts of the page (or tabs) want it, and told to stop when the last lets go. Throws a TypeError
   * for a name that does not match `TOPIC_PATTERN`.
   */
  subscribe(topic: string): TopicSubscription;
  /** Listen to connection state changes. */
  onState(listener: StateListener): Unsubscribe;
  /** Listen to role changes (`own`, `leader`, `follower`; `null` when closed). */
  onRole(listener: RoleListener): Unsubscribe;
  /** Start (or, after `close()`, restart) connecting; a no-op while already wanted. */
  connect(): void;
  /** Close the socket (code 1000), cancel every timer and stop reconnecting. */
  close(): void;
  /** The current connection state. */
  readonly state: ConnectionState;
  /** Who holds the socket for this client; `null` while closed. */
  readonly role: Role | null;
  /** The topics this client wants (subscribed or not yet answered or refused). */
  readonly topics: readonly string[];
}

/**
 * Open a self-healing WebSocket that delivers event keys to subscribers.
 *
 * const realtime = createRealtime({ url, getToken: ({ forceRefresh }) => user.getIdToken(forceRefresh) });
 * realtime.on('jobs-updated', () => refetchJobs());
 */
export declare function createRealtime(options: RealtimeOptions): RealtimeClient;
