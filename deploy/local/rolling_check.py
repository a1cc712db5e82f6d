#!/usr/bin/env python3
"""Rolling-restart check for a deploy/local deployment: no event lost for clients that
reconnect and resume.

Connects --users clients spread over the notifiers, all members of one fresh channel.
A publisher sends events (routectl publish event) continuously while `deploy/local/restart`
restarts every notifier in turn. A client whose socket closes (4000 on a drain) reconnects
to the next notifier with `?resume=<channel>:<last seq>` in its URL. At the end every client
must have seen every published seq; duplicates are counted (allowed: at-least-once).

  rolling_check.py --routectl PATH --nats-url URLS --secret S ws://127.0.0.1:8081 ws://…:8082 ws://…:8083
"""
import argparse, asyncio, json, os, subprocess, sys, time, uuid

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from importlib import import_module

token = import_module("dev-token").token


class Client:
    def __init__(self, user, notifiers, first):
        self.user, self.notifiers, self.index = user, notifiers, first
        self.seen, self.duplicates, self.reconnects, self.closes = set(), 0, 0, {}
        self.last = 0
        self.stopped = False

    async def run(self, channel, secret):
        while not self.stopped:
            # Resuming in the URL: the notifier holds live frames back from the first instant.
            resume = f"&resume={channel}:{self.last}" if self.last else ""
            url = f"{self.notifiers[self.index]}/ws?token={token(self.user, secret)}{resume}"
            try:
                async with websockets.connect(url, open_timeout=5) as ws:
                    await asyncio.wait_for(ws.recv(), 5)  # hello
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame.get("type") == "event" and frame.get("channel") == channel:
                            seq = frame["seq"]
                            if seq in self.seen:
                                self.duplicates += 1
                            self.seen.add(seq)
                            self.last = max(self.last, seq)
                        elif frame.get("type") == "resumed" and not frame.get("complete", True):
                            print(f"{self.user}: resume incomplete: {frame}", file=sys.stderr)
                        if self.stopped:
                            return
                    code = ws.close_code
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
            except (OSError, asyncio.TimeoutError, websockets.InvalidStatus, websockets.InvalidHandshake) as error:
                code = type(error).__name__
            if self.stopped:
                return
            self.closes[code] = self.closes.get(code, 0) + 1
            self.reconnects += 1
            self.index = (self.index + 1) % len(self.notifiers)
            await asyncio.sleep(0.05)


def routectl(args, *rest):
    out = subprocess.run([args.routectl, *rest, "--nats-url", args.nats_url], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"routectl {' '.join(rest)}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--routectl", required=True)
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--users", type=int, default=9)
    parser.add_argument("--restart", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "restart"))
    parser.add_argument("notifiers", nargs="+")
    args = parser.parse_args()
    channel = "rolling-" + uuid.uuid4().hex[:8]
    users = [f"user{i}" for i in range(args.users)]
    for user in users:
        routectl(args, "publish", "membership", "--channel", channel, "--user", user)
    clients = [Client(user, args.notifiers, i % len(args.notifiers)) for i, user in enumerate(users)]
    tasks = [asyncio.create_task(c.run(channel, args.secret)) for c in clients]
    deadline = time.monotonic() + 20
    while True:
        replies = json.loads(routectl(args, "channel", channel, "--json"))["replies"]
        if sum(r.get("online_members", 0) for r in replies if r.get("owned")) == len(users):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"fan-out did not see {len(users)} online members of {channel}")
        await asyncio.sleep(0.2)

    published, publishing = [], True

    async def publisher():
        n = 0
        while publishing:
            n += 1
            out = await asyncio.to_thread(routectl, args, "publish", "event", "--channel", channel, "--sender", "publisher", "--text", f"n={n}")
            published.append(int(out.split("seq=")[1].split()[0]))

    pub = asyncio.create_task(publisher())
    await asyncio.sleep(2)
    names = [f"notifier-{i + 1}" for i in range(len(args.notifiers))]
    started = time.monotonic()
    restart = await asyncio.create_subprocess_exec(args.restart, *names)
    if await restart.wait() != 0:
        raise RuntimeError("deploy/local/restart failed")
    restart_seconds = time.monotonic() - started
    await asyncio.sleep(2)
    publishing = False
    await pub
    # Let the last events and any resume finish.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(set(published) <= c.seen for c in clients):
        await asyncio.sleep(0.2)
    for c in clients:
        c.stopped = True
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    expected = set(published)
    failed = False
    print(f"published {len(published)} events (seq {min(published)}-{max(published)}) while restarting {len(names)} notifiers in {restart_seconds:.1f} s")
    for c in clients:
        missing = sorted(expected - c.seen)
        failed |= bool(missing)
        print(f"{c.user}: received {len(c.seen & expected)}/{len(expected)}, missing {len(missing)}{' ' + str(missing[:10]) if missing else ''}, "
              f"duplicates {c.duplicates}, reconnects {c.reconnects} {c.closes}")
    print("rolling restart: " + ("FAILED (events missing)" if failed else "ok, no event lost"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
