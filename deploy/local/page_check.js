#!/usr/bin/env -S node --experimental-websocket
// Runs the demo page's own script (fetched from GET /) for two users at once, with a minimal
// DOM stub instead of a browser: both connect, alice types (bob must show "alice is typing"),
// alice sends through POST /demo/send (bob's log must show the message). Needs Node ≥ 20.10
// and a notifier with --demo-send (scripts/run, deploy/local/start).
//   node --experimental-websocket deploy/local/page_check.js HOST:PORT ALICE_TOKEN HOST:PORT BOB_TOKEN [CHANNEL]
const vm = require('vm');
const [aliceHost, aliceToken, bobHost, bobToken, channel = 'demo'] = process.argv.slice(2);
const wait = ms => new Promise(resolve => setTimeout(resolve, ms));

function openPage(host, script, token) {
  const elements = {};
  const element = id => elements[id] || (elements[id] = {
    value: id === 'channel' ? channel : '', textContent: '', className: '', children: [], scrollTop: 0, scrollHeight: 0,
    appendChild(child) { this.children.push(child); },
  });
  const context = vm.createContext({
    document: {getElementById: element, createElement: () => ({textContent: '', className: ''})},
    location: {search: `?channel=${channel}&token=${token}`, protocol: 'http:', host},
    URLSearchParams, WebSocket, JSON, Math, Date, encodeURIComponent, setTimeout, clearTimeout, setInterval,
    fetch: (path, init) => fetch(`http://${host}${path}`, init),
  });
  vm.runInContext(script, context);
  return {element, lines: () => element('log').children.map(child => child.textContent)};
}

(async () => {
  const html = await (await fetch(`http://${aliceHost}/`)).text();
  const script = html.split('<script>')[1].split('</script>')[0];
  const alice = openPage(aliceHost, script, aliceToken);
  const bob = openPage(bobHost, script, bobToken);
  await wait(1000);
  console.log(`alice: ${alice.element('state').textContent}; bob: ${bob.element('state').textContent}`);
  alice.element('text').value = 'h';
  alice.element('text').oninput();
  await wait(1000);
  const typing = bob.element('typing').textContent;
  console.log(`bob sees: ${JSON.stringify(typing)}`);
  const text = `hello bob ${Date.now()}`;
  alice.element('text').value = text;
  await alice.element('send').onclick();
  await wait(1500);
  console.log(`bob's log: ${JSON.stringify(bob.lines())}`);
  const ok = typing.includes('alice is typing') && bob.lines().some(line => line.endsWith(`alice: ${text}`));
  console.log(ok ? 'page: ok' : 'page: FAILED');
  process.exit(ok ? 0 : 1);
})().catch(error => { console.log(`page: FAILED: ${error}`); process.exit(1); });
