/// The page a notifier serves at `GET /`: connect as the user of a token, see the messages of
/// one channel arrive (time, sender, your own set apart), send typing while typing, and (only
/// where the notifier runs with `--demo-send`) post a message through `POST /demo/send`.
///
/// It is an application of the project's JavaScript client (`/switchboard.js`, served from
/// `clients/js/switchboard.js`): the client reconnects across the notifier URLs the page is
/// given (`?urls=` or the notifier's `--demo-urls`), resumes with the epoch, drops duplicates
/// and heals gaps; the page shows its state ("reconnecting to …") and every resync. Text from
/// the server is rendered with `textContent` only.
enum DemoPage {
    /// Served with a Content-Security-Policy that allows only this page's inline script and
    /// style, the client script from this host, and WebSocket connections; `no-referrer`
    /// keeps the token in the URL from leaking to other sites.
    static let headers: [(String, String)] = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Security-Policy", "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
    ]

    /// The page, with `urls` (the notifiers' WebSocket URLs) as the client's default list.
    static func bytes(urls: [String]) -> [UInt8] {
        let list = urls.map { "\"" + $0.filter { $0.isASCII && $0 != "\"" && $0 != "\\" && $0 != "<" } + "\"" }.joined(separator: ",")
        return Array(html.replacingOccurrences(of: "/*URLS*/", with: list).utf8)
    }

    static let html = #"""
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8"><title>Switchboard demo</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <style>
    body{font:15px system-ui,sans-serif;max-width:46rem;margin:1.5rem auto;padding:0 1rem}
    input,button{font:inherit;padding:.3rem}
    #log{border:1px solid #ccc;height:22rem;overflow:auto;padding:.4rem;margin:.6rem 0;white-space:pre-wrap}
    .sys{color:#777}.typing{color:#a60;min-height:1.3em}.own{color:#064;text-align:right}.time{color:#999;font-size:.85em}
    </style></head><body>
    <h1>Switchboard demo</h1>
    <p>Token <input id="token" size="40"> channel <input id="channel" size="10" value="demo">
    <button id="connect">connect</button> <span id="state" class="sys">disconnected</span></p>
    <div id="log"></div>
    <div id="typing" class="typing"></div>
    <p><input id="text" size="50" placeholder="type a message" autocomplete="off"> <button id="send">send</button></p>
    <script type="module">
    import { SwitchboardClient } from "/switchboard.js";
    const $ = id => document.getElementById(id);
    const params = new URLSearchParams(location.search);
    $("token").value = params.get("token") || "";
    if (params.get("channel")) $("channel").value = params.get("channel");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const configured = [/*URLS*/];
    const urls = params.get("urls") ? params.get("urls").split(",") : configured.length ? configured : [scheme + "//" + location.host + "/ws"];
    let client = null, user = "", lastTyping = 0, typingTimer = null;

    function line(text, cls, seq) {
      const div = document.createElement("div");
      if (cls) div.className = cls;
      if (seq !== undefined) div.dataset.seq = String(seq);
      div.textContent = text;
      $("log").appendChild(div);
      $("log").scrollTop = $("log").scrollHeight;
    }

    function userOf(token) {
      try { return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub || ""; } catch { return ""; }
    }

    function connect() {
      if (client) client.close();
      $("log").textContent = "";
      const token = $("token").value.trim();
      user = userOf(token);
      client = new SwitchboardClient({
        urls, token,
        onEvent(channel, event, position) {
          if (channel !== $("channel").value) return;
          const time = new Date(event.created_at_ms).toLocaleTimeString();
          const text = event.text !== undefined ? event.text : "(" + event.kind + ")";
          const own = event.sender === user;
          line(time + "  " + (own ? "you" : event.sender) + ": " + text, own ? "msg own" : "msg", position.seq);
        },
        onTyping(channel, who) {
          if (channel !== $("channel").value) return;
          $("typing").textContent = who + " is typing…";
          clearTimeout(typingTimer);
          typingTimer = setTimeout(() => { $("typing").textContent = ""; }, 3500);
        },
        onResync(channel, reason) {
          line(reason === "epoch_changed" ? "resynced: the event stream was created anew, earlier messages are not replayed"
             : reason === "membership" ? "resynced: messages from before you joined are not shown"
             : "resynced: some missed messages could not be replayed", "sys resync");
        },
        onState(state) {
          const url = urls[client.urlIndex % urls.length];
          $("state").textContent = state === "open" ? "connected to " + url + " as " + user
            : state === "reconnecting" ? "reconnecting to " + url + "…" : state;
          $("state").dataset.state = state;
          $("state").dataset.url = url;
        },
        onError(code, message) { line("error " + code + ": " + message, "sys"); },
      });
      client.connect();
    }

    $("connect").onclick = connect;
    $("text").oninput = () => {
      const now = Date.now();
      if (client && now - lastTyping > 2000) {
        lastTyping = now;
        client.sendTyping($("channel").value);
      }
    };
    async function send() {
      const text = $("text").value;
      if (!text) return;
      let r;
      try {
        r = await fetch("/demo/send", {method: "POST",
          headers: {"Authorization": "Bearer " + $("token").value.trim(), "Content-Type": "application/json"},
          body: JSON.stringify({channel: $("channel").value, text: text})});
      } catch (error) { line("send failed: this page's notifier is not answering (" + error.message + ")", "sys"); return; }
      if (r.ok) { $("text").value = ""; }
      else if (r.status === 404) { line("sending is disabled on this notifier (start it with --demo-send); publish with: routectl publish event --channel " + $("channel").value + " --sender <you> --text …", "sys"); }
      else { line("send refused: " + r.status + " " + (await r.text()), "sys"); }
    }
    $("send").onclick = send;
    $("text").onkeydown = e => { if (e.key === "Enter") send(); };
    window.switchboardDemo = { send: async text => { $("text").value = text; await send(); }, get client() { return client; } };
    if ($("token").value) connect();
    </script></body></html>
    """#
}
