// The library's own logic against a scripted WebSocket (no server): duplicates, gaps,
// epoch changes, resumes in the URL and moving to the next URL. The end-to-end tests run it
// against real notifiers (Tests/EndToEndTests/JSClientTests.swift).
import { test } from "node:test";
import assert from "node:assert/strict";
import { SwitchboardClient } from "../switchboard.js";

/** A WebSocket double: records what the client opens and sends; the test plays the server. */
class ScriptedSocket {
  static opened = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    ScriptedSocket.opened.push(this);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close() { this.readyState = 3; }
  open() { this.readyState = 1; this.onopen?.(); }
  frame(object) { this.onmessage?.({ data: JSON.stringify(object) }); }
  closeWith(code) { this.readyState = 3; this.onclose?.({ code }); }
  /** A connect that fails the way Node 20's WebSocket reports it: an error, no close. */
  failToConnect() { this.readyState = 3; this.onerror?.({ type: "error" }); }
}

function client(extra = {}) {
  ScriptedSocket.opened = [];
  const seen = { events: [], positions: [], resyncs: [], states: [] };
  const c = new SwitchboardClient({
    urls: ["ws://a/ws", "ws://b/ws"], token: "t", WebSocket: ScriptedSocket,
    initialBackoffMs: 1, maxBackoffMs: 2, random: () => 0,
    onEvent: (channel, event, p) => seen.events.push(`${channel}@${p.seq}/${p.prev}/${p.epoch}:${event.id}`),
    onPosition: (channel, p) => seen.positions.push(`${channel}@${p.seq}`),
    onResync: (channel, reason) => seen.resyncs.push(`${channel}:${reason}`),
    onState: state => seen.states.push(state),
    ...extra,
  });
  return { c, seen };
}

const event = (channel, seq, prev, epoch = "e1") => ({ type: "event", channel, seq, prev, epoch, event: { id: `id${seq}` } });
const settle = (ms = 20) => new Promise(resolve => setTimeout(resolve, ms));

test("events chain per channel; duplicates are dropped", async () => {
  const { c, seen } = client();
  c.connect();
  await settle();
  const ws = ScriptedSocket.opened[0];
  assert.equal(ws.url, "ws://a/ws?token=t");
  ws.open();
  ws.frame({ type: "hello", epoch: "e1" });
  for (const f of [event("g", 3, 0), event("r", 4, 0), event("g", 5, 3), event("g", 5, 3), event("g", 3, 0), { type: "position", channel: "g", seq: 6, prev: 5, epoch: "e1" }, event("g", 7, 6)]) ws.frame(f);
  assert.deepEqual(seen.events, ["g@3/0/e1:id3", "r@4/0/e1:id4", "g@5/3/e1:id5", "g@7/6/e1:id7"]);
  assert.deepEqual(seen.positions, ["g@6"]);
  assert.deepEqual(c.position("g"), { seq: 7, epoch: "e1" });
  c.close();
});

test("a gap resumes the channel and hands over only what chains again", async () => {
  const { c, seen } = client();
  c.connect();
  await settle();
  const ws = ScriptedSocket.opened[0];
  ws.open();
  ws.frame(event("g", 3, 0));
  ws.frame(event("g", 9, 7));  // 7 (and what came before it) never arrived
  assert.deepEqual(ws.sent, [{ type: "resume", channel: "g", after_seq: 3, epoch: "e1" }]);
  ws.frame(event("g", 10, 9));  // a live frame racing the resume: does not chain, dropped
  ws.frame(event("g", 7, 3));   // the replay
  ws.frame(event("g", 9, 7));
  ws.frame({ type: "resumed", channel: "g", seq: 9, replayed: 2, complete: true, epoch: "e1" });
  ws.frame(event("g", 10, 9));  // held back by the server until after resumed
  assert.deepEqual(seen.events.map(e => e.split("/")[0]), ["g@3", "g@7", "g@9", "g@10"]);
  assert.equal(ws.sent.length, 1, "one resume per gap");
  c.close();
});

test("a resume refused for now is sent again after a pause; one refused for good is not", async () => {
  const seenErrors = [];
  const { c, seen } = client({ onError: (code, message) => seenErrors.push(code) });
  c.connect();
  await settle();
  const ws = ScriptedSocket.opened[0];
  ws.open();
  ws.frame(event("g", 3, 0));
  ws.frame(event("r", 4, 0));
  ws.frame(event("g", 9, 7));
  ws.frame(event("r", 12, 10));
  assert.equal(ws.sent.length, 2);
  // JetStream is electing a leader: the notifier gives up on g's replay for now.
  ws.frame({ type: "error", code: "unavailable", message: "resume failed", channel: "g" });
  ws.frame({ type: "error", code: "not_member", message: "no", channel: "r" });
  ws.frame(event("g", 10, 9));  // a held live frame released with the refusal: still a gap
  await settle();
  const resumes = ws.sent.filter(f => f.channel === "g");
  assert.ok(resumes.length >= 2, "g's resume is sent again");
  assert.deepEqual(resumes.at(-1), { type: "resume", channel: "g", after_seq: 3, epoch: "e1" });
  assert.equal(ws.sent.filter(f => f.channel === "r").length, 1, "not_member is not retried");
  ws.frame(event("g", 7, 3));
  ws.frame(event("g", 9, 7));
  ws.frame(event("g", 10, 9));
  ws.frame({ type: "resumed", channel: "g", seq: 10, replayed: 3, complete: true, epoch: "e1" });
  ws.frame(event("g", 11, 10));
  assert.deepEqual(seen.events.filter(e => e.startsWith("g")).map(e => e.split("/")[0]), ["g@3", "g@7", "g@9", "g@10", "g@11"]);
  assert.deepEqual(seenErrors, ["unavailable", "not_member"]);
  c.close();
});

test("reconnects resume every channel in the URL with the epoch, and 4000 moves to the next URL", async () => {
  const { c, seen } = client();
  c.connect();
  await settle();
  const first = ScriptedSocket.opened[0];
  first.open();
  first.frame({ type: "hello", epoch: "e1" });
  first.frame(event("g", 3, 0));
  first.frame(event("r", 4, 0));
  first.closeWith(4000);
  await settle(150);  // a drained instance is left at once (within 100 ms, jittered)
  const second = ScriptedSocket.opened[1];
  assert.equal(second.url, "ws://b/ws?token=t&resume=" + encodeURIComponent("g:3,r:4") + "&epoch=e1");
  second.open();
  second.frame(event("g", 5, 3));
  assert.deepEqual(seen.states, ["connecting", "open", "reconnecting", "open"]);
  // A plain network close retries the same URL.
  second.closeWith(1006);
  await settle();
  assert.ok(ScriptedSocket.opened[2].url.startsWith("ws://b/ws?"));
  c.close();
  assert.equal(seen.states.at(-1), "closed");
});

test("a connect that fails with an error alone moves to the next URL", async () => {
  const { c } = client();
  c.connect();
  await settle();
  ScriptedSocket.opened[0].failToConnect();
  await settle(50);
  assert.equal(ScriptedSocket.opened.length, 2);
  assert.ok(ScriptedSocket.opened[1].url.startsWith("ws://b/ws?"), ScriptedSocket.opened[1].url);
  c.close();
});

test("garbage from the server is reported and the client reconnects, resuming", async () => {
  const errors = [];
  const { c, seen } = client({ onError: (code, message) => errors.push(code) });
  c.connect();
  await settle();
  const ws = ScriptedSocket.opened[0];
  ws.open();
  ws.frame(event("g", 3, 0));
  ws.onmessage({ data: "{not json" });
  ws.onmessage({ data: "[1,2]" });  // ignored: the socket was already given up
  assert.deepEqual(errors, ["bad_frame"]);
  await settle(50);
  const again = ScriptedSocket.opened[1];
  assert.ok(again.url.includes("resume=" + encodeURIComponent("g:3")), again.url);
  again.open();
  again.frame(event("g", 4, 3));
  assert.deepEqual(seen.events.map(e => e.split("/")[0]), ["g@3", "g@4"]);
  c.close();
});

test("a new epoch drops the old positions and says so; epoch_changed on resume too", async () => {
  const { c, seen } = client();
  c.connect();
  await settle();
  const ws = ScriptedSocket.opened[0];
  ws.open();
  ws.frame(event("g", 30, 0));
  ws.frame(event("r", 31, 0));
  ws.frame(event("g", 1, 0, "e2"));  // the stream was created anew
  assert.deepEqual(seen.resyncs, ["g:epoch_changed", "r:epoch_changed"]);
  assert.deepEqual(seen.events.at(-1), "g@1/0/e2:id1");
  ws.frame({ type: "resumed", channel: "r", seq: 0, replayed: 0, complete: false, epoch: "e3", reason: "epoch_changed" });
  assert.equal(c.epoch, "e3");
  assert.equal(c.position("r"), undefined);
  ws.frame({ type: "resumed", channel: "g", seq: 1, replayed: 0, complete: false, epoch: "e3" });
  assert.deepEqual(seen.resyncs.slice(2), ["r:epoch_changed", "g:incomplete"]);
  c.close();
});

test("bad options are refused with a clear error", () => {
  assert.throws(() => new SwitchboardClient({ urls: [], token: "t", WebSocket: ScriptedSocket }), /urls/);
  assert.throws(() => new SwitchboardClient({ urls: ["ws://a"], WebSocket: ScriptedSocket }), /token/);
});
