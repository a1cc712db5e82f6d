#!/usr/bin/env python3
"""Fault scenarios (long form) against a running deploy/local deployment, each judged by
what the clients see.

--users clients are spread over the notifiers, all members of --channels fresh channels
(placed on both fan-out replicas' partitions). For each scenario, events are published
continuously (routectl, retried with the same event id) for --duration seconds with the
fault in the middle:

  nats-kill      kill -9 the NATS node serving the most service connections, restart it
                 later with its recorded command ($RUN_DIR/cmds/nats-N)
  fanout-kill    kill -9 the fan-out owning the first channel, restart it
  notifier-kill  kill -9 a notifier: its users must leave routing (routectl user) within
                 10.5 s of its last heartbeat, its clients reconnect elsewhere and keep
                 receiving; then it is restarted
  redis-restart  SHUTDOWN NOSAVE, start Redis again: every connected user must be back in
                 its notifier's presence:<instance> hash, and in the fan-out's routing,
                 within 5 s
  nats-pause     SIGSTOP the NATS node serving the most service connections for 5 s, then
                 SIGCONT: the services recover without a restart

After each: every acknowledged event reached every client, each channel's first-seen seqs
are in stream order, a repeated event carries the same seq. One line per scenario; exit
status 1 if any check failed.

  faults.py [--scenario NAME] [--duration S]   (defaults read $RUN_DIR, default .run/local)
"""
import argparse, asyncio, json, os, shlex, signal, subprocess, sys, time, urllib.request, uuid

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from chatcheck import Client, Publisher, routectl

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SCENARIOS = ["nats-kill", "fanout-kill", "notifier-kill", "redis-restart", "nats-pause"]


def fnv1a32(text):
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def http_ok(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except Exception:
        return False


def http_json(url):
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


class Deployment:
    """The processes deploy/local/start recorded in $RUN_DIR: pids, commands, addresses."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.children = []  # processes this script started again (reaped at the end)

    def names(self, prefix):
        return sorted(f[:-4] for f in os.listdir(os.path.join(self.run_dir, "pids")) if f.startswith(prefix) and f.endswith(".pid"))

    def pid(self, name):
        with open(os.path.join(self.run_dir, "pids", f"{name}.pid")) as f:
            return int(f.read().strip())

    def command(self, name):
        with open(os.path.join(self.run_dir, "cmds", name)) as f:
            return f.read().strip()

    def option(self, name, flag):
        words = shlex.split(self.command(name))
        return words[words.index(flag) + 1] if flag in words else None

    def nats_monitor(self, name):
        conf = self.option(name, "-c")
        for line in open(conf if os.path.isabs(conf) else os.path.join(ROOT, conf)):
            if line.strip().startswith("http:"):
                return "http://" + line.split(":", 1)[1].strip()
        raise RuntimeError(f"{name}: no http: line in {conf}")

    def readyz(self, name):
        address = self.option(name, "--listen") or self.option(name, "--http")
        return f"http://{address}/readyz"

    def alive(self, pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    def signal(self, name, sig):
        os.kill(self.pid(name), sig)

    async def kill9(self, name):
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        while self.alive(pid):
            await asyncio.sleep(0.02)
        for child in self.children:
            child.poll()

    def relaunch(self, name):
        """Starts the recorded command again, the way deploy/local/restart does (own
        session, same log, pid file updated so that deploy/local/stop finds it)."""
        log = open(os.path.join(self.run_dir, "logs", f"{name}.log"), "a")
        log.write(f"--- restarted by faults.py {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        log.flush()
        child = subprocess.Popen(["bash", "-c", "exec " + self.command(name)], cwd=ROOT, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.children.append(child)
        with open(os.path.join(self.run_dir, "pids", f"{name}.pid"), "w") as f:
            f.write(f"{child.pid}\n")

    async def wait_http(self, url, timeout):
        started = time.monotonic()
        while not await asyncio.to_thread(http_ok, url):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{url} not ready within {timeout} s")
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    def stream_cluster(self, stream):
        """(leader, {replica name: current}) of a stream, as its leader reports it."""
        for name in self.names("nats-"):
            try:
                details = http_json(self.nats_monitor(name) + "/jsz?accounts=true&streams=true")
            except Exception:
                continue
            for account in details.get("account_details", []):
                for detail in account.get("stream_detail", []):
                    cluster = detail.get("cluster", {})
                    if detail.get("name") == stream and cluster.get("leader") == name:
                        return name, {r["name"]: r.get("current", False) for r in cluster.get("replicas", [])}
        return None, {}

    def busiest_nats(self):
        """The NATS node serving the most service connections (fan-outs, notifiers); the
        CHAT_EVENTS stream leader breaks ties."""
        leader = None
        weights = {}
        for name in self.names("nats-"):
            monitor = self.nats_monitor(name)
            try:
                connections = http_json(monitor + "/connz?limit=1024").get("connections", [])
                names = [c.get("name", "") for c in connections]
                weights[name] = 2 * sum(n.startswith(("notifier-", "fanout-")) for n in names)
                for account in http_json(monitor + "/jsz?accounts=true&streams=true").get("account_details", []):
                    for stream in account.get("stream_detail", []):
                        if stream.get("name") == "CHAT_EVENTS":
                            leader = stream.get("cluster", {}).get("leader") or leader
            except Exception:
                weights[name] = -1
        return max(weights, key=lambda n: weights[n] + (1 if n == leader else 0)), weights, leader


class Run:
    def __init__(self, args):
        self.args, self.d = args, Deployment(args.run_dir)
        tag = uuid.uuid4().hex[:6]
        self.tag = tag
        self.users = [f"f{tag}-u{i}" for i in range(args.users)]
        self.channels = self.pick_channels(tag)
        self.clients = [Client(user, args.notifiers, i % len(args.notifiers)) for i, user in enumerate(self.users)]
        self.failures = 0

    def pick_channels(self, tag):
        """Channels spread over the fan-out replicas' partitions, round robin."""
        stats = json.loads(routectl(self.args, "stats", "--json"))["replies"]
        ranges = sorted((r["replica"]["id"], set(r["replica"]["partitions"])) for r in stats)
        count = stats[0]["replica"]["partition_count"]
        self.owner = {}
        chosen, k = [], 0
        while len(chosen) < self.args.channels:
            replica, partitions = ranges[len(chosen) % len(ranges)]
            name = f"fault-{tag}-{k}"
            k += 1
            if fnv1a32(name) % count in partitions:
                chosen.append(name)
                self.owner[name] = replica
        return chosen

    def redis(self):
        port = int(self.d.option("redis", "--port") or 6379)
        # No client-side retries: a blocked call would also stall the clients and the publisher.
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True, retry=Retry(NoBackoff(), 0))

    async def placements(self, user):
        out = await asyncio.to_thread(routectl, self.args, "user", user, "--json", timeout=10)
        return sorted({p["instance"] for r in json.loads(out)["replies"] for p in r.get("placements", [])})

    async def instances(self):
        out = await asyncio.to_thread(routectl, self.args, "instances", "--json", timeout=10)
        return sorted({i["instance"] for r in json.loads(out)["replies"] for i in r.get("instances", [])})

    async def setup(self):
        for channel in self.channels:
            for user in self.users:
                routectl(self.args, "publish", "membership", "--channel", channel, "--user", user)
        self.tasks = [asyncio.create_task(c.run(self.channels, self.args.secret)) for c in self.clients]
        deadline = time.monotonic() + 30
        while True:
            online = 0
            for channel in self.channels:
                replies = json.loads(routectl(self.args, "channel", channel, "--json"))["replies"]
                online += sum(r.get("online_members", 0) for r in replies if r.get("owned"))
            if online == len(self.users) * len(self.channels):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"fan-out did not see {len(self.users)} online members in each of {self.channels}")
            await asyncio.sleep(0.3)
        owners = {}
        for channel in self.channels:
            owners.setdefault(self.owner[channel], []).append(channel)
        print(f"setup: {len(self.users)} clients over {len(self.args.notifiers)} notifiers, channels {owners}")

    async def teardown(self):
        for c in self.clients:
            c.stopped = True
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for child in self.d.children:
            child.poll()

    # --- scenarios: each performs its fault while events flow and returns (numbers, problems)

    async def nats_kill(self):
        victim, weights, leader = self.d.busiest_nats()
        monitor = self.d.nats_monitor(victim)
        await self.d.kill9(victim)
        await asyncio.sleep(self.args.down)
        self.d.relaunch(victim)
        # Back means: the CHAT_EVENTS leader counts the node as a current replica again.
        # nats-server's /healthz is reported as well, but not required: under a steady flow
        # of acks 2.9 keeps answering "consumer … is not current" for a long time.
        relaunched, caught_up, healthy = time.monotonic(), None, None
        while time.monotonic() - relaunched < 60 and (caught_up is None or healthy is None):
            if caught_up is None:
                leader_now, replicas = await asyncio.to_thread(self.d.stream_cluster, "CHAT_EVENTS")
                if leader_now == victim or replicas.get(victim):
                    caught_up = time.monotonic() - relaunched
            if healthy is None and await asyncio.to_thread(http_ok, monitor + "/healthz"):
                healthy = time.monotonic() - relaunched
            await asyncio.sleep(0.2)
        problems = [] if caught_up is not None else [f"{victim} not a current CHAT_EVENTS replica 60 s after its restart"]
        return {"victim": victim, "service connections": weights, "leader": leader, "down s": self.args.down,
                "current replica after restart s": round(caught_up, 1) if caught_up is not None else None,
                "healthz after restart s": round(healthy, 1) if healthy is not None else ">60"}, problems

    async def fanout_kill(self):
        victim = self.owner[self.channels[0]]
        await self.d.kill9(victim)
        await asyncio.sleep(self.args.down)
        self.d.relaunch(victim)
        ready = await self.d.wait_http(self.d.readyz(victim), 120)
        return {"victim": victim, "down s": self.args.down, "ready after restart s": round(ready, 1)}, []

    async def notifier_kill(self):
        # The notifier with the most of our clients (clients move on every reconnect).
        counts = {n: sum(c.instance == n for c in self.clients) for n in self.d.names("notifier-")}
        victim = max(counts, key=counts.get)
        users = [c.user for c in self.clients if c.instance == victim]
        clients = [c for c in self.clients if c.user in users]
        problems = []
        await self.d.kill9(victim)
        killed = time.time()
        last_beat = await asyncio.to_thread(self.redis().zscore, "instances", victim)
        if last_beat is None:
            problems.append(f"no heartbeat of {victim} in Redis 'instances'")
            last_beat = killed * 1000
        async def elsewhere():
            ok = await self.wait(lambda: all(c.instance not in (None, victim) for c in clients), 15)
            return ok, time.time() - killed
        moved = asyncio.create_task(elsewhere())
        # Each round asks the fan-outs (routectl user, routectl instances) in parallel. A
        # round that still sees the victim proves it was routed at its start or later; the
        # first round that sees it nowhere proves it gone by its end. The check fails only
        # on proof: still routed at a time after last heartbeat + limit.
        routed_at, gone_at = killed, None
        while time.time() - killed < 20:
            round_start = time.time()
            placed = await asyncio.gather(*(self.placements(u) for u in users), self.instances())
            if all(victim not in p for p in placed):
                gone_at = time.time()
                break
            routed_at = round_start
            await asyncio.sleep(0.05)
        moved_ok, moved_after = await moved
        beat = last_beat / 1000
        numbers = {"victim": victim, "its users": len(users), "last heartbeat before kill s": round(killed - beat, 1),
                   "left routing after last heartbeat s": f"{routed_at - beat:.1f}-{gone_at - beat:.1f}" if gone_at else None,
                   "clients elsewhere after kill s": round(moved_after, 1) if moved_ok else None}
        if gone_at is None:
            problems.append(f"{victim}'s users still routed to it 20 s after the kill")
        elif routed_at - beat > self.args.expiry_limit:
            problems.append(f"{victim} still routed {routed_at - beat:.1f} s after its last heartbeat (limit {self.args.expiry_limit})")
        if not moved_ok:
            problems.append(f"clients not reconnected elsewhere: {[(c.user, c.instance) for c in clients if c.instance in (None, victim)]}")
        self.d.relaunch(victim)
        numbers["ready after restart s"] = round(await self.d.wait_http(self.d.readyz(victim), 60), 1)
        return numbers, problems

    async def redis_restart(self):
        r = self.redis()
        try:
            await asyncio.to_thread(r.shutdown, nosave=True)
        except redis.exceptions.ConnectionError:
            pass  # the server closes the connection as it exits
        pid = self.d.pid("redis")
        while self.d.alive(pid):
            await asyncio.sleep(0.02)
        self.d.relaunch("redis")
        while True:
            try:
                await asyncio.to_thread(r.ping)
                break
            except redis.exceptions.ConnectionError:
                await asyncio.sleep(0.02)
        back = time.monotonic()
        problems = []

        def stored():
            # Each connected client's user must be in its notifier's presence hash.
            expected = {(c.user, c.instance) for c in self.clients if c.instance}
            return len(expected) == len(self.clients) and all(r.hexists(f"presence:{i}", u) for u, i in expected)

        in_redis = False
        while time.monotonic() - back < 10 and not in_redis:
            in_redis = await asyncio.to_thread(stored)
            if not in_redis:
                await asyncio.sleep(0.05)
        redis_s = time.monotonic() - back
        routed_s = None
        while time.monotonic() - back < 10:
            expected = {c.user: c.instance for c in self.clients}
            placed = await asyncio.gather(*(self.placements(u) for u in expected))
            if all(instance is not None and p == [instance] for (u, instance), p in zip(expected.items(), placed)):
                routed_s = time.monotonic() - back
                break
            await asyncio.sleep(0.2)
        if not in_redis or redis_s > 5:
            problems.append(f"presence not whole in Redis within 5 s (took {redis_s:.1f} s{'' if in_redis else ', never'})")
        if routed_s is None or routed_s > 5:
            problems.append(f"fan-out routing not whole within 5 s ({'never' if routed_s is None else f'{routed_s:.1f} s'})")
        return {"presence in Redis after restart s": round(redis_s, 1),
                "fan-out routing whole after restart s": round(routed_s, 1) if routed_s is not None else None}, problems

    async def nats_pause(self):
        services = self.d.names("fanout-") + self.d.names("notifier-")
        pids = {n: self.d.pid(n) for n in services}
        victim, weights, leader = self.d.busiest_nats()
        errors_before = len(self.publisher.errors)
        self.d.signal(victim, signal.SIGSTOP)
        try:
            await asyncio.sleep(5)
        finally:
            self.d.signal(victim, signal.SIGCONT)
        continued = time.monotonic()
        acked_before = len(self.publisher.acked)
        await self.wait(lambda: len(self.publisher.acked) > acked_before, 30)
        problems = []
        not_ready = []
        for n in services:
            try:
                await self.d.wait_http(self.d.readyz(n), max(0.5, 10 - (time.monotonic() - continued)))
            except TimeoutError:
                not_ready.append(n)
        if not_ready:
            problems.append(f"not ready 10 s after SIGCONT: {not_ready}")
        restarted = [n for n in services if self.d.pid(n) != pids[n] or not self.d.alive(pids[n])]
        if restarted:
            problems.append(f"services restarted or gone: {restarted}")
        errors = self.publisher.errors[errors_before:]
        return {"victim": victim, "service connections": weights, "publish errors": len(errors),
                "first error": errors[0][1].split(": ", 1)[-1][:160] if errors else None,
                "acked again after SIGCONT s": round(time.monotonic() - continued, 1)}, problems

    async def wait(self, condition, timeout):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def scenario(self, name):
        before = {c.user: (c.reconnects, dict(c.closes)) for c in self.clients}
        self.publisher = Publisher(self.args, self.channels, f"{self.tag}-{name}", interval=self.args.interval)
        started = time.monotonic()
        self.publisher.start()
        await asyncio.sleep(self.args.warmup)
        fault = getattr(self, name.replace("-", "_"))
        fault_at = time.monotonic()
        try:
            numbers, problems = await fault()
        except Exception as error:  # the fault itself failed: report it, keep the checks
            numbers, problems = {}, [f"fault step failed: {type(error).__name__}: {error}"]
        await asyncio.sleep(max(3.0, self.args.duration - (time.monotonic() - started)))
        await self.publisher.stop()
        acked = self.publisher.acked
        ack_time = {seq: t for *_, seq, t in acked}
        first_ack = lambda seq: ack_time.get(seq, 0.0)
        seq_of = {event_id: seq for _, event_id, seq, _ in acked}
        expected = {ch: set(self.publisher.seqs(ch)) for ch in self.channels}
        everything = set().union(*expected.values())
        delivered = await self.wait(lambda: all(everything <= c.seen for c in self.clients), self.args.settle)

        lost_pairs, lost_events, duplicates, wrong_seq, disorder, reconnects, closes = 0, set(), 0, [], [], 0, {}
        for c in self.clients:
            missing = everything - c.seen
            lost_pairs += len(missing)
            lost_events |= missing
            duplicates += sum(c.copies.get(seq, 1) - 1 for seq in everything)
            for event_id, seq in seq_of.items():
                if c.seqs_of.get(event_id, {seq}) != {seq}:
                    wrong_seq.append((c.user, event_id, sorted(c.seqs_of[event_id]), seq))
            for ch in self.channels:
                mine = [s for s in c.order.get(ch, []) if s in expected[ch]]
                if mine != sorted(mine):
                    disorder.append((c.user, ch))
            reconnects += c.reconnects - before[c.user][0]
            for code, n in c.closes.items():
                delta = n - before[c.user][1].get(code, 0)
                if delta:
                    closes[code] = closes.get(code, 0) + delta
        if lost_pairs:
            problems.append(f"lost: {len(lost_events)} events ({lost_pairs} client-event pairs), e.g. seqs {sorted(lost_events)[:10]}")
            # What each client that lost some did meanwhile: its reconnects and resume points,
            # and which notifier delivered the seqs around the first one it lost.
            shown = set()
            for c in self.clients:
                missing = sorted(everything - c.seen)
                if not missing or tuple(missing) in shown:
                    continue
                shown.add(tuple(missing))
                alike = sum(sorted(everything - o.seen) == missing for o in self.clients)
                ch = next(ch for ch in self.channels if missing[0] in expected[ch])
                around = [s for s in sorted(expected[ch]) if abs(s - missing[0]) <= 12]
                got = [f"{s}{'@' + str(c.via.get(s)) if s in c.seen else ' MISSING'}" for s in around]
                history = [f"+{t - started:.2f}s {what}" for t, what in c.history if t >= started]
                problems.append(f"{c.user} (and {alike - 1} other clients alike) missed {missing[:10]}…; in {ch} around the first: {got}; "
                                f"first lost event acked at +{first_ack(missing[0]) - started:.2f}s, last at +{first_ack(missing[-1]) - started:.2f}s; its connections (fault at +{fault_at - started:.2f}s): {history}")
        if wrong_seq:
            problems.append(f"copies with another seq: {wrong_seq[:5]}")
        if disorder:
            problems.append(f"out of order (client, channel): {disorder[:5]}")
        if self.publisher.given_up:
            problems.append(f"publisher gave up {len(self.publisher.given_up)} events after {self.publisher.retry_bound:.0f} s of retries")
        incomplete = sum(c.incomplete for c in self.clients)
        ok = not problems
        self.failures += not ok
        numbers_text = ", ".join(f"{k} {v}" for k, v in numbers.items())
        print(f"{name}: {'ok' if ok else 'FAILED'} | events {len(acked)} x {len(self.clients)} clients, lost {lost_pairs}, "
              f"duplicates {duplicates}, wrong seq {len(wrong_seq)}, out of order {len(disorder)}, reconnects {reconnects} {closes}, "
              f"publish errors {len(self.publisher.errors)}, longest publish retry {self.publisher.longest_retry:.1f} s, "
              f"longest ack gap {self.publisher.longest_ack_gap():.1f} s, all delivered {'yes' if delivered else 'no'}"
              f"{', resume incomplete ' + str(incomplete) if incomplete else ''} | {numbers_text}", flush=True)
        for problem in problems:
            print(f"  {name}: {problem}", flush=True)


def defaults():
    run_dir = os.environ.get("RUN_DIR", os.path.join(ROOT, ".run", "local"))
    config = os.environ.get("SWITCHBOARD_BUILD", "release")
    nats_ports = os.environ.get("NATS_PORTS", "4222 4223 4224").split()
    notifier_ports = os.environ.get("NOTIFIER_PORTS", "8081 8082 8083").split()
    secret_file = os.path.join(run_dir, "jwt-secret")
    return {
        "run_dir": run_dir,
        "routectl": os.path.join(ROOT, ".build", config, "routectl"),
        "nats_url": ",".join(f"nats://127.0.0.1:{p}" for p in nats_ports),
        "secret": open(secret_file).read().strip() if os.path.exists(secret_file) else None,
        "notifiers": [f"ws://127.0.0.1:{p}" for p in notifier_ports],
    }


async def main():
    d = defaults()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=SCENARIOS + ["all"], default="all")
    parser.add_argument("--duration", type=float, default=20, help="seconds of events per scenario, fault included (default 20)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of events before the fault (default 3)")
    parser.add_argument("--down", type=float, default=3, help="seconds a killed NATS node or fan-out stays down (default 3)")
    parser.add_argument("--settle", type=float, default=30, help="seconds allowed for the last events to arrive (default 30)")
    parser.add_argument("--interval", type=float, default=0.0, help="pause between one channel's publishes (default 0)")
    parser.add_argument("--expiry-limit", type=float, default=10.5, help="seconds from a killed notifier's last heartbeat to its users leaving routing")
    parser.add_argument("--users", type=int, default=9)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--run-dir", default=d["run_dir"])
    parser.add_argument("--routectl", default=d["routectl"])
    parser.add_argument("--nats-url", default=d["nats_url"])
    parser.add_argument("--secret", default=d["secret"])
    parser.add_argument("notifiers", nargs="*", default=d["notifiers"])
    args = parser.parse_args()
    if not args.secret:
        parser.error("--secret (or $RUN_DIR/jwt-secret) is required")
    run = Run(args)
    await run.setup()
    try:
        for name in SCENARIOS if args.scenario == "all" else [args.scenario]:
            await run.scenario(name)
    finally:
        await run.teardown()
    print("faults: " + ("all scenarios ok" if run.failures == 0 else f"{run.failures} scenario(s) FAILED"))
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
