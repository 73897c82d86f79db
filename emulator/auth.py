"""WeChat Pay's side of API v3 signing: check each merchant request, sign each answer.

Requests to /v3/... must carry a valid `Authorization` from a known merchant key (else
401 SIGN_ERROR, like WeChat). Every answer, errors and 204s included, and every
notification is signed with the platform key over `TS\\nNONCE\\nBODY\\n`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from gateway import signing
from gateway.channel.credentials import EmulatorCredentials
from gateway.wire import unix_seconds
from emulator.wire import EmulatorError

API_PREFIX = "/v3/"
MCHID = web.RequestKey("emulator_mchid", str)


class NonceCache:
    """(mchid, nonce) pairs seen inside the signature window; bounded, oldest dropped first.

    Dropping a pair early only weakens replay protection for that pair, never correctness
    of an honest request, so a full cache is not an error.
    """

    def __init__(self, entries_max: int, window_s: int):
        assert entries_max > 0 and window_s > 0
        self._entries_max = entries_max
        self._window_s = window_s
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def check_and_add(self, mchid: str, nonce: str, now_s: float) -> bool:
        """False when the pair was already seen (a replay)."""
        while self._seen:
            _, first_seen_s = next(iter(self._seen.items()))
            if now_s - first_seen_s <= self._window_s and len(self._seen) < self._entries_max:
                break
            self._seen.popitem(last=False)
        key = (mchid, nonce)
        if key in self._seen:
            return False
        self._seen[key] = now_s
        return True


def sign_headers(credentials: EmulatorCredentials, body: bytes, now: datetime) -> dict[str, str]:
    """The five Wechatpay-* headers over `body` at `now`, fresh nonce each time."""
    timestamp = str(int(now.timestamp()))
    nonce = signing.new_nonce()
    signature = signing.sign(
        credentials.platform_private_key.reveal(), signing.response_message(timestamp, nonce, body)
    )
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": credentials.platform_public_key_id,
        "Wechatpay-Signature": signature,
        "Wechatpay-Signature-Type": signing.SCHEMA,
    }


def request_verifier(
    credentials: EmulatorCredentials, clock: Callable[[], datetime], window_s: int, nonces: NonceCache,
):
    """Middleware: a /v3 request must be signed by a known merchant key, fresh and unreplayed."""

    @web.middleware
    async def verify_request(request: web.Request, handler):
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        try:
            auth = signing.parse_authorization(request.headers.get("Authorization"))
        except signing.MalformedAuthorization:
            raise EmulatorError(401, "SIGN_ERROR", "Authorization header missing or malformed") from None
        merchant = credentials.merchants.get(auth.mchid)
        public_key = merchant.public_keys.get(auth.serial_no) if merchant else None
        if public_key is None:
            raise EmulatorError(401, "SIGN_ERROR", "unknown merchant or serial_no")
        now_s = clock().timestamp()
        seconds = unix_seconds(auth.timestamp)
        if seconds is None or abs(now_s - seconds) > window_s:
            raise EmulatorError(401, "SIGN_ERROR", "timestamp outside the allowed window")
        body = await request.read()
        message = signing.request_message(request.method, request.raw_path, auth.timestamp, auth.nonce_str, body)
        if not signing.verify(public_key, message, auth.signature):
            raise EmulatorError(401, "SIGN_ERROR", "signature does not verify")
        if not nonces.check_and_add(auth.mchid, auth.nonce_str, now_s):
            raise EmulatorError(401, "SIGN_ERROR", "nonce already used")
        serial = request.headers.get("Wechatpay-Serial")
        if serial is not None and serial != credentials.platform_public_key_id:
            raise EmulatorError(400, "PARAM_ERROR", "Wechatpay-Serial names no platform key")
        request[MCHID] = auth.mchid
        return await handler(request)

    return verify_request


def caller_mchid(request: web.Request) -> str:
    mchid = request.get(MCHID)
    assert mchid, "verify_request runs before every /v3 handler"
    return mchid
