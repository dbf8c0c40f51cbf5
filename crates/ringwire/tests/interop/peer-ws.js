// Node `ws` with permessage-deflate on, for the Rust test (../interop.rs):
//
//   node peer-ws.js client URL SPEC [--ca FILE] [--no-deflate]
//                                     echo the message set of SPEC (messages.js) over URL
//                                     and check every echo; prints `ok EXTENSIONS`, exit 0.
//                                     wss:// trusts the CA in FILE only (and checks the
//                                     name), prints `tls VERSION alpn ALPN`; --no-deflate:
//                                     the server must decline permessage-deflate
//   node peer-ws.js server            an echo server on 127.0.0.1 (an ephemeral port),
//                                     prints `listening PORT`; runs until killed
//   node peer-ws.js version           prints ws's and Node's versions
//
// `ws` must be on NODE_PATH (the test installs it under target/peers/node).
'use strict';
const WebSocket = require('ws');
const { echoRun } = require('./messages.js');

const [mode, url, spec, ...rest] = process.argv.slice(2);
const ca = rest.includes('--ca') ? require('fs').readFileSync(rest[rest.indexOf('--ca') + 1]) : undefined;
const deflate = !rest.includes('--no-deflate');
// ws's defaults (threshold 1024, context takeover unless the offer or answer says
// otherwise), written out so the test does not depend on them changing.
const perMessageDeflate = { threshold: 1024 };
const maxPayload = 64 << 20;

if (mode === 'client') {
  let tls = null;
  const open = (u) => {
    // TLS options go to tls.connect: only this CA is trusted (no rejectUnauthorized: false).
    const ws = new WebSocket(u, { perMessageDeflate, maxPayload, ca, ALPNProtocols: ca && ['http/1.1'] });
    ws.on('open', () => { if (ws._socket.encrypted) tls = `tls ${ws._socket.getProtocol()} alpn ${ws._socket.alpnProtocol}`; });
    return ws;
  };
  echoRun(open, url, spec, deflate).then(
    (r) => {
      if (ca && !/ alpn http\/1\.1$/.test(tls || '')) { console.error(`FAILED ${url}: TLS ${tls}`); process.exit(1); }
      if (tls) console.log(tls);
      console.log(`ok ${r.extensions || 'no extensions'}`);
      process.exit(0);
    },
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
