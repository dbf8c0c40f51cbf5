// Command line shared by the JavaScript peers: <port> [echo|broadcast] [deflate=shared|dedicated].
// Exits with the usage line on anything else.
module.exports = function parseArgs(script) {
  const port = Number(process.argv[2]);
  const mode = process.argv[3] || "echo";
  const arg = process.argv[4];
  const deflate = arg === undefined ? null : arg.replace(/^deflate=/, "");
  if (
    !Number.isInteger(port) ||
    port <= 0 ||
    port > 65535 ||
    !["echo", "broadcast"].includes(mode) ||
    (deflate !== null && !["shared", "dedicated"].includes(deflate))
  ) {
    console.error(`usage: ${script} <port> [echo|broadcast] [deflate=shared|dedicated]`);
    process.exit(2);
  }
  return { port, mode, deflate };
};
