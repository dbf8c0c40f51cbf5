// Peer server: Bun's built-in WebSocket server (uWebSockets inside), one JS thread.
// Usage: bun bun-echo.js <port> [echo|broadcast|topic] [deflate=shared|dedicated] [cert=CHAIN.pem key=KEY.pem]
// echo: every text/binary message is sent back as is. broadcast: every message goes to
// every connected client (the sender included). topic: the request path is the topic
// (ws.subscribe(path) on open) and every message goes to every connection on its path,
// the sender included (server.publish, which unlike ws.publish does not skip the sender). Limits as for every peer: 64 MiB
// messages. No compression unless deflate= is given: then permessage-deflate with
// uWebSockets' "shared" compressor (no context takeover, one compressor, a publish
// compressed once) or "dedicated" (DEDICATED_COMPRESSOR: window 15, memLevel 8, per
// connection), inflating with the shared decompressor; zlib level 6 (Z_DEFAULT_COMPRESSION,
// and libdeflate level 6 on the shared path). uWS has no size threshold: every message
// sent with compress=true is compressed. cert=/key=: wss (`Bun.serve` with `tls`:
// uSockets over BoringSSL, Bun's defaults otherwise).
const { port, mode, deflate, cert } = require("./args.js")("bun bun-echo.js", {
  tls: true,
  modes: ["echo", "broadcast", "topic"],
});
const compress = deflate !== null;
const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  tls: cert === null ? undefined : { cert: Bun.file(cert.cert), key: Bun.file(cert.key) },
  fetch(req, srv) {
    // The topic: the request path (topic mode), one topic for all (broadcast mode).
    const topic = mode === "topic" ? new URL(req.url).pathname : "all";
    if (srv.upgrade(req, { data: { topic } })) return undefined;
    return new Response("WebSocket only\n", { status: 426 });
  },
  websocket: {
    maxPayloadLength: 64 * 1024 * 1024,
    perMessageDeflate: compress ? { compress: deflate, decompress: "shared" } : false,
    idleTimeout: 960,
    backpressureLimit: 64 * 1024 * 1024,
    open(ws) {
      if (mode !== "echo") ws.subscribe(ws.data.topic);
    },
    message(ws, msg) {
      // The last argument asks for compression (ignored where it was not negotiated).
      if (mode !== "echo") server.publish(ws.data.topic, msg, compress);
      else ws.send(msg, compress);
    },
  },
});
const extra = `${compress ? ` deflate=${deflate}` : ""}${cert === null ? "" : " tls"}`;
console.error(`bun ${Bun.version} ${mode}${extra} listening on 127.0.0.1:${port}`);
