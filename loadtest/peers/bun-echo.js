// Peer server: Bun's built-in WebSocket server (uWebSockets inside), one JS thread.
// Usage: bun bun-echo.js <port> [echo|broadcast] [deflate=shared|dedicated] [cert=CHAIN.pem key=KEY.pem]
// echo: every text/binary message is sent back as is. broadcast: every message goes to
// every connected client (the sender included). Limits as for every peer: 64 MiB
// messages. No compression unless deflate= is given: then permessage-deflate with
// uWebSockets' "shared" compressor (no context takeover, one compressor, a publish
// compressed once) or "dedicated" (DEDICATED_COMPRESSOR: window 15, memLevel 8, per
// connection), inflating with the shared decompressor; zlib level 6 (Z_DEFAULT_COMPRESSION,
// and libdeflate level 6 on the shared path). uWS has no size threshold: every message
// sent with compress=true is compressed. cert=/key=: wss (`Bun.serve` with `tls`:
// uSockets over BoringSSL, Bun's defaults otherwise).
const { port, mode, deflate, cert } = require("./args.js")("bun bun-echo.js", { tls: true });
const compress = deflate !== null;
const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  tls: cert === null ? undefined : { cert: Bun.file(cert.cert), key: Bun.file(cert.key) },
  fetch(req, srv) {
    if (srv.upgrade(req)) return undefined;
    return new Response("WebSocket only\n", { status: 426 });
  },
  websocket: {
    maxPayloadLength: 64 * 1024 * 1024,
    perMessageDeflate: compress ? { compress: deflate, decompress: "shared" } : false,
    idleTimeout: 960,
    backpressureLimit: 64 * 1024 * 1024,
    open(ws) {
      if (mode === "broadcast") ws.subscribe("all");
    },
    message(ws, msg) {
      // The last argument asks for compression (ignored where it was not negotiated).
      if (mode === "broadcast") server.publish("all", msg, compress);
      else ws.send(msg, compress);
    },
  },
});
const extra = `${compress ? ` deflate=${deflate}` : ""}${cert === null ? "" : " tls"}`;
console.error(`bun ${Bun.version} ${mode}${extra} listening on 127.0.0.1:${port}`);
