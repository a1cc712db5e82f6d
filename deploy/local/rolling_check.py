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
import argparse, asyncio, json, os, sys, time, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chatcheck import Client, routectl


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
