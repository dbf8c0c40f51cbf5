// Node `ws` with permessage-deflate on, for the Rust test (../interop.rs):
//
//   node peer-ws.js client URL SPEC   echo the message set of SPEC (messages.js) over URL
//                                     and check every echo; prints `ok EXTENSIONS`, exit 0
//   node peer-ws.js server            an echo server on 127.0.0.1 (an ephemeral port),
//                                     prints `listening PORT`; runs until killed
//   node peer-ws.js version           prints ws's and Node's versions
//
// `ws` must be on NODE_PATH (the test installs it under target/peers/node).
'use strict';
const WebSocket = require('ws');
const { echoRun } = require('./messages.js');

const [mode, url, spec] = process.argv.slice(2);
// ws's defaults (threshold 1024, context takeover unless the offer or answer says
// otherwise), written out so the test does not depend on them changing.
const perMessageDeflate = { threshold: 1024 };
const maxPayload = 64 << 20;

if (mode === 'client') {
  echoRun((u) => new WebSocket(u, { perMessageDeflate, maxPayload }), url, spec).then(
    (r) => { console.log(`ok ${r.extensions}`); process.exit(0); },
    (e) => { console.error(`FAILED ${e.message}`); process.exit(1); },
  );
} else if (mode === 'server') {
  const wss = new WebSocket.Server({ host: '127.0.0.1', port: 0, perMessageDeflate, maxPayload });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', (e) => console.error(`connection error: ${e.message}`));
  });
  wss.on('listening', () => console.log(`listening ${wss.address().port}`));
} else if (mode === 'version') {
  console.log(`ws ${require('ws/package.json').version} on Node ${process.version}`);
} else {
  console.error('usage: peer-ws.js client URL SPEC | server | version');
  process.exit(2);
}
