// Command line shared by the JavaScript peers:
//   <port> [echo|broadcast|topic] [deflate=shared|dedicated] [cert=CHAIN.pem key=KEY.pem]
// cert/key (both or neither): serve wss with that certificate chain (leaf first) and key;
// only peers that pass `tls: true` accept them; `topic` only those that pass it in `modes`.
// Exits with the usage line on anything else.
module.exports = function parseArgs(script, { tls = false, modes = ["echo", "broadcast"] } = {}) {
  const port = Number(process.argv[2]);
  const mode = process.argv[3] || "echo";
  const opts = {};
  let ok = Number.isInteger(port) && port > 0 && port <= 65535 && modes.includes(mode);
  for (const arg of process.argv.slice(4)) {
    const m = /^(deflate|cert|key)=(.+)$/.exec(arg);
    if (!m || m[1] in opts) ok = false;
    else opts[m[1]] = m[2];
  }
  const deflate = opts.deflate ?? null;
  if (deflate !== null && !["shared", "dedicated"].includes(deflate)) ok = false;
  if ((opts.cert === undefined) !== (opts.key === undefined)) ok = false;
  if (opts.cert !== undefined && !tls) ok = false;
  if (!ok) {
    const tlsUsage = tls ? " [cert=CHAIN.pem key=KEY.pem]" : "";
    console.error(`usage: ${script} <port> [${modes.join("|")}] [deflate=shared|dedicated]${tlsUsage}`);
    process.exit(2);
  }
  const cert = opts.cert === undefined ? null : { cert: opts.cert, key: opts.key };
  return { port, mode, deflate, cert };
};
