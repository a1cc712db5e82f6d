// Switchboard client: one ES module, no dependencies, for browsers and Node 20+ (run Node
// with --experimental-websocket, or pass a WebSocket implementation).
//
// What it does for an application (the protocol is in docs/DESIGN.md, "Client frames"):
// - connects with a token to one of the notifier URLs and reconnects with exponential backoff
//   and jitter, moving to the next URL when an instance drains (close 4000) or a connect fails;
// - keeps, per channel, the seq of the last event it handed over, with the stream's epoch, and
//   resumes every channel in the reconnect URL (`resume=…&epoch=…`);
// - drops duplicates (seq at or below the channel's last) and heals gaps: an event whose prev
//   is not the channel's last seq means something was missed, so the channel is resumed from
//   its last seq and events are handed over only as they chain again;
// - tells the application through onResync when history must be refetched: the stream was
//   created anew (`epoch_changed`) or a resume could not replay everything (`incomplete`);
// - tries a resume the notifier refused for now (`unavailable`: JetStream is electing leaders;
//   `busy`, `too_many_resumes`) again after a pause, with the reconnect's backoff.

const RECONNECT_CLOSE = 4000;
/** The notifier resumes at most this many channels of one socket at once. */
const MAX_RESUMES_AT_ONCE = 16;
/** Refusals of a resume that say "not now": it is sent again after a pause. */
const RETRYABLE_REFUSALS = new Set(["unavailable", "busy", "too_many_resumes"]);

export class SwitchboardClient {
  /**
   * @param {import("./switchboard.js").SwitchboardOptions} options
   */
  constructor(options) {
    if (!options || !Array.isArray(options.urls) || options.urls.length === 0) {
      throw new TypeError("SwitchboardClient needs options.urls: one or more notifier WebSocket URLs");
    }
    if (typeof options.token !== "string" && typeof options.token !== "function") {
      throw new TypeError("SwitchboardClient needs options.token: a string or a function returning one");
    }
    this.urls = options.urls.slice();
    this.token = options.token;
    this.onEvent = options.onEvent || (() => {});
    this.onPosition = options.onPosition || (() => {});
    this.onTyping = options.onTyping || (() => {});
    this.onResync = options.onResync || (() => {});
    this.onState = options.onState || (() => {});
    this.onError = options.onError || (() => {});
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this.WebSocket !== "function") {
      throw new TypeError("no WebSocket implementation: pass options.WebSocket (Node 20: run with --experimental-websocket)");
    }
    this.initialBackoffMs = options.initialBackoffMs ?? 250;
    this.maxBackoffMs = options.maxBackoffMs ?? 10000;
    this.random = options.random || Math.random;

    /** @type {Map<string, number>} channel → seq of the last event handed over */
    this.positions = new Map();
    /** The epoch the positions belong to ("" until the server says). */
    this.epoch = "";
    /** Channels being resumed on the current socket. */
    this.healing = new Set();
    /** Channels waiting for a free resume slot on the current socket. */
    this.queuedResumes = [];
    /** @type {Map<string, number>} channel → resumes refused in a row on the current socket */
    this.refusals = new Map();
    this.urlIndex = 0;
    this.attempt = 0;
    this.ws = null;
    this.state = "closed";
    this.stopped = true;
    this.timer = null;
  }

  /** Opens the connection (and keeps it open until close()). */
  connect() {
    this.stopped = false;
    this.attempt = 0;
    this._open();
  }

  /** Closes the connection for good. */
  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      try { ws.close(1000); } catch { /* already closing */ }
    }
    this._setState("closed");
  }

  /** Tells the channel's other members that this user is typing. */
  sendTyping(channel) {
    this._send({ type: "typing", channel });
  }

  /** The position the client holds for `channel` (undefined before its first event). */
  position(channel) {
    const seq = this.positions.get(channel);
    return seq === undefined ? undefined : { seq, epoch: this.epoch };
  }

  // MARK: connection

  async _open() {
    if (this.stopped) return;
    this._setState(this.attempt === 0 && this.positions.size === 0 ? "connecting" : "reconnecting");
    let token;
    try {
      token = typeof this.token === "function" ? await this.token() : this.token;
    } catch (error) {
      this.onError("token", String(error));
      this._scheduleReconnect(false);
      return;
    }
    if (this.stopped) return;
    const channels = [...this.positions.keys()];
    const inUrl = channels.slice(0, MAX_RESUMES_AT_ONCE);
    this.queuedResumes = channels.slice(MAX_RESUMES_AT_ONCE);
    this.healing = new Set(inUrl);
    let url = this.urls[this.urlIndex % this.urls.length];
    url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
    if (inUrl.length > 0) {
      url += "&resume=" + encodeURIComponent(inUrl.map(c => c + ":" + this.positions.get(c)).join(","));
      if (this.epoch) url += "&epoch=" + encodeURIComponent(this.epoch);
    }
    let ws;
    try {
      ws = new this.WebSocket(url);
    } catch (error) {
      this.onError("connect", String(error));
      this._scheduleReconnect(true);
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.attempt = 0;
      this._setState("open");
      this._sendQueuedResumes();
    };
    const ended = code => {
      if (this.ws !== ws) return;  // handled already (an error and its close)
      this.ws = null;
      this.healing.clear();
      this.refusals.clear();
      // 4000: this instance is draining; a socket that never opened: this URL is down.
      // Either way, the next URL.
      this._scheduleReconnect(code === RECONNECT_CLOSE || !opened, code === RECONNECT_CLOSE);
    };
    ws.onmessage = message => {
      if (this.ws !== ws) return;  // a socket given up on
      let frame;
      try {
        if (typeof message.data !== "string") throw new Error("a binary frame");
        frame = JSON.parse(message.data);
        if (frame === null || typeof frame !== "object" || typeof frame.type !== "string") throw new Error("no frame type");
      } catch (error) {
        // Not the protocol: say so, and start over on a fresh connection (resuming).
        this.onError("bad_frame", "unreadable frame from the server (" + error.message + ")");
        ended(1002);
        try { ws.close(); } catch { /* closing */ }
        return;
      }
      this._handle(frame);
    };
    // Some implementations (Node 20's) fire only `error` when a connect fails, no `close`.
    ws.onerror = () => {
      ended(1006);
      try { ws.close(); } catch { /* not open */ }
    };
    ws.onclose = event => ended(event.code);
  }

  _scheduleReconnect(nextUrl, soon = false) {
    if (this.stopped) return;
    if (nextUrl) this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    this._setState("reconnecting");
    const ceiling = soon ? 100 : Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** this.attempt);
    this.attempt += 1;
    // Full jitter between half and all of the ceiling, so clients of a drained instance spread out.
    const delay = ceiling / 2 + this.random() * ceiling / 2;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { this.timer = null; this._open(); }, delay);
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.onState(state);
  }

  _send(frame) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
  }

  // MARK: frames

  _handle(frame) {
    switch (frame.type) {
    case "hello":
      if (frame.epoch && !this.epoch) this.epoch = frame.epoch;
      break;
    case "event":
    case "position":
      this._positioned(frame);
      break;
    case "resumed":
      this._resumed(frame);
      break;
    case "typing":
      this.onTyping(frame.channel, frame.user);
      break;
    case "error":
      this._refused(frame);
      this.onError(frame.code, frame.message);
      break;
    default:
      break;
    }
  }

  /** An event or a position: handed over only if it chains with what the client holds. */
  _positioned(frame) {
    const channel = frame.channel;
    if (frame.epoch && frame.epoch !== this.epoch) {
      // Numbered anew: the positions held belong to a stream that is gone.
      const held = [...this.positions.keys()];
      const hadEpoch = this.epoch !== "";
      this.epoch = frame.epoch;
      this.positions.clear();
      if (hadEpoch) for (const c of held) this.onResync(c, "epoch_changed");
    }
    const last = this.positions.get(channel);
    if (last !== undefined && frame.seq <= last) return;  // a duplicate (at-least-once)
    if (last !== undefined && frame.prev !== last) {
      // A gap: events between last and this one never arrived. Resume the channel from
      // last; the replay brings them and this one, in order.
      this._heal(channel);
      return;
    }
    this.positions.set(channel, frame.seq);
    const position = { seq: frame.seq, prev: frame.prev, epoch: frame.epoch || this.epoch };
    if (frame.type === "event") this.onEvent(channel, frame.event, position);
    else this.onPosition(channel, position);
  }

  _heal(channel) {
    if (this.healing.has(channel) || this.queuedResumes.includes(channel)) return;
    if (this.healing.size >= MAX_RESUMES_AT_ONCE) {
      this.queuedResumes.push(channel);
      return;
    }
    this.healing.add(channel);
    this._send({ type: "resume", channel, after_seq: this.positions.get(channel), epoch: this.epoch || undefined });
  }

  _sendQueuedResumes() {
    while (this.queuedResumes.length > 0 && this.healing.size < MAX_RESUMES_AT_ONCE) {
      const channel = this.queuedResumes.shift();
      this.healing.add(channel);
      this._send({ type: "resume", channel, after_seq: this.positions.get(channel), epoch: this.epoch || undefined });
    }
  }

  /** An error naming a channel answers its resume: the channel is no longer being healed, and
   *  a refusal for now is tried again after a pause (left alone, the gap would drop every later
   *  event of the channel). */
  _refused(frame) {
    const channel = frame.channel;
    if (typeof channel !== "string" || frame.code === "already_resuming") return;
    this.healing.delete(channel);
    this._sendQueuedResumes();
    if (!RETRYABLE_REFUSALS.has(frame.code) || !this.positions.has(channel)) return;
    const refusals = (this.refusals.get(channel) ?? 0) + 1;
    this.refusals.set(channel, refusals);
    const ceiling = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** (refusals - 1));
    const ws = this.ws;
    setTimeout(() => { if (this.ws === ws && !this.stopped) this._heal(channel); }, ceiling / 2 + this.random() * ceiling / 2);
  }

  _resumed(frame) {
    const channel = frame.channel;
    this.healing.delete(channel);
    this.refusals.delete(channel);
    if (frame.reason === "epoch_changed") {
      this.positions.delete(channel);
      if (frame.epoch) this.epoch = frame.epoch;
      this.onResync(channel, "epoch_changed");
    } else {
      const last = this.positions.get(channel);
      // The replay may end on events this socket does not get (poison, others' skipped
      // echoes are positions): its last seq is where the channel now stands.
      if (frame.seq > 0 && (last === undefined || frame.seq > last)) this.positions.set(channel, frame.seq);
      if (frame.complete === false) this.onResync(channel, frame.reason === "membership" ? "membership" : "incomplete");
    }
    this._sendQueuedResumes();
  }
}
