"""Python `websockets` with its default compression (permessage-deflate), for the Rust test
(../interop.rs):

  python peer-websockets.py client URL SPEC [--ca FILE] [--no-deflate] [--tls1.2]
                                              echo the message set of SPEC over URL and
                                              check every echo; prints `ok EXTENSIONS`.
                                              wss:// trusts the CA in FILE only (and checks
                                              the name) and prints `tls VERSION alpn ALPN`
                                              (--tls1.2: TLS 1.2 at most);
                                              --no-deflate: the server must decline
                                              permessage-deflate (it is still offered)
  python peer-websockets.py checks URL --ca FILE
                                              over wss://, against `ringwire echo
                                              --max-message-size 64KiB`: fragmented messages,
                                              ping/pong, and the close codes 1000, 4000,
                                              1002, 1007 and 1009 (see checks()); prints
                                              `ok checks` and each close code seen
  python peer-websockets.py server            an echo server on 127.0.0.1 (an ephemeral
                                              port), prints `listening PORT`; runs until killed
  python peer-websockets.py version           prints websockets' and Python's versions

SPEC is the one messages.js reads (KIND:BYTES[xCOUNT], KIND t, b, r or a); the same
generators, so the same bytes as the Node and browser peers send.
"""

import asyncio
import re
import ssl
import sys

import websockets
from websockets.asyncio.client import connect
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


def tls_context(ca, tls12=False):
    """Trusts the CA in `ca` only (the default context: the name is checked), ALPN http/1.1;
    `tls12`: TLS 1.2 at most."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls_line(ws):
    """`tls VERSION alpn ALPN` of a wss:// connection; fails unless ALPN is http/1.1."""
    tls = ws.transport.get_extra_info("ssl_object")
    alpn = tls.selected_alpn_protocol()
    if alpn != "http/1.1":
        sys.exit(f"FAILED: ALPN {alpn!r}, not http/1.1")
    return f"tls {tls.version()} alpn {alpn}"


# The clients use websockets' asyncio API: one thread drives the connection. The sync client
# reads in a thread of its own while the caller writes, which over TLS sometimes loses the
# upgrade request (seen with CPython 3.11 and OpenSSL 3.0: the request never reaches the
# wire, and connect() times out waiting for the answer, against ringwire and against
# websockets' own TLS server alike).


async def client(url, spec, ca=None, deflate=True, tls12=False):
    ctx = tls_context(ca, tls12) if ca else None
    async with connect(url, max_size=None, open_timeout=10, ssl=ctx) as ws:
        if ctx:
            print(tls_line(ws))
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        if deflate and "permessage-deflate" not in extensions:
            sys.exit(f"FAILED {url}: no permessage-deflate: extensions '{extensions}'")
        if not deflate and extensions:
            sys.exit(f"FAILED {url}: extensions '{extensions}' from a server without permessage-deflate")
        for data, label in build(spec):
            await ws.send(data)
            got = await asyncio.wait_for(ws.recv(), 10)
            if got != data:
                sys.exit(f"FAILED {url}: echo of {label} differs: sent {describe(data)}, got {describe(got)}")
        await ws.close()
        if ws.close_code != 1000:
            sys.exit(f"FAILED {url}: the server answered our close with {ws.close_code} {ws.close_reason!r}")
    print(f"ok {extensions or 'no extensions'}")


async def closed_by_server(url, ctx, send, want):
    """Opens a connection (no compression: frames go out as written), lets `send(ws)` break
    a rule, and checks that the server closes with `want`."""
    async with connect(url, max_size=None, open_timeout=10, ssl=ctx, compression=None) as ws:
        try:
            await send(ws)  # the server may close while this is still sending
            got = await asyncio.wait_for(ws.recv(), 10)
            sys.exit(f"FAILED {url}: a message ({describe(got)}) instead of close {want}")
        except websockets.ConnectionClosed:
            pass
        if ws.close_code != want:
            sys.exit(f"FAILED {url}: closed with {ws.close_code} {ws.close_reason!r}, not {want}")
    print(f"close {want} {ws.close_reason!r}")


async def raw(ws, frame):
    """Writes `frame` as it is (websockets would refuse to send most of these)."""
    async with ws.send_context():
        ws.protocol.send_frame(frame)


async def checks(url, ca):
    """What the Autobahn sections cover, over TLS, from a real peer: fragmented text and
    binary messages (a UTF-8 character split across fragments) and their echoes, a ping's
    pong with its payload, a close with 4000 answered with 4000, and the server closing with
    1002 (a continuation frame that continues nothing), 1007 (invalid UTF-8 in a text
    message) and 1009 (a fragmented message above --max-message-size 64KiB)."""
    from websockets.frames import Frame, Opcode

    ctx = tls_context(ca)
    async with connect(url, max_size=None, open_timeout=10, ssl=ctx, compression=None) as ws:
        print(tls_line(ws))
        text = ["fragmented ", "\u00e9cho ", "over TLS: ", "\U0001f512" * 1000]
        await ws.send(iter(text))
        if await asyncio.wait_for(ws.recv(), 10) != "".join(text):
            sys.exit(f"FAILED {url}: the fragmented text message came back different")
        chunks = [bytes([i]) * 10000 for i in range(5)]
        await ws.send(iter(chunks))
        if await asyncio.wait_for(ws.recv(), 10) != b"".join(chunks):
            sys.exit(f"FAILED {url}: the fragmented binary message came back different")
        # A character split between two frames of one message.
        await raw(ws, Frame(Opcode.TEXT, "\u00e9".encode()[:1], fin=False))
        await raw(ws, Frame(Opcode.CONT, "\u00e9".encode()[1:], fin=True))
        if await asyncio.wait_for(ws.recv(), 10) != "\u00e9":
            sys.exit(f"FAILED {url}: a character split across fragments came back different")
        await asyncio.wait_for(await ws.ping(b"ringwire ping"), 10)
        print("ok fragments, ping")
        await ws.close(4000, "bye")
        if ws.close_code != 4000:
            sys.exit(f"FAILED {url}: our close 4000 was answered with {ws.close_code} {ws.close_reason!r}")
    print("close 4000")
    await closed_by_server(url, ctx, lambda ws: raw(ws, Frame(Opcode.CONT, b"nothing to continue")), 1002)
    await closed_by_server(url, ctx, lambda ws: raw(ws, Frame(Opcode.TEXT, b"bad \xc3\x28 utf-8")), 1007)
    await closed_by_server(url, ctx, lambda ws: ws.send(iter([b"x" * 16384] * 5)), 1009)
    print("ok checks")


def server():
    def echo(ws):
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", 0, max_size=None) as s:
        print(f"listening {s.socket.getsockname()[1]}", flush=True)
        s.serve_forever()


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    rest = sys.argv[4:] if mode == "client" else sys.argv[3:]
    ca = rest[rest.index("--ca") + 1] if "--ca" in rest else None
    if mode == "client" and len(sys.argv) >= 4:
        asyncio.run(client(sys.argv[2], sys.argv[3], ca, "--no-deflate" not in rest, "--tls1.2" in rest))
    elif mode == "checks" and len(sys.argv) == 5 and ca:
        asyncio.run(checks(sys.argv[2], ca))
    elif mode == "server":
        server()
    elif mode == "version":
        print(f"websockets {websockets.__version__} on Python {sys.version.split()[0]}")
    else:
        sys.exit("usage: peer-websockets.py client URL SPEC [--ca FILE] [--no-deflate] [--tls1.2] | checks URL --ca FILE | server | version")
