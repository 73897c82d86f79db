"""A mall backend as the demo and the load tests drive the gateway: it signs every request
as WeChat Pay v3 asks, checks every response's signature, and receives notifications."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from gateway import signing


class UnsignedResponse(Exception):
    """A response whose Wechatpay-Signature does not verify with the gateway key."""


@dataclass
class BackendCredentials:
    mchid: str
    serial_no: str
    private_key: object
    apiv3_key: bytes
    gateway_public_key: object


class MallBackend:
    def __init__(self, base_url: str, creds: BackendCredentials, session: aiohttp.ClientSession,
                 clock=time.time):
        self.base_url = base_url.rstrip("/")
        self.creds = creds
        self.session = session
        self.clock = clock  # seconds since the epoch, as the request's timestamp

    async def call(self, method: str, target: str, payload: dict | None = None) -> tuple[int, dict | None]:
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        authorization = signing.build_authorization(
            mchid=self.creds.mchid, serial_no=self.creds.serial_no, private_key=self.creds.private_key,
            method=method, target=target, body=body, timestamp=str(int(self.clock())),
            nonce=signing.new_nonce(),
        )
        headers = {"Authorization": authorization, "Content-Type": "application/json",
                   "Accept": "application/json"}
        async with self.session.request(method, self.base_url + target, data=body, headers=headers) as resp:
            raw = await resp.read()
            self._check_signature(resp.headers, raw)
            return resp.status, (json.loads(raw) if raw else None)

    def _check_signature(self, headers, raw: bytes) -> None:
        message = signing.response_message(headers.get("Wechatpay-Timestamp", ""),
                                           headers.get("Wechatpay-Nonce", ""), raw)
        if not signing.verify(self.creds.gateway_public_key, message, headers.get("Wechatpay-Signature", "")):
            raise UnsignedResponse(headers.get("Request-ID", ""))


@dataclass
class NotificationInbox:
    """The mall backend's notify_url: verifies, decrypts and remembers each payment."""

    creds: BackendCredentials
    paid: dict = field(default_factory=dict)  # out_trade_no -> decrypted resource
    events: dict = field(default_factory=dict)  # event_type -> count
    deliveries: int = 0
    rejected: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/notify", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        h = request.headers
        message = signing.response_message(h.get("Wechatpay-Timestamp", ""), h.get("Wechatpay-Nonce", ""), body)
        if not signing.verify(self.creds.gateway_public_key, message, h.get("Wechatpay-Signature", "")):
            self.rejected += 1
            return web.Response(status=401)
        envelope = json.loads(body)
        resource = envelope["resource"]
        plain = signing.aes_gcm_decrypt(self.creds.apiv3_key, resource["ciphertext"], resource["nonce"],
                                        resource["associated_data"])
        if plain is None:
            self.rejected += 1
            return web.Response(status=400)
        opened = json.loads(plain)
        self.deliveries += 1
        self.events[envelope["event_type"]] = self.events.get(envelope["event_type"], 0) + 1
        if envelope["event_type"] == "TRANSACTION.SUCCESS":
            self.paid[opened["out_trade_no"]] = opened
        return web.Response(status=204)
