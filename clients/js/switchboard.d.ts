/** Where an event sits in its channel: `prev` is the seq of the channel's previous event. */
export interface Position {
  seq: number;
  prev: number;
  /** The stream's numbering: seqs of different epochs cannot be compared. */
  epoch: string;
}

/** The `event` object of an event frame. */
export interface ChatEvent {
  id: string;
  sender: string;
  created_at_ms: number;
  kind: "message_created" | "message_edited" | "message_deleted" | "reaction" | "read_receipt" | "channel_updated" | "unknown";
  message_id?: string;
  text?: string;
  emoji?: string;
  removed?: boolean;
  name?: string;
  topic?: string;
}

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

/**
 * Why the application must refetch a channel's history from its own API:
 * `epoch_changed` — the event stream was created anew, earlier positions mean nothing;
 * `incomplete` — a resume could not replay everything missed (too many, or aged out);
 * `membership` — a resume reached back before the user's current join: those events are not
 *   the user's to see, and were left out.
 */
export type ResyncReason = "epoch_changed" | "incomplete" | "membership";

export interface SwitchboardOptions {
  /** Notifier WebSocket URLs, e.g. `ws://127.0.0.1:8081/ws`; the client moves to the next on close 4000 or a failed connect. */
  urls: string[];
  /** The JWT (`?token=`), or a function returning one (called before every connect). */
  token: string | (() => string | Promise<string>);
  /** An event, once, in channel order (duplicates dropped, gaps healed before it). */
  onEvent?: (channel: string, event: ChatEvent, position: Position) => void;
  /** The position of this user's own event sent without echo. */
  onPosition?: (channel: string, position: Position) => void;
  onTyping?: (channel: string, user: string) => void;
  onResync?: (channel: string, reason: ResyncReason) => void;
  onState?: (state: ConnectionState) => void;
  /** An `error` frame of the server (`code`, `message`), or a failed token or connect. */
  onError?: (code: string, message: string) => void;
  /** A WebSocket constructor (default: the global one). */
  WebSocket?: new (url: string) => WebSocket;
  /** First reconnect delay ceiling, doubling up to `maxBackoffMs` (defaults 250 and 10 000). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Source of jitter in [0, 1) (default Math.random). */
  random?: () => number;
}

export declare class SwitchboardClient {
  constructor(options: SwitchboardOptions);
  readonly state: ConnectionState;
  readonly epoch: string;
  connect(): void;
  close(): void;
  sendTyping(channel: string): void;
  /** The seq (and epoch) the client holds for a channel, undefined before its first event. */
  position(channel: string): { seq: number; epoch: string } | undefined;
}
