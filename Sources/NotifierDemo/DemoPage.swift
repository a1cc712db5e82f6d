/// The page a notifier serves at `GET /`: connect as the user of a token, see events and
/// typing of one channel arrive, send typing while typing, and (only where the notifier
/// runs with `--demo-send`) post a message through `POST /demo/send`.
///
/// It uses nothing the client protocol does not offer: `/ws?token=…`, `typing`, `ping`,
/// `resume`. After a close (4000 on a drain, or a network error) it reconnects and resumes
/// the channel after the last `seq` it saw, which is exactly what real clients must do on a
/// rolling restart. Text from the server is rendered with `textContent` only.
enum DemoPage {
    /// Served with a Content-Security-Policy that allows only this page's inline script and
    /// style and connections back to the same host; `no-referrer` keeps the token in the URL
    /// from leaking to other sites.
    static let headers: [(String, String)] = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
    ]

    static let bytes: [UInt8] = Array(html.utf8)

    static let html = #"""
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8"><title>Switchboard demo</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <style>
    body{font:15px system-ui,sans-serif;max-width:46rem;margin:1.5rem auto;padding:0 1rem}
    input,button{font:inherit;padding:.3rem}
    #log{border:1px solid #ccc;height:22rem;overflow:auto;padding:.4rem;margin:.6rem 0;white-space:pre-wrap}
    .sys{color:#777}.typing{color:#a60;min-height:1.3em}
    </style></head><body>
    <h1>Switchboard demo</h1>
    <p>Token <input id="token" size="40"> channel <input id="channel" size="10" value="demo">
    <button id="connect">connect</button> <span id="state" class="sys">disconnected</span></p>
    <div id="log"></div>
    <div id="typing" class="typing"></div>
    <p><input id="text" size="50" placeholder="type a message" autocomplete="off"> <button id="send">send</button></p>
    <script>
    "use strict";
    const $ = id => document.getElementById(id);
    const params = new URLSearchParams(location.search);
    $("token").value = params.get("token") || "";
    if (params.get("channel")) $("channel").value = params.get("channel");
    let ws = null, lastSeq = 0, epoch = "", lastTyping = 0, retry = 0, typingTimer = null;

    function line(text, cls) {
      const div = document.createElement("div");
      if (cls) div.className = cls;
      div.textContent = text;
      $("log").appendChild(div);
      $("log").scrollTop = $("log").scrollHeight;
    }

    function connect() {
      if (ws) { ws.onclose = null; ws.close(); }
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      // After a reconnect, resume in the URL: what was missed comes first, then live events.
      // The epoch says which numbering lastSeq belongs to: after the stream is created anew
      // the notifier answers epoch_changed instead of replaying from a meaningless seq.
      const resume = lastSeq > 0 ? "&resume=" + encodeURIComponent($("channel").value + ":" + lastSeq) + (epoch ? "&epoch=" + encodeURIComponent(epoch) : "") : "";
      ws = new WebSocket(scheme + "//" + location.host + "/ws?token=" + encodeURIComponent($("token").value.trim()) + resume);
      $("state").textContent = "connecting";
      ws.onopen = () => {
        retry = 0;
      };
      ws.onmessage = m => {
        const f = JSON.parse(m.data);
        if (f.type === "hello") { $("state").textContent = "connected to " + f.instance + " as " + f.user; }
        else if (f.type === "event" && f.channel === $("channel").value) {
          if (f.epoch && f.epoch !== epoch) { epoch = f.epoch; lastSeq = 0; }  // numbered anew
          if (f.seq <= lastSeq) return;  // already shown (a replay overlapping live events)
          if (lastSeq > 0 && f.prev !== lastSeq) line("missed event(s) between #" + lastSeq + " and #" + f.seq + " (reload to refetch)", "sys");
          lastSeq = f.seq;
          const e = f.event;
          line("#" + f.seq + " " + e.sender + ": " + (e.text !== undefined ? e.text : "(" + e.kind + ")"));
        }
        else if (f.type === "typing" && f.channel === $("channel").value) {
          $("typing").textContent = f.user + " is typing…";
          clearTimeout(typingTimer);
          typingTimer = setTimeout(() => { $("typing").textContent = ""; }, 3500);
        }
        else if (f.type === "resumed" && f.reason === "epoch_changed") {
          epoch = f.epoch; lastSeq = 0;
          line("the event stream was created anew: earlier messages are not replayed", "sys");
        }
        else if (f.type === "resumed") { line("resumed after a reconnect: " + f.replayed + " missed event(s)" + (f.complete ? "" : ", history incomplete"), "sys"); }
        else if (f.type === "error") { line("error " + f.code + ": " + f.message, "sys"); }
      };
      ws.onclose = c => {
        $("state").textContent = "closed (" + c.code + (c.reason ? " " + c.reason : "") + "), reconnecting";
        // 4000 means this instance is draining: reconnect at once (a load balancer picks
        // another instance); otherwise back off up to 10 s.
        const delay = c.code === 4000 ? 100 : Math.min(10000, 500 * 2 ** retry++);
        setTimeout(connect, delay);
      };
    }

    $("connect").onclick = () => { lastSeq = 0; epoch = ""; $("log").textContent = ""; connect(); };
    $("text").oninput = () => {
      const now = Date.now();
      if (ws && ws.readyState === 1 && now - lastTyping > 2000) {
        lastTyping = now;
        ws.send(JSON.stringify({type: "typing", channel: $("channel").value}));
      }
    };
    async function send() {
      const text = $("text").value;
      if (!text) return;
      const r = await fetch("/demo/send", {method: "POST",
        headers: {"Authorization": "Bearer " + $("token").value.trim(), "Content-Type": "application/json"},
        body: JSON.stringify({channel: $("channel").value, text: text})});
      if (r.ok) { $("text").value = ""; }
      else if (r.status === 404) { line("sending is disabled on this notifier (start it with --demo-send); publish with: routectl publish event --channel " + $("channel").value + " --sender <you> --text …", "sys"); }
      else { line("send refused: " + r.status + " " + (await r.text()), "sys"); }
    }
    $("send").onclick = send;
    $("text").onkeydown = e => { if (e.key === "Enter") send(); };
    setInterval(() => { if (ws && ws.readyState === 1) ws.send('{"type":"ping"}'); }, 10000);
    if ($("token").value) connect();
    </script></body></html>
    """#
}
