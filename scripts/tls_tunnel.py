#!/usr/bin/env python3
"""A plain-TCP-to-TLS tunnel, for the Autobahn gate over wss:// (scripts/autobahn.sh with
RINGWIRE_TLS=1). kosoku 0.1 speaks ws:// only (`kosoku wss://...` fails with `invalid url
scheme "wss": expected ws or http (or none)`), so it connects here in plain TCP and every
connection is carried on over TLS to the server under test:

  tls_tunnel.py LISTEN_PORT UPSTREAM_HOST:PORT SERVER_NAME CAFILE

The TLS client is Python's ssl (OpenSSL): it trusts CAFILE only, verifies SERVER_NAME
against the certificate, offers ALPN http/1.1 and requires it back. Bytes are copied as
they come, both ways. The server's EOF (close_notify, or TCP FIN) becomes a FIN towards
kosoku; kosoku's EOF closes the TLS connection (close_notify, then FIN). Prints
`tunnel listening PORT`, then one line per distinct (TLS version, ALPN) seen, and on
SIGTERM/SIGINT a summary `tunnel: N connections, M TLS failures`; every TLS failure is
logged with its reason.
"""

import asyncio
import signal
import ssl
import sys

stats = {"connections": 0, "failures": 0}
seen = set()


async def pump(reader, writer, on_eof):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    await on_eof()


async def carry(kosoku_r, kosoku_w, upstream, name, ctx):
    stats["connections"] += 1
    host, port = upstream
    try:
        tls_r, tls_w = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=name), timeout=10
        )
    except (OSError, ssl.SSLError, asyncio.TimeoutError) as e:
        stats["failures"] += 1
        print(f"tunnel: TLS connection to {host}:{port} failed: {e!r}", file=sys.stderr, flush=True)
        kosoku_w.close()
        return
    obj = tls_w.get_extra_info("ssl_object")
    alpn = obj.selected_alpn_protocol()
    if alpn != "http/1.1":
        stats["failures"] += 1
        print(f"tunnel: ALPN {alpn!r}, not http/1.1", file=sys.stderr, flush=True)
        tls_w.close()
        kosoku_w.close()
        return
    if (obj.version(), alpn) not in seen:
        seen.add((obj.version(), alpn))
        print(f"tunnel: {obj.version()} {obj.cipher()[0]} alpn {alpn}", flush=True)

    async def upstream_eof():
        # The server closed: a FIN to kosoku, which answers with its own close.
        try:
            kosoku_w.write_eof()
        except OSError:
            pass

    async def kosoku_eof():
        tls_w.close()
        try:
            await tls_w.wait_closed()
        except (OSError, ssl.SSLError):
            pass

    await asyncio.gather(pump(tls_r, kosoku_w, upstream_eof), pump(kosoku_r, tls_w, kosoku_eof))
    kosoku_w.close()


async def main():
    listen, upstream, name, cafile = sys.argv[1:5]
    host, port = upstream.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    server = await asyncio.start_server(
        lambda r, w: carry(r, w, (host, int(port)), name, ctx), "127.0.0.1", int(listen)
    )
    print(f"tunnel listening {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print(f"tunnel: {stats['connections']} connections, {stats['failures']} TLS failures", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: tls_tunnel.py LISTEN_PORT UPSTREAM_HOST:PORT SERVER_NAME CAFILE")
    asyncio.run(main())
