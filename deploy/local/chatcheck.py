"""What the deploy/local checks share (rolling_check.py, faults.py): a chat client that
behaves as deploy/README.md asks (reconnect to another notifier, resume in the URL, dedupe
by seq) while recording every frame it gets, a publisher that sends events with routectl
and retries with the same event id, and the routectl helper.
"""
import asyncio, json, os, subprocess, sys, time

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from importlib import import_module

token = import_module("dev-token").token


def routectl(args, *rest, timeout=30):
    """Runs `routectl REST… --nats-url URLS`; its stdout, or RuntimeError with its message."""
    try:
        out = subprocess.run([args.routectl, *rest, "--nats-url", args.nats_url], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"routectl {' '.join(rest)}: no answer within {timeout} s")
    if out.returncode != 0:
        raise RuntimeError(f"routectl {' '.join(rest)}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


class Client:
    """One user's socket. On any close it moves to the next notifier and resumes every
    channel from the last seq it has. Everything it receives is kept for the checks:
    `seen` (seqs of the tracked channels), `order[channel]` (first-seen seqs in arrival
    order), `copies[seq]`, `seqs_of[event id]` (every seq a copy of that event carried)."""

    def __init__(self, user, notifiers, first):
        self.user, self.notifiers, self.index = user, notifiers, first
        self.seen, self.duplicates, self.reconnects, self.closes = set(), 0, 0, {}
        self.order, self.copies, self.seqs_of, self.last = {}, {}, {}, {}
        self.instance = None  # the notifier named in the current connection's hello
        self.via = {}  # seq → the notifier that delivered its first copy
        self.history = []  # (monotonic time, "connect" resume string | close code), for diagnosis
        self.incomplete = 0  # resumed frames with complete:false
        self.stopped = False

    def _record(self, channel, frame):
        seq = frame["seq"]
        self.copies[seq] = self.copies.get(seq, 0) + 1
        if seq in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(seq)
            self.via[seq] = self.instance
            self.order.setdefault(channel, []).append(seq)
        event_id = frame.get("event", {}).get("id")
        if event_id is not None:
            self.seqs_of.setdefault(event_id, set()).add(seq)
        self.last[channel] = max(self.last.get(channel, 0), seq)

    async def run(self, channels, secret):
        channels = [channels] if isinstance(channels, str) else list(channels)
        while not self.stopped:
            # Resuming in the URL: the notifier holds live frames back from the first instant.
            resume = ",".join(f"{c}:{self.last[c]}" for c in channels if self.last.get(c))
            self.history.append((time.monotonic(), f"connect {self.notifiers[self.index]} resume={resume or '-'}"))
            url = f"{self.notifiers[self.index]}/ws?token={token(self.user, secret)}" + (f"&resume={resume}" if resume else "")
            try:
                async with websockets.connect(url, open_timeout=5) as ws:
                    hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    self.instance = hello.get("instance")
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame.get("type") == "event" and frame.get("channel") in channels:
                            self._record(frame["channel"], frame)
                        elif frame.get("type") == "resumed" and not frame.get("complete", True):
                            self.incomplete += 1
                            print(f"{self.user}: resume incomplete: {frame}", file=sys.stderr)
                        if self.stopped:
                            return
                    code = ws.close_code
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
            except (OSError, asyncio.TimeoutError, websockets.InvalidStatus, websockets.InvalidHandshake) as error:
                code = type(error).__name__
            self.instance = None
            if self.stopped:
                return
            self.history.append((time.monotonic(), f"closed {code}"))
            self.closes[code] = self.closes.get(code, 0) + 1
            self.reconnects += 1
            self.index = (self.index + 1) % len(self.notifiers)
            await asyncio.sleep(0.05)


class Publisher:
    """Publishes events with `routectl publish event`, one after another per channel. An
    event whose publish fails (error or no answer) is sent again with the same event id
    (JetStream deduplicates by Nats-Msg-Id) until it is acknowledged or `retry_bound` s have
    passed since its first attempt; then it is given up and counted in `given_up`.
    `acked` holds (channel, event id, seq, monotonic ack time) in ack order."""

    def __init__(self, args, channels, prefix, interval=0.0, retry_bound=30.0, attempt_timeout=10.0):
        self.args, self.channels, self.prefix = args, channels, prefix
        self.interval, self.retry_bound, self.attempt_timeout = interval, retry_bound, attempt_timeout
        self.acked, self.errors, self.given_up = [], [], []
        self.longest_retry = 0.0  # seconds from an event's first attempt to its ack, the worst one
        self.running, self.tasks = False, []

    def start(self):
        self.running = True
        self.tasks = [asyncio.create_task(self._channel(c)) for c in self.channels]

    async def stop(self):
        self.running = False
        await asyncio.gather(*self.tasks)

    def seqs(self, channel=None):
        return [seq for c, _, seq, _ in self.acked if channel is None or c == channel]

    def longest_ack_gap(self):
        """The longest time without any acknowledgement (seconds), over all channels."""
        times = sorted(t for *_, t in self.acked)
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    async def _channel(self, channel):
        n = 0
        while self.running:
            n += 1
            event_id = f"{self.prefix}-{channel}-{n}"
            first = time.monotonic()
            while True:
                try:
                    out = await asyncio.to_thread(routectl, self.args, "publish", "event", "--channel", channel,
                                                  "--sender", "publisher", "--text", f"n={n}", "--event-id", event_id,
                                                  timeout=self.attempt_timeout)
                    now = time.monotonic()
                    self.acked.append((channel, event_id, int(out.split("seq=")[1].split()[0]), now))
                    self.longest_retry = max(self.longest_retry, now - first)
                    break
                except RuntimeError as error:
                    self.errors.append((time.monotonic(), str(error)))
                    if time.monotonic() - first > self.retry_bound:
                        self.given_up.append(event_id)
                        break
                    await asyncio.sleep(0.2)
            if self.interval:
                await asyncio.sleep(self.interval)
