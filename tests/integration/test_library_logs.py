"""What the libraries log through the standard library leaves as the gateway's own JSON
lines, one event per line; a client's unparseable request is one warning, not an error
with a traceback (a client could send any number of them)."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support import capture_log


async def test_a_request_line_too_long_is_one_warning_line():
    app = web.Application()
    async def health(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_get("/health", health)
    server = TestServer(app)
    await server.start_server()
    try:
        with capture_log("info") as stream:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            status_line = await reader.readline()
            writer.close()
            await asyncio.sleep(0.05)
            logged = stream.getvalue()
    finally:
        await server.close()
    assert status_line.split()[1] == b"400"
    lines = [json.loads(line) for line in logged.splitlines()]  # every line is one JSON event
    [event] = [e for e in lines if e["event"] == "http.client_request_malformed"]
    assert event["level"] == "warning" and event["remote"] == "127.0.0.1"
    assert event["error"].startswith("400") and "exception" not in event
    assert "Traceback" not in logged


def test_a_library_error_keeps_its_traceback_inside_one_line():
    with capture_log("info") as stream:
        try:
            raise ValueError("deep inside a library")
        except ValueError:
            logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=True)
    [line] = stream.getvalue().splitlines()
    event = json.loads(line)
    assert event["event"] == "Task exception was never retrieved" and event["level"] == "error"
    assert event["logger"] == "asyncio"
    assert "ValueError: deep inside a library" in event["exception"]


def test_the_routing_ends_with_the_capture():
    with capture_log("info"):
        pass
    from gateway import logging as gateway_logging
    assert gateway_logging._stdlib_handler is None
