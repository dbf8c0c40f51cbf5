// Peer server: Node.js with the `ws` package, one JS thread.
// Usage: node node-ws-echo.js <port> [echo|broadcast]   (NODE_PATH must reach `ws`)
// echo: every text/binary message is sent back as is. broadcast: every message goes to
// every connected client (the sender included). Limits as for every peer: 64 MiB
// messages, no compression.
const { WebSocketServer } = require("ws");
const port = Number(process.argv[2]);
const mode = process.argv[3] || "echo";
if (!Number.isInteger(port) || port <= 0 || port > 65535 || !["echo", "broadcast"].includes(mode)) {
  console.error("usage: node node-ws-echo.js <port> [echo|broadcast]");
  process.exit(2);
}
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  backlog: 4096,
  perMessageDeflate: false,
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
wss.on("listening", () => console.error(`node ${process.version} ws ${mode} listening on 127.0.0.1:${port}`));
