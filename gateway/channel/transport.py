"""Signed HTTP to WeChat Pay and signed notifications from it: the part of the channel
client that is the same for every flow.

Each request is signed with the mall's merchant key; each 2xx answer's signature is
checked against WeChat's platform public key before its JSON is believed; each
notification's signature, timestamp and key id are checked over the exact bytes before its
resource is decrypted with the APIv3 key. Failures become `ChannelError` (with
`retryable`) or `ChannelNotificationRejected`; WeChat's own error text is logged, never
returned.

Logs carry paths, statuses and codes only: no keys, signatures, bodies or openids.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import structlog
from yarl import URL

from gateway import signing
from gateway.channel import ChannelError, ChannelNotificationRejected
from gateway.channel import transformers as tf
from gateway.channel.credentials import ChannelCredentials
from gateway.wire import json_bytes, unix_seconds

log = structlog.get_logger("gateway.channel.client")

SIGNATURE_WINDOW_S = 300  # WeChat's documented tolerance for signed timestamps
RESPONSE_BYTES_MAX = 1024 * 1024
UPSTREAM_MESSAGE_LOG_CHARS_MAX = 200
USER_AGENT = "mallpay-gateway/0.1 (WeChatPay-APIv3)"


@dataclass(frozen=True, slots=True)
class OpenedNotification:
    event_id: str
    event_type: str
    original_type: str | None
    resource: dict[str, Any]


class SignedTransport:
    def __init__(
        self,
        credentials: ChannelCredentials,
        base_url: str,
        session: aiohttp.ClientSession,
        timeout_s: float,
        clock: Callable[[], datetime],
        response_bytes_max: int = RESPONSE_BYTES_MAX,
        on_answer_headers: Callable[[Mapping[str, str]], None] | None = None,
    ):
        assert timeout_s > 0 and response_bytes_max > 0
        self.credentials = credentials
        self._base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._response_bytes_max = response_bytes_max
        # The emulator's sandbox clock offset rides on its answers (gateway.sandbox_clock).
        self._on_answer_headers = on_answer_headers
        self._sandbox_clock_lost = False  # said once when lost and once when back, not every poll

    def now(self) -> datetime:
        return self._clock()

    async def read_sandbox_clock(self) -> None:
        """Only with the emulator: ask its sandbox clock, so the gateway follows a move even
        while it has nothing else to ask. An unreachable emulator changes nothing."""
        assert self._on_answer_headers is not None
        try:
            async with self._session.get(self._base_url + "/sandbox/clock", timeout=self._timeout) as resp:
                self._on_answer_headers(resp.headers)
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            if not self._sandbox_clock_lost:
                log.warning("channel.sandbox_clock_unreachable", error=type(exc).__name__, url=self._base_url)
            self._sandbox_clock_lost = True
            return
        if self._sandbox_clock_lost:
            log.info("channel.sandbox_clock_reachable", url=self._base_url)
            self._sandbox_clock_lost = False

    def encrypt(self, text: str) -> str:
        """RSA-OAEP under the platform key; every request names that key in Wechatpay-Serial."""
        return signing.oaep_encrypt(self.credentials.platform_public_key, text)

    # -- requests ----------------------------------------------------------------------

    async def call(self, method: str, target: str, payload: dict[str, Any] | None) -> tuple[int, Any]:
        """Send one signed request; return (status, JSON or None) of a verified 2xx answer."""
        body = b"" if payload is None else json_bytes(payload)
        headers = self._request_headers(method, target, body)
        path = target.partition("?")[0]
        try:
            async with self._session.request(
                method, URL(self._base_url + target, encoded=True),
                data=body if payload is not None else None, headers=headers, timeout=self._timeout,
            ) as resp:
                raw = await self._read_body(resp)
                status, resp_headers = resp.status, resp.headers
                if self._on_answer_headers is not None:
                    self._on_answer_headers(resp_headers)
        except asyncio.TimeoutError:
            log.warning("channel.timeout", method=method, path=path)
            raise ChannelError(tf.CODE_TIMEOUT, "channel did not answer in time", retryable=True) from None
        except aiohttp.ClientError as exc:
            log.warning("channel.unreachable", method=method, path=path, error=type(exc).__name__)
            raise ChannelError(tf.CODE_UNREACHABLE, "channel could not be reached", retryable=True) from None
        if not 200 <= status < 300:
            raise self._error(method, path, status, raw)
        if not self._response_signed(resp_headers, raw):
            log.error("channel.bad_signature", method=method, path=path, status=status)
            raise ChannelError(tf.CODE_BAD_SIGNATURE, "channel answer failed signature check", retryable=True,
                               http_status=status)
        if not raw:
            return status, None
        try:
            return status, json.loads(raw)
        except ValueError:
            log.error("channel.bad_json", method=method, path=path, status=status)
            raise ChannelError(tf.CODE_BAD_RESPONSE, "channel answer is not JSON", retryable=True,
                               http_status=status) from None

    @staticmethod
    def read(transform: Callable[[Any], Any], data: Any) -> Any:
        """Run a transformer over a verified answer; a shape WeChat does not document is a
        retryable CHANNEL_BAD_RESPONSE (the request may well have taken effect)."""
        if not isinstance(data, dict):
            raise ChannelError(tf.CODE_BAD_RESPONSE, "channel answer has no JSON object", retryable=True)
        try:
            return transform(data)
        except tf.UnexpectedChannelResponse as exc:
            log.error("channel.unexpected_answer", reason=str(exc))
            raise ChannelError(tf.CODE_BAD_RESPONSE, "channel answer has an unexpected shape",
                               retryable=True) from None

    def _request_headers(self, method: str, target: str, body: bytes) -> dict[str, str]:
        creds = self.credentials
        authorization = signing.build_authorization(
            mchid=creds.sp_mchid,
            serial_no=creds.merchant_serial_no,
            private_key=creds.merchant_private_key.reveal(),
            method=method,
            target=target,
            body=body,
            timestamp=str(int(self._clock().timestamp())),
            nonce=signing.new_nonce(),
        )
        return {
            "Authorization": authorization,
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Wechatpay-Serial": creds.platform_public_key_id,
        }

    async def download(self, url: str, bytes_max: int) -> bytes:
        """A signed GET of a bill's download_url; the raw bytes of a 2xx answer.

        WeChat does not sign file answers: the SHA-1 from the (signed) bill answer checks
        them instead, which the caller does. Only URLs on the channel's own base URL are
        followed, so a forged answer cannot make the gateway fetch elsewhere.
        """
        if not url.startswith(self._base_url + "/"):
            raise ChannelError(tf.CODE_BAD_RESPONSE, "download_url is not on the channel", retryable=False)
        target = url[len(self._base_url):]
        headers = self._request_headers("GET", target, b"")
        headers["Accept"] = "*/*"
        path = target.partition("?")[0]
        try:
            async with self._session.get(URL(url, encoded=True), headers=headers, timeout=self._timeout) as resp:
                raw = await self._read_body(resp, bytes_max)
                status = resp.status
        except asyncio.TimeoutError:
            log.warning("channel.timeout", method="GET", path=path)
            raise ChannelError(tf.CODE_TIMEOUT, "channel did not answer in time", retryable=True) from None
        except aiohttp.ClientError as exc:
            log.warning("channel.unreachable", method="GET", path=path, error=type(exc).__name__)
            raise ChannelError(tf.CODE_UNREACHABLE, "channel could not be reached", retryable=True) from None
        if not 200 <= status < 300:
            raise self._error("GET", path, status, raw)
        return raw

    async def _read_body(self, resp: aiohttp.ClientResponse, bytes_max: int | None = None) -> bytes:
        bytes_max = bytes_max or self._response_bytes_max
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > bytes_max:
                raise aiohttp.ClientPayloadError("answer larger than response_bytes_max")
            chunks.append(chunk)
        return b"".join(chunks)

    def _response_signed(self, headers: Mapping[str, str], body: bytes) -> bool:
        timestamp = headers.get("Wechatpay-Timestamp", "")
        nonce = headers.get("Wechatpay-Nonce", "")
        signature = headers.get("Wechatpay-Signature", "")
        if headers.get("Wechatpay-Serial") != self.credentials.platform_public_key_id:
            return False
        if not (timestamp and nonce and signature) or not self._timestamp_fresh(timestamp):
            return False
        message = signing.response_message(timestamp, nonce, body)
        return signing.verify(self.credentials.platform_public_key, message, signature)

    def _timestamp_fresh(self, timestamp: str) -> bool:
        seconds = unix_seconds(timestamp)
        return seconds is not None and abs(self._clock().timestamp() - seconds) <= SIGNATURE_WINDOW_S

    def _error(self, method: str, path: str, status: int, raw: bytes) -> ChannelError:
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        error = tf.error_from(status, data)
        upstream = data.get("message") if isinstance(data, dict) else None
        # WeChat's message is for operators only; it never names keys or payer ids. A 4xx
        # is usually an expected business answer (ORDER_NOT_EXIST, ORDERPAID): info level.
        log_at = log.warning if error.retryable else log.info
        log_at(
            "channel.error", method=method, path=path, status=status, code=error.code,
            retryable=error.retryable,
            upstream_message=str(upstream)[:UPSTREAM_MESSAGE_LOG_CHARS_MAX] if upstream else None,
        )
        return error

    # -- notifications -------------------------------------------------------------------

    def open_notification(self, headers: Mapping[str, str], body: bytes) -> OpenedNotification:
        """Check the signature headers over the exact body, then decrypt the resource."""
        lower = {name.lower(): value for name, value in headers.items()}
        timestamp = lower.get("wechatpay-timestamp", "")
        nonce = lower.get("wechatpay-nonce", "")
        signature = lower.get("wechatpay-signature", "")
        if not (timestamp and nonce and signature):
            raise rejected("signature headers missing")
        if lower.get("wechatpay-signature-type", signing.SCHEMA) != signing.SCHEMA:
            raise rejected("signature type")
        if lower.get("wechatpay-serial") != self.credentials.platform_public_key_id:
            raise rejected("unknown platform key id")
        if not self._timestamp_fresh(timestamp):
            raise rejected("timestamp outside window")
        message = signing.response_message(timestamp, nonce, body)
        if not signing.verify(self.credentials.platform_public_key, message, signature):
            raise rejected("signature")
        try:
            envelope = json.loads(body)
            resource = envelope["resource"]
            event_type = envelope["event_type"]
            event_id = envelope.get("id")
            if envelope.get("resource_type") != tf.RESOURCE_TYPE_ENCRYPTED:
                raise rejected("resource_type")
            if resource.get("algorithm") != tf.RESOURCE_ALGORITHM:
                raise rejected("algorithm")
            original_type = resource.get("original_type")
            plaintext = signing.aes_gcm_decrypt(
                self.credentials.apiv3_key.reveal(),
                resource["ciphertext"],
                resource["nonce"],
                resource.get("associated_data") or "",
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise rejected("envelope shape") from None
        if plaintext is None:
            raise rejected("decryption")
        try:
            decrypted = json.loads(plaintext)
        except ValueError:
            raise rejected("resource json") from None
        if not isinstance(decrypted, dict) or not isinstance(event_type, str) or not isinstance(event_id, str) \
                or not (original_type is None or isinstance(original_type, str)):
            raise rejected("resource shape")
        return OpenedNotification(event_id, event_type, original_type, decrypted)


def rejected(reason: str) -> ChannelNotificationRejected:
    log.warning("channel.notification_rejected", reason=reason)
    return ChannelNotificationRejected(reason)
