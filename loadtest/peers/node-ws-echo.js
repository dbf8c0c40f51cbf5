// Peer server: Node.js with the `ws` package, one JS thread.
// Usage: node node-ws-echo.js <port> [echo|broadcast] [deflate=shared|dedicated]
// (NODE_PATH must reach `ws`)
// echo: every text/binary message is sent back as is. broadcast: every message goes to
// every connected client (the sender included). Limits as for every peer: 64 MiB
// messages. No compression unless deflate= is given: then permessage-deflate, messages of
// 128 bytes and more compressed at zlib level 6, memLevel 8, window 15. ws has one mode
// only: a zlib deflate and inflate stream per connection, made at the first message;
// "shared" adds server_no_context_takeover (the stream is reset after each message, its
// memory kept), "dedicated" keeps the context. A broadcast is compressed per recipient.
const { WebSocketServer } = require("ws");
const { port, mode, deflate } = require("./args.js")("node node-ws-echo.js");
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  backlog: 4096,
  perMessageDeflate:
    deflate === null
      ? false
      : {
          threshold: 128,
          serverNoContextTakeover: deflate === "shared",
          zlibDeflateOptions: { level: 6, memLevel: 8 },
        },
  maxPayload: 64 * 1024 * 1024,
  clientTracking: mode === "broadcast",
});
wss.on("connection", (ws) => {
  ws.on("error", () => {});
  ws.on("message", (data, isBinary) => {
    if (mode === "broadcast") {
      for (const c of wss.clients) c.send(data, { binary: isBinary });
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});
wss.on("listening", () =>
  console.error(`node ${process.version} ws ${mode}${deflate ? ` deflate=${deflate}` : ""} listening on 127.0.0.1:${port}`),
);
