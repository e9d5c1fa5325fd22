// Types of legato.js (the legato.v1 channel client; docs/channels.md).

export type ClientState = "connecting" | "connected" | "disconnected" | "closed";
export type ChannelState = "joining" | "joined" | "left" | "failed";

export interface ClientOptions {
  /** Query parameters of the WebSocket URL; a function is called at every connect. */
  params?: Record<string, string> | (() => Record<string, string>);
  /** Ping interval, ms (default: the server's welcome.heartbeat, else 25,000). */
  heartbeat?: number;
  /** The connection is dead after heartbeat + grace ms without a frame (10,000). */
  grace?: number;
  baseDelay?: number; // 500 ms
  maxDelay?: number; // 30,000 ms
  queueLimit?: number; // 100 requests waiting for a connection
  /** "auto" (default): the WebSocket, SSE + POST after 2 WebSocket attempts in a row
   * that never reached welcome (each fallback connection probes the WebSocket and
   * goes back to it when it opens). */
  transport?: "auto" | "websocket" | "sse";
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
}

export interface Disconnection {
  code: number; // the close code; 1006 when the heartbeat found the connection dead
  delay: number; // ms until the next attempt
  advice: { delay: number; jitter: number; reason: string } | null;
}

export interface Member { conn: string; data: unknown }
export interface Lost { reason: "epoch" | "trimmed" | "lost" | "future" | "no_history"; first_kept: string | null }
export interface JoinReply { epoch: string; resumed: boolean; lost: Lost | null; last?: string | null; info: unknown }

export class LegatoError extends Error {
  constructor(code: string, message?: string, details?: unknown);
  /** A server code (invalid, not_found, forbidden, not_joined, timeout, too_many,
   * unavailable, error) or the client's (disconnected, queue_full, closed). */
  code: string;
  details: unknown;
}

declare class Emitter<E extends Record<string, (...args: any[]) => void>> {
  on<K extends keyof E>(event: K, fn: E[K]): () => void;
  off<K extends keyof E>(event: K, fn: E[K]): void;
}

export class Channel extends Emitter<{
  message: (data: unknown, meta: { id: string; topic: string }) => void;
  joined: (member: Member) => void;
  left: (member: Member) => void;
  lost: (info: Lost) => void;
  state: (state: ChannelState, detail?: JoinReply | LegatoError) => void;
  error: (error: LegatoError) => void;
}> {
  readonly client: Client;
  readonly topic: string;
  readonly state: ChannelState;
  readonly info: unknown;
  publish(data: unknown): Promise<string>;
  presence(): Promise<Member[]>;
  /** How many are on the topic now, without the list (cheap for a big room). */
  presenceCount(): Promise<number>;
  leave(): Promise<unknown>;
}

export class Client extends Emitter<{
  state: (state: ClientState, detail?: Disconnection) => void;
  error: (error: LegatoError) => void;
}> {
  constructor(url?: string, options?: ClientOptions);
  readonly url: string;
  readonly state: ClientState;
  readonly conn: string | null;
  /** The transport of the connection now (null before the first attempt). */
  readonly transport: "websocket" | "sse" | null;
  /** `since`: the first join resumes after this id ("0": all the topic keeps), in
   * `epoch` if given; later joins resume from the last id seen. */
  join(topic: string, options?: { data?: unknown; since?: string; epoch?: string }): Channel;
  call(name: string, data?: unknown, options?: { timeout?: number }): Promise<unknown>;
  close(): void;
}
