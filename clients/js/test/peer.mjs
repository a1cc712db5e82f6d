// A Node application on the client library, for the end-to-end tests: it connects to the
// notifier URLs given (comma-separated) as the user whose token is in SWITCHBOARD_TOKEN, and
// prints one JSON line per thing the library hands over (event, position, resync, state,
// error), until it is told to stop (SIGTERM).
import { SwitchboardClient } from "../switchboard.js";

const urls = (process.argv[2] || "").split(",").filter(Boolean);
const token = process.env.SWITCHBOARD_TOKEN || "";
const print = object => process.stdout.write(JSON.stringify(object) + "\n");

const client = new SwitchboardClient({
  urls,
  token,
  initialBackoffMs: 100,
  maxBackoffMs: 1000,
  onEvent: (channel, event, position) => print({ kind: "event", channel, id: event.id, ...position }),
  onPosition: (channel, position) => print({ kind: "position", channel, ...position }),
  onResync: (channel, reason) => print({ kind: "resync", channel, reason }),
  onState: state => print({ kind: "state", state, url: urls[client.urlIndex % urls.length] }),
  onError: (code, message) => print({ kind: "error", code, message }),
});
client.connect();
process.on("SIGTERM", () => { client.close(); process.exit(0); });
