// A permessage-deflate peer for checking the Autobahn runner (kosoku) itself, built on Node's
// `ws` with compression on: an echo server for kosoku's fuzzingclient mode, or an Autobahn
// client agent (getCaseCount, runCase echo, updateReports) for its fuzzingserver mode.
//
//   node scripts/autobahn-peer-ws.js server PORT [THRESHOLD]
//   node scripts/autobahn-peer-ws.js client ws://127.0.0.1:PORT [THRESHOLD]
//
// THRESHOLD is ws's `perMessageDeflate.threshold`: with no context takeover on its side, ws
// sends messages shorter than it uncompressed (ws's default is 1024). THRESHOLD `off` sends
// every echo uncompressed on the negotiated connection (legal, RFC 7692 6: RSV1 clear), the
// path the unpatched runner fails on. `ws` must be on NODE_PATH (scripts/autobahn-peers.sh
// installs it under target/peers). Not part of the gate.
'use strict';
const WebSocket = require('ws');

const [mode, where, thresholdArg] = process.argv.slice(2);
const never = thresholdArg === 'off';
const perMessageDeflate = { threshold: thresholdArg === undefined || never ? 1024 : Number(thresholdArg) };
const label = never ? 'off' : String(perMessageDeflate.threshold);

function echo(ws) {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary, compress: !never }));
  ws.on('error', () => {});
}

if (mode === 'server') {
  const wss = new WebSocket.Server({ host: '127.0.0.1', port: Number(where), perMessageDeflate, maxPayload: 64 << 20 });
  wss.on('connection', echo);
  wss.on('listening', () => console.log(`ws echo server on ${where}, threshold ${label}`));
} else if (mode === 'client') {
  const agent = `ws-${label}`;
  // Offer client_no_context_takeover too (ws leaves it out by default): kosoku's 13.2, 13.5
  // and 13.6 accept only an offer that has it, and answer UNIMPLEMENTED otherwise.
  const offer = { ...perMessageDeflate, clientNoContextTakeover: true };
  const open = (path) => new WebSocket(`${where}${path}`, { perMessageDeflate: offer, maxPayload: 64 << 20 });
  const done = (ws) => new Promise((resolve) => { ws.on('close', resolve); ws.on('error', resolve); });
  (async () => {
    const count = await new Promise((resolve, reject) => {
      const ws = open('/getCaseCount');
      ws.on('message', (data) => resolve(Number(data.toString())));
      ws.on('error', reject);
    });
    console.log(`${count} cases`);
    for (let i = 1; i <= count; i++) {
      const ws = open(`/runCase?case=${i}&agent=${agent}`);
      echo(ws);
      await done(ws);
    }
    await done(open(`/updateReports?agent=${agent}`));
    console.log('done');
  })().catch((e) => { console.error(e); process.exit(1); });
} else {
  console.error('usage: autobahn-peer-ws.js server PORT [THRESHOLD] | client URL [THRESHOLD]');
  process.exit(2);
}
