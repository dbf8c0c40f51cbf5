"""Python `websockets` with its default compression (permessage-deflate), for the Rust test
(../interop.rs):

  python peer-websockets.py client URL SPEC   echo the message set of SPEC over URL and
                                              check every echo; prints `ok EXTENSIONS`
  python peer-websockets.py server            an echo server on 127.0.0.1 (an ephemeral
                                              port), prints `listening PORT`; runs until killed
  python peer-websockets.py version           prints websockets' and Python's versions

SPEC is the one messages.js reads (KIND:BYTES[xCOUNT], KIND t, b, r or a); the same
generators, so the same bytes as the Node and browser peers send.
"""

import re
import sys

import websockets
from websockets.sync.client import connect
from websockets.sync.server import serve

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def json_like(n):
    parts, size, i = [], 0, 0
    while size < n:
        p = f'{{"id":{i},"user":"user-{i % 97}","tags":["ringwire","deflate"],"score":{(i * 7919) % 1000}}},'
        parts.append(p)
        size += len(p)
        i += 1
    return "".join(parts)[:n]


def build(spec):
    x = 0x9E3779B9

    def nxt():
        nonlocal x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        return x

    out = []
    for item in spec.split(","):
        m = re.fullmatch(r"([tbra]):(\d+)(?:x(\d+))?", item)
        if not m:
            raise ValueError(f"bad spec item {item}")
        kind, n, count = m[1], int(m[2]), int(m[3] or 1)
        if kind == "t":
            data = json_like(n)
        elif kind == "b":
            data = json_like(n).encode()
        elif kind == "r":
            data = bytes(nxt() & 0xFF for _ in range(n))
        else:
            data = "".join(ALNUM[nxt() % len(ALNUM)] for _ in range(n))
        out += [(data, f"{item}#{i}") for i in range(count)]
    return out


def describe(data):
    return f"{'text' if isinstance(data, str) else 'binary'} of {len(data)}"


def client(url, spec):
    with connect(url, max_size=None, open_timeout=10) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        if "permessage-deflate" not in extensions:
            sys.exit(f"FAILED {url}: no permessage-deflate: extensions '{extensions}'")
        for data, label in build(spec):
            ws.send(data)
            got = ws.recv(timeout=10)
            if got != data:
                sys.exit(f"FAILED {url}: echo of {label} differs: sent {describe(data)}, got {describe(got)}")
        ws.close()
    print(f"ok {extensions}")


def server():
    def echo(ws):
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", 0, max_size=None) as s:
        print(f"listening {s.socket.getsockname()[1]}", flush=True)
        s.serve_forever()


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "client" and len(sys.argv) == 4:
        client(sys.argv[2], sys.argv[3])
    elif mode == "server":
        server()
    elif mode == "version":
        print(f"websockets {websockets.__version__} on Python {sys.version.split()[0]}")
    else:
        sys.exit("usage: peer-websockets.py client URL SPEC | server | version")
