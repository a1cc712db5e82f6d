"""Two demo pages in a real headless Chromium, driven over the DevTools protocol.

Page A (alice) and page B (bob) open on different notifiers; A sends a message, both show it;
then A's notifier is stopped (SIGTERM: it drains with close 4000) and B sends three messages
right away: A must carry on through the other notifier and show every one of them once, in
order. Prints one JSON line with what each page showed; exits 0 when all held, 1 otherwise.

usage: demo_pages.py CHROMIUM PAGE_A_URL PAGE_B_URL NOTIFIER_A_PID OTHER_NOTIFIER_PORT
"""
import asyncio, json, os, shutil, signal, subprocess, sys, tempfile, time, urllib.parse, urllib.request

import websockets


def devtools_port(profile, process, timeout=20):
    path = os.path.join(profile, "DevToolsActivePort")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError("chromium exited with %s" % process.returncode)
        try:
            with open(path) as f:
                return int(f.readline().strip())
        except (FileNotFoundError, ValueError):
            time.sleep(0.1)
    raise RuntimeError("chromium did not open its DevTools port")


class Page:
    def __init__(self, socket):
        self.socket, self.next_id, self.console = socket, 0, []

    @classmethod
    async def open(cls, port, url):
        # Quoted whole: the endpoint would otherwise cut the page's own query at its first '&'.
        request = urllib.request.Request("http://127.0.0.1:%d/json/new?%s" % (port, urllib.parse.quote(url, safe="")), method="PUT")
        target = json.loads(urllib.request.urlopen(request, timeout=10).read())
        return cls(await websockets.connect(target["webSocketDebuggerUrl"], max_size=None, ping_interval=None))

    async def evaluate(self, expression):
        self.next_id += 1
        ident = self.next_id
        await self.socket.send(json.dumps({"id": ident, "method": "Runtime.evaluate",
                                           "params": {"expression": expression, "returnByValue": True, "awaitPromise": True}}))
        while True:
            reply = json.loads(await self.socket.recv())
            if reply.get("method") in ("Runtime.consoleAPICalled", "Log.entryAdded", "Runtime.exceptionThrown"):
                self.console.append(json.dumps(reply.get("params"))[:300])
            if reply.get("id") == ident:
                result = reply.get("result", {})
                if "exceptionDetails" in result:
                    details = result["exceptionDetails"]
                    raise RuntimeError("page threw on %r: %s %s" % (expression[:60], details.get("text"), details.get("exception", {}).get("description", "")))
                return result.get("result", {}).get("value")

    async def state(self):
        # Before the page has loaded there is no #state yet.
        return await self.evaluate('(s => ({state: (s && s.dataset.state) || "", url: (s && s.dataset.url) || ""}))(document.getElementById("state"))')

    async def messages(self):
        return await self.evaluate('[...document.querySelectorAll("#log .msg")].map(d => ({seq: Number(d.dataset.seq), text: d.textContent.split(": ").slice(1).join(": "), own: d.classList.contains("own")}))')


async def until(check, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    return None


async def main(chromium, page_a, page_b, notifier_a_pid, other_port):
    profile = tempfile.mkdtemp(prefix="switchboard-test-chromium-")
    process = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--remote-debugging-port=0", "--user-data-dir=" + profile, "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report, ok = {}, False
    try:
        port = devtools_port(profile, process)
        a, b = await Page.open(port, page_a), await Page.open(port, page_b)
        for page in (a, b):
            for method in ("Runtime.enable", "Log.enable"):
                page.next_id += 1
                await page.socket.send(json.dumps({"id": page.next_id, "method": method}))
        opened = await until(lambda: both_open(a, b))
        report["opened"] = bool(opened)
        await a.evaluate('switchboardDemo.send("hello from alice")')
        shown = await until(lambda: all_show(a, b, ["hello from alice"]))
        report["exchanged"] = bool(shown)
        # A's notifier goes; B keeps sending at once, while A is still moving over.
        os.kill(notifier_a_pid, signal.SIGTERM)
        for index in range(3):
            await b.evaluate('switchboardDemo.send("meanwhile %d")' % index)
        moved = await until(lambda: moved_to(a, other_port))
        report["moved"] = moved
        expected = ["hello from alice", "meanwhile 0", "meanwhile 1", "meanwhile 2"]
        await until(lambda: all_show(a, b, expected))
        report["a"], report["b"] = await a.messages(), await b.messages()
        report["a_state"] = await a.state()
        texts_a = [m["text"] for m in report["a"]]
        texts_b = [m["text"] for m in report["b"]]
        own_a = [m["own"] for m in report["a"]]
        ok = bool(opened and shown and moved) and texts_a == expected and texts_b == expected and own_a == [True, False, False, False] \
            and [m["own"] for m in report["b"]] == [False, True, True, True] \
            and [m["seq"] for m in report["a"]] == sorted(m["seq"] for m in report["a"])
        if not ok:
            report["a_console"] = a.console[-5:]
            report["a_log"] = await a.evaluate('[...document.querySelectorAll("#log .sys")].map(d => d.textContent)')
    except Exception as error:  # noqa: BLE001 - reported, then a failing exit status
        report["error"] = repr(error)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)
    print(json.dumps(report))
    return 0 if ok else 1


async def both_open(a, b):
    return (await a.state())["state"] == "open" and (await b.state())["state"] == "open"


async def all_show(a, b, texts):
    return [m["text"] for m in await a.messages()] == texts and [m["text"] for m in await b.messages()] == texts


async def moved_to(page, port):
    state = await page.state()
    return state if state["state"] == "open" and (":%s/" % port) in state["url"] else None


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])))
