"""Signed requests in, signed responses out (SPEC 2.1).

`authenticate` verifies the WECHATPAY2-SHA256-RSA2048 Authorization of every `/v3/`
request over the exact method, raw target and body bytes received, rejects stale
timestamps, and gives the `Caller` and the request's nonce, whose recording refuses a
replay (`gateway.nonces`).
`sign_responses` signs every response body the gateway sends, errors and 204s included.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from concurrent.futures import Executor
from datetime import datetime, timedelta

from aiohttp import web

from gateway import signing
from gateway.errors import SignError
from gateway.identity import GatewayIdentity
from gateway.nonces import RequestNonce
from gateway.repo import clients
from gateway.caller import VERIFICATION_MODES, Caller
from gateway.wire import unix_seconds

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
CLIENT_KEYS_CACHED_MAX = 10_000


class ClientKeyCache:
    """Recently used client keys, so a request costs no key lookup query.

    Entries live `ttl_s` seconds: a revoked key stops working within that time on every
    gateway process. Bounded to CLIENT_KEYS_CACHED_MAX entries (least recently used out).
    """

    def __init__(self, ttl_s: float):
        self._ttl_s = ttl_s
        self._entries: OrderedDict[tuple[str, str], tuple[float, Caller, object]] = OrderedDict()

    async def lookup(self, pool, client_id: str, serial_no: str):
        key = (client_id, serial_no)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            self._entries.move_to_end(key)
            return hit[1], hit[2]
        async with pool.acquire() as conn:
            found = await clients.client_key(conn, client_id, serial_no)
        if found is None:
            self._entries.pop(key, None)
            return None
        public_key = signing.load_public_key(found.public_key_pem)
        self._entries[key] = (now + self._ttl_s, found.caller, public_key)
        while len(self._entries) > CLIENT_KEYS_CACHED_MAX:
            self._entries.popitem(last=False)
        return found.caller, public_key

    def forget(self, client_id: str) -> None:
        for key in [k for k in self._entries if k[0] == client_id]:
            del self._entries[key]


async def authenticate(request: web.Request, *, pool, keys: ClientKeyCache, clock,
                       window_s: int) -> tuple[Caller, RequestNonce]:
    """The verified caller and the request's nonce, not yet recorded."""
    try:
        auth = signing.parse_authorization(request.headers.get("Authorization"))
    except signing.MalformedAuthorization as exc:
        raise SignError("authorization_malformed", f"Authorization header {exc}") from None
    now: datetime = clock()
    seconds = unix_seconds(auth.timestamp)
    if seconds is None or abs(seconds - now.timestamp()) > window_s:
        raise SignError("timestamp_out_of_window", "timestamp is more than the allowed window from server time")
    found = await keys.lookup(pool, auth.mchid, auth.serial_no)
    if found is None:
        raise SignError("unknown_key", "mchid and serial_no name no active key")
    caller, public_key = found
    body = await request.read()
    message = signing.request_message(request.method, request.raw_path, auth.timestamp,
                                      auth.nonce_str, body)
    if not signing.verify(public_key, message, auth.signature):
        raise SignError("signature_mismatch", "signature does not verify")
    return caller, RequestNonce(caller.client_id, auth.nonce_str, now)


def answering_serial(identity: GatewayIdentity, requested: str | None, caller: Caller | None) -> str:
    """The name of the gateway's key a response is signed under (its Wechatpay-Serial).
    WeChat's rule while merchants move between its modes: the answer follows the request's
    Wechatpay-Serial when that names the key (public key id or certificate serial);
    otherwise the client's registered mode decides, and an unknown caller gets the public
    key id, as every answer had before certificates."""
    named = identity.name_of(requested)
    if named is not None:
        return named
    return serial_for_mode(identity, caller.verification if caller is not None else "public_key")


def serial_for_mode(identity: GatewayIdentity, verification: str) -> str:
    assert verification in VERIFICATION_MODES, verification
    return identity.certificate_serial if verification == "certificate" else identity.public_key_id


def signed_response_headers(identity: GatewayIdentity, body: bytes, clock, serial: str | None = None) -> dict[str, str]:
    """The signature headers of `body`, naming the key `serial` (the public key id unless told)."""
    timestamp, nonce = str(int(clock().timestamp())), signing.new_nonce()
    signature = identity.sign(signing.response_message(timestamp, nonce, body))
    return _response_headers(serial or identity.public_key_id, timestamp, nonce, signature)


async def signed_response_headers_async(identity: GatewayIdentity, body: bytes, clock,
                                        executor: Executor | None, serial: str | None = None) -> dict[str, str]:
    """The same headers, the RSA signature made on `executor`'s threads when there is one
    (`cryptography` releases the GIL while it signs, so the event loop serves meanwhile)."""
    if executor is None:
        return signed_response_headers(identity, body, clock, serial)
    timestamp, nonce = str(int(clock().timestamp())), signing.new_nonce()
    message = signing.response_message(timestamp, nonce, body)
    signature = await asyncio.get_running_loop().run_in_executor(executor, identity.sign, message)
    return _response_headers(serial or identity.public_key_id, timestamp, nonce, signature)


def _response_headers(serial: str, timestamp: str, nonce: str, signature: str) -> dict[str, str]:
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": signing.SCHEMA,
        "Wechatpay-Signature": signature,
    }


async def sign_response(response: web.StreamResponse, identity: GatewayIdentity, clock,
                        executor: Executor | None = None, serial: str | None = None) -> None:
    assert isinstance(response, web.Response), "streamed responses sign their own bytes"
    body = response.body or b""
    assert isinstance(body, bytes), type(body)
    # JSON unless the handler chose another type: bills and statements keep text/csv or
    # application/x-gzip, which SDKs read as bytes. Most answers already say exactly
    # JSON_CONTENT_TYPE, and setting it again would only rewrite the same header.
    if (body or response.status != 204) and response.headers.get("Content-Type") != JSON_CONTENT_TYPE \
            and response.content_type in ("application/octet-stream", "application/json"):
        response.content_type = "application/json"
        response.charset = "utf-8"
    response.headers.update(await signed_response_headers_async(identity, body, clock, executor, serial))


def nonce_cutoff(now: datetime, window_s: int) -> datetime:
    """Nonces older than twice the window can never be replayed inside it."""
    return now - timedelta(seconds=2 * window_s)
