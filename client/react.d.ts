// Types for react.js: a provider and hooks over createRealtime. React (>= 18) is the app's own.

import type { ReactElement, ReactNode } from 'react';

import type { ConnectionState, GetToken, RealtimeClient, RealtimeHandler, RealtimeOptions, TopicState } from './realtime.js';

export type {
  ConnectionState,
  GetToken,
  RealtimeClient,
  RealtimeEvent,
  RealtimeHandler,
  RealtimeOptions,
  TopicState,
} from './realtime.js';

/** Options passed on to `createRealtime` by a provider that creates its client. */
export type ProviderOptions = Omit<RealtimeOptions, 'url' | 'getToken' | 'autoConnect'>;

/** A provider that creates, connects and (on unmount) closes its own client. */
export interface OwnClientProps {
  url: string;
  getToken: GetToken;
  options?: ProviderOptions;
  client?: undefined;
  children?: ReactNode;
}

/** A provider that shares a client you manage: it neither connects nor closes it. */
export interface SharedClientProps {
  client: RealtimeClient;
  url?: undefined;
  getToken?: undefined;
  options?: undefined;
  children?: ReactNode;
}

export type RealtimeProviderProps = OwnClientProps | SharedClientProps;

/** Makes a realtime client available to the components below it. */
export declare function RealtimeProvider(props: RealtimeProviderProps): ReactElement;

/** The client of the nearest RealtimeProvider (throws outside one). */
export declare function useRealtimeClient(): RealtimeClient;

/** Options of `useRealtimeEvent`. */
export interface RealtimeEventOptions {
  /** Also call the handler on `resync`, after every reconnect (default true). */
  readonly resync?: boolean;
  /** Listen to this topic's frames instead of the user's own; `null` listens to nothing. */
  readonly topic?: string | null;
}

/**
 * Calls `handler` when `key` arrives and, unless `{ resync: false }`, after every reconnect too.
 * With `{ topic }`, only that topic's frames. The latest `handler` is used without resubscribing.
 */
export declare function useRealtimeEvent(key: string, handler: RealtimeHandler, options?: RealtimeEventOptions): void;

/**
 * Subscribes to `topic` while mounted and returns the server's answer, re-rendering on change.
 * `null` subscribes to nothing and returns null.
 */
export declare function useRealtimeTopic(topic: string): TopicState;
export declare function useRealtimeTopic(topic: string | null): TopicState | null;

/** The connection state, re-rendering on change. */
export declare function useRealtimeState(): ConnectionState;
