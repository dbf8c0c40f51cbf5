// The interop message set and the echo check, shared by the browser page (interop.html) and
// the Node `ws` peer (peer-ws.js). The Rust test (../interop.rs) passes the set as a spec:
// comma-separated KIND:BYTES[xCOUNT], KIND one of
//   t  JSON-like text            b  the same JSON-like text, sent as binary
//   r  random bytes, binary      a  random letters and digits, text
// with COUNT sends of one and the same message (context takeover shows on the wire there).
// Random data comes from a fixed-seed xorshift, so every run sends the same bytes.
(function (root) {
  'use strict';

  function json(n) {
    let s = '';
    for (let i = 0; s.length < n; i++) {
      s += `{"id":${i},"user":"user-${i % 97}","tags":["ringwire","deflate"],"score":${(i * 7919) % 1000}},`;
    }
    return s.slice(0, n);
  }

  function xorshift(seed) {
    let x = seed >>> 0 || 1;
    return () => {
      x ^= x << 13; x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5; x >>>= 0;
      return x;
    };
  }

  const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

  // [{ data: string | Uint8Array, label }] in sending order.
  function build(spec) {
    const next = xorshift(0x9e3779b9);
    const out = [];
    for (const item of spec.split(',')) {
      const m = /^([tbra]):(\d+)(?:x(\d+))?$/.exec(item);
      if (!m) throw new Error(`bad spec item ${item}`);
      const [kind, n, count] = [m[1], Number(m[2]), Number(m[3] || 1)];
      let data;
      if (kind === 't') data = json(n);
      else if (kind === 'b') data = new TextEncoder().encode(json(n));
      else if (kind === 'r') data = Uint8Array.from({ length: n }, () => next() & 0xff);
      else data = Array.from({ length: n }, () => ALNUM[next() % ALNUM.length]).join('');
      for (let i = 0; i < count; i++) out.push({ data, label: `${item}#${i}` });
    }
    return out;
  }

  function same(sent, got) {
    if (typeof sent === 'string') return typeof got === 'string' && got === sent;
    if (!(got instanceof ArrayBuffer)) return false;
    const g = new Uint8Array(got);
    if (g.length !== sent.length) return false;
    for (let i = 0; i < g.length; i++) if (g[i] !== sent[i]) return false;
    return true;
  }

  function describe(data) {
    return typeof data === 'string' ? `text of ${data.length}` : `binary of ${data.byteLength}`;
  }

  // Opens `url` with `open(url)` (a browser WebSocket or ws's), checks that permessage-deflate
  // was negotiated (with `deflate` false: that no extension was), sends each message of
  // `spec` and waits for its echo before the next, compares every echo byte for byte, closes
  // with 1000 and requires a clean close (close frames both ways). Resolves to the
  // negotiated extensions; rejects with what went wrong.
  function echoRun(open, url, spec, deflate = true) {
    const messages = build(spec);
    return new Promise((resolve, reject) => {
      const ws = open(url);
      ws.binaryType = 'arraybuffer';
      let i = 0;
      let failed = null;
      const fail = (why) => { if (!failed) { failed = new Error(`${url}: ${why}`); ws.close(); } };
      ws.onopen = () => {
        if (deflate && !/permessage-deflate/.test(ws.extensions)) return fail(`no permessage-deflate: extensions '${ws.extensions}'`);
        if (!deflate && ws.extensions) return fail(`extensions '${ws.extensions}' from a server without permessage-deflate`);
        ws.send(messages[0].data);
      };
      ws.onmessage = (ev) => {
        const m = messages[i];
        if (!m) return fail(`an unexpected message after the last echo: ${describe(ev.data)}`);
        if (!same(m.data, ev.data)) return fail(`echo of ${m.label} differs: sent ${describe(m.data)}, got ${describe(ev.data)}`);
        i += 1;
        if (i < messages.length) ws.send(messages[i].data);
        else ws.close(1000, 'done');
      };
      ws.onerror = () => fail('error event');
      ws.onclose = (ev) => {
        if (failed) return reject(failed);
        if (i !== messages.length) return reject(new Error(`${url}: closed (${ev.code} ${ev.reason}) after ${i} of ${messages.length} echoes`));
        if (ev.code !== 1000) return reject(new Error(`${url}: closed with ${ev.code} ${ev.reason}`));
        if (!ev.wasClean) return reject(new Error(`${url}: closed with 1000 but not cleanly`));
        resolve({ url, extensions: ws.extensions, echoes: i });
      };
    });
  }

  const api = { build, echoRun };
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
  else root.interop = api;
})(this);
