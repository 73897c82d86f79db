"""The gateway polls the emulator's sandbox clock every second; an emulator that is away
is said once (and its return once), not once per poll."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from gateway.channel.credentials import ensure_local_credentials
from gateway.channel.transport import SignedTransport
from gateway.app import utc_now


async def test_lost_and_found_are_each_said_once(tmp_path):
    credentials, _ = ensure_local_credentials(tmp_path, "1900000100")
    seen = []

    async def clock(request: web.Request) -> web.Response:
        return web.json_response({}, headers={"X-Sandbox-Offset": "0"})

    app = web.Application()
    app.router.add_get("/sandbox/clock", clock)
    server = TestServer(app)
    await server.start_server()
    port = server.port
    await server.close()  # away at first
    async with aiohttp.ClientSession() as session:
        transport = SignedTransport(credentials, f"http://127.0.0.1:{port}", session, 1.0, utc_now,
                                    on_answer_headers=seen.append)
        with capture_logs() as logs:
            for _ in range(3):
                await transport.read_sandbox_clock()
            back = TestServer(app, port=port)
            await back.start_server()
            try:
                for _ in range(2):
                    await transport.read_sandbox_clock()
            finally:
                await back.close()
            await transport.read_sandbox_clock()
    assert [entry["event"] for entry in logs] == [
        "channel.sandbox_clock_unreachable", "channel.sandbox_clock_reachable", "channel.sandbox_clock_unreachable"]
    assert len(seen) == 2
