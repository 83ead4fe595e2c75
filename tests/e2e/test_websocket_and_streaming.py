"""WebSocket relay (real websockets client) and large bodies streamed both ways with flat RSS."""
import asyncio
import socket
import threading
import time

import prom_text
import requests
import websockets

from conftest import route, wait_until


def test_websocket_relays_frames_both_ways(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/ws", [(up.port,)], enable_websocket=True)]})

    async def talk():
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/ws") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"
            big = "x" * 200000
            await ws.send(big)
            assert await ws.recv() == big
    asyncio.run(talk())


def test_websocket_needs_enable_websocket(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/ws", [(up.port,)])]})

    async def talk():
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/ws", open_timeout=3):
            pass
    try:
        asyncio.run(talk())
        upgraded = True
    except Exception:
        upgraded = False
    assert not upgraded
    # the upgrade headers were stripped: the upstream saw a plain request
    names = {k.lower() for k, _ in up.requests[-1].headers}
    assert "upgrade" not in names


def test_websocket_idle_timeout_closes_relay(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/ws", [(up.port,)], enable_websocket=True)]},
                 node={"websocket_idle_timeout": "1s"})

    async def talk():
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/ws", ping_interval=None) as ws:
            await ws.send("a")
            assert await ws.recv() == "a"
            start = time.time()
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed:
                return time.time() - start
        return None
    elapsed = asyncio.run(talk())
    assert elapsed is not None and 0.5 < elapsed < 3



def test_websocket_relay_does_not_keep_old_configs_alive(gateway, upstream):
    """A relay may last hours while routes change: once upgraded it must not hold the config it
    was routed with (each one holds every route)."""
    up = upstream()
    routes = {"routes": [route("/ws", [(up.port,)], enable_websocket=True)]}
    gw = gateway(routes)

    def gauge(name):
        return prom_text.parse(gw.control("/metrics").text).value(name)

    async def talk():
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/ws") as ws:
            await ws.send("a")
            assert await ws.recv() == "a"
            for version in range(3):
                revision = gauge("portico_config_revision")
                routes["routes"][0]["name"] = f"v{version}"
                gw.write_routes(routes)
                assert wait_until(lambda: gauge("portico_config_revision") > revision, 10)
            requests.get(f"http://127.0.0.1:{gw.port}/elsewhere")  # the worker takes the newest
            assert wait_until(lambda: gauge("portico_config_snapshots_alive") == 1, 10), \
                gauge("portico_config_snapshots_alive")
            await ws.send("still here")
            assert await ws.recv() == "still here"
    asyncio.run(talk())


GIB = 1 << 30


def _watch_rss(gw, stop, samples):
    while not stop.is_set():
        samples.append(gw.rss_kib())
        time.sleep(0.1)


def test_two_gib_upload_and_download_stream_with_flat_rss(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    requests.get(gw.url("/warm"))
    base = gw.rss_kib()
    samples, stop = [], threading.Event()
    watcher = threading.Thread(target=_watch_rss, args=(gw, stop, samples))
    watcher.start()
    try:
        size = 2 * GIB
        # upload: raw socket, 1 MiB writes, Content-Length framing
        with socket.create_connection(("127.0.0.1", gw.port)) as s:
            s.sendall(f"POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: {size}\r\n\r\n".encode())
            block = b"\0" * (1 << 20)
            for _ in range(size // len(block)):
                s.sendall(block)
            out = b""
            while b"}" not in out:
                out += s.recv(4096)
        assert f'"received": {size}'.encode() in out
        # download
        got = 0
        with requests.get(gw.url(f"/big/{size}"), stream=True) as r:
            assert r.status_code == 200
            for chunk in r.iter_content(1 << 20):
                got += len(chunk)
        assert got == size
    finally:
        stop.set()
        watcher.join()
    assert max(samples) - base < 64 * 1024, (base, max(samples))  # KiB


def test_chunked_download_is_streamed(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    size = 256 << 20
    got = 0
    with requests.get(gw.url(f"/bigchunked/{size}"), stream=True) as r:
        assert r.headers["Transfer-Encoding"] == "chunked"
        for chunk in r.iter_content(1 << 20):
            got += len(chunk)
    assert got == size


def test_websocket_relay_limit_conn_by_header_is_released_after_big_frames(gateway, upstream):
    up = upstream()
    r = route("/ws", [(up.port,)], enable_websocket=True)
    r["plugins"] = {"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 0.1,
                                   "key": "http_x_user"}}
    gw = gateway({"routes": [r]})

    async def relay():
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/ws",
                                      extra_headers={"X-User": "bob"}) as ws:
            await ws.send("y" * 30000)  # overwrites the request head in the client buffer
            assert len(await ws.recv()) == 30000

    async def talk():
        await relay()
        for _ in range(50):
            try:
                return await relay()
            except websockets.InvalidStatusCode as e:
                assert e.status_code == 503
                await asyncio.sleep(0.1)
        raise AssertionError("bob's slot was never released")
    asyncio.run(talk())
