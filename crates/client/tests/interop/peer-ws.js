// Node `ws` serving wss:// for the client's Rust test (../wss_interop.rs):
//
//   node peer-ws.js server CERT_PEM KEY_PEM   a wss echo server on 127.0.0.1 (an ephemeral
//                                             port) over Node's TLS (OpenSSL), prints
//                                             `listening PORT`, logs `closed CODE` per
//                                             connection; runs until killed
//   node peer-ws.js version                   prints ws's and Node's versions
//
// `ws` must be on NODE_PATH (the test installs it under target/peers/node).
'use strict';
const fs = require('fs');
const https = require('https');
const WebSocket = require('ws');

const [mode, cert, key] = process.argv.slice(2);
if (mode === 'server') {
  const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), ALPNProtocols: ['http/1.1'] });
  const wss = new WebSocket.Server({ server, maxPayload: 64 << 20 });
  wss.on('connection', (ws, req) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('close', (code) => console.log(`closed ${code} ${req.socket.alpnProtocol}`));
    ws.on('error', (e) => console.error(`connection error: ${e.message}`));
  });
  server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
} else if (mode === 'version') {
  console.log(`ws ${require('ws/package.json').version} on Node ${process.version}, OpenSSL ${process.versions.openssl}`);
} else {
  console.error('usage: peer-ws.js server CERT KEY | version');
  process.exit(2);
}
