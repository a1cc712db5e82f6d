#!/usr/bin/env python3
"""End-to-end smoke check of a running Switchboard (scripts/run or deploy/local/start).

Connects alice to the first notifier and bob to the last, makes both members of a fresh
channel (routectl), publishes one event (routectl), and checks that both sockets receive it
and that a typing indicator from alice reaches bob. With --demo-send it also posts a message
through the first notifier's POST /demo/send. Exit status 0 only when every check passed.

  smoke.py --routectl PATH --nats-url URL [--operator-nats-url URL] --secret SECRET ws://127.0.0.1:8081 ws://127.0.0.1:8082
(routectl also reads SWITCHBOARD_NATS_TLS_CA from the environment for a NATS on TLS.)
"""
import argparse, asyncio, json, os, subprocess, sys, time, urllib.request, uuid

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from importlib import import_module

token = import_module("dev-token").token


async def next_frame(ws, kind, channel, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {kind} frame for {channel} within {timeout} s")
        frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        if frame.get("type") == kind and frame.get("channel") == channel:
            return frame


def routectl(args, *rest, url=None):
    out = subprocess.run([args.routectl, *rest, "--nats-url", url or args.nats_url], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"routectl {' '.join(rest)}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--routectl", required=True)
    parser.add_argument("--nats-url", required=True, help="for publishing (the publisher user on a server with users)")
    parser.add_argument("--operator-nats-url", help="for routectl's inspection (the routectl user); default --nats-url")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--demo-send", action="store_true")
    parser.add_argument("notifiers", nargs="+", help="ws://host:port of each notifier (alice on the first, bob on the last)")
    args = parser.parse_args()
    channel = "smoke-" + uuid.uuid4().hex[:8]
    first, last = args.notifiers[0], args.notifiers[-1]
    async with websockets.connect(f"{first}/ws?token={token('alice', args.secret)}") as alice, \
               websockets.connect(f"{last}/ws?token={token('bob', args.secret)}") as bob:
        for name, ws in (("alice", alice), ("bob", bob)):
            hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
            print(f"{name}: hello from {hello['instance']}")
        for user in ("alice", "bob"):
            routectl(args, "publish", "membership", "--channel", channel, "--user", user)
        # The fan-out applies memberships (stream) and presence (Redis) asynchronously: wait
        # until the replica owning the channel reports both members online.
        deadline = time.monotonic() + 15
        while True:
            replies = json.loads(routectl(args, "channel", channel, "--json", url=args.operator_nats_url))["replies"]
            if sum(r.get("online_members", 0) for r in replies if r.get("owned")) == 2:
                owner = next(r["replica"]["id"] for r in replies if r.get("owned"))
                print(f"fan-out replica {owner} owns {channel} (partition {next(r['partition'] for r in replies if r.get('owned'))}); 2 members online")
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"fan-out did not report 2 online members of {channel}: {replies}")
            await asyncio.sleep(0.2)
        started = time.monotonic()
        routectl(args, "publish", "event", "--channel", channel, "--sender", "carol", "--text", "smoke")
        for name, ws in (("alice", alice), ("bob", bob)):
            frame = await next_frame(ws, "event", channel)
            print(f"{name}: event seq {frame['seq']} after {1000 * (time.monotonic() - started):.0f} ms (incl. routectl start-up)")
        await alice.send(json.dumps({"type": "typing", "channel": channel}))
        typing = await next_frame(bob, "typing", channel)
        print(f"bob: typing from {typing['user']}")
        if args.demo_send:
            http = first.replace("ws://", "http://", 1)
            request = urllib.request.Request(f"{http}/demo/send", method="POST",
                data=json.dumps({"channel": channel, "text": "from the demo endpoint"}).encode(),
                headers={"Authorization": f"Bearer {token('alice', args.secret)}", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                print(f"alice: POST /demo/send -> {response.status} {response.read().decode()}")
            frame = await next_frame(bob, "event", channel)
            assert frame["event"]["sender"] == "alice", frame
            print(f"bob: event seq {frame['seq']} from {frame['event']['sender']}: {frame['event']['text']}")
    print("smoke: ok")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as error:  # one clear line, non-zero exit
        print(f"smoke: FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
