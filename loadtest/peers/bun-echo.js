// Peer server: Bun's built-in WebSocket server (uWebSockets inside), one JS thread.
// Usage: bun bun-echo.js <port> [echo|broadcast]
// echo: every text/binary message is sent back as is. broadcast: every message goes to
// every connected client (the sender included). Limits as for every peer: 64 MiB
// messages, no compression.
const port = Number(process.argv[2]);
const mode = process.argv[3] || "echo";
if (!Number.isInteger(port) || port <= 0 || port > 65535 || !["echo", "broadcast"].includes(mode)) {
  console.error("usage: bun bun-echo.js <port> [echo|broadcast]");
  process.exit(2);
}
const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, srv) {
    if (srv.upgrade(req)) return undefined;
    return new Response("WebSocket only\n", { status: 426 });
  },
  websocket: {
    maxPayloadLength: 64 * 1024 * 1024,
    perMessageDeflate: false,
    idleTimeout: 960,
    backpressureLimit: 64 * 1024 * 1024,
    open(ws) {
      if (mode === "broadcast") ws.subscribe("all");
    },
    message(ws, msg) {
      if (mode === "broadcast") server.publish("all", msg);
      else ws.send(msg);
    },
  },
});
console.error(`bun ${Bun.version} ${mode} listening on 127.0.0.1:${port}`);
