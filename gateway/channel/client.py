"""The gateway's client for WeChat Pay's service-provider API (or the emulator).

One async method per flow. Each request is signed with the mall's merchant key; each 2xx
answer's signature is checked against WeChat's platform public key before its JSON is
believed. Failures become `ChannelError` (with `retryable` telling the caller whether the
same request may succeed later); WeChat's own error text is logged, never returned.

Logs carry paths, statuses and codes only: no keys, signatures, bodies or openids.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import structlog
from yarl import URL

from gateway import signing
from gateway.channel import (
    ChannelError,
    ChannelNotificationRejected,
    ChannelOrderRequest,
    ChannelTrade,
    ChannelTradeState,
)
from gateway.channel import transformers as tf
from gateway.channel.credentials import ChannelCredentials

log = structlog.get_logger(__name__)

SIGNATURE_WINDOW_S = 300  # WeChat's documented tolerance for signed timestamps
RESPONSE_BYTES_MAX = 1024 * 1024
UPSTREAM_MESSAGE_LOG_CHARS_MAX = 200
USER_AGENT = "mallpay-gateway/0.1 (WeChatPay-APIv3)"


class WeChatPayChannel:
    def __init__(
        self,
        credentials: ChannelCredentials,
        base_url: str,
        session: aiohttp.ClientSession,
        timeout_s: float,
        clock: Callable[[], datetime],
        *,
        response_bytes_max: int = RESPONSE_BYTES_MAX,
    ):
        assert timeout_s > 0 and response_bytes_max > 0
        self._credentials = credentials
        self._base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._response_bytes_max = response_bytes_max

    # -- flows -------------------------------------------------------------------------

    async def create_jsapi_order(self, req: ChannelOrderRequest) -> str:
        """Open a mini-program order; returns WeChat's prepay_id."""
        assert req.sp_mchid == self._credentials.sp_mchid, "orders are opened as the mall"
        _, data = await self._call("POST", "/v3/pay/partner/transactions/jsapi", tf.jsapi_order_body(req))
        return self._read(tf.prepay_id_from, data)

    async def query_by_out_trade_no(self, sub_mchid: str, out_trade_no: str) -> ChannelTrade | None:
        """The order's state at the channel, or None when WeChat does not know it."""
        path = f"/v3/pay/partner/transactions/out-trade-no/{_segment(out_trade_no)}"
        return await self._query(path, sub_mchid)

    async def query_by_transaction_id(self, sub_mchid: str, transaction_id: str) -> ChannelTrade | None:
        path = f"/v3/pay/partner/transactions/id/{_segment(transaction_id)}"
        return await self._query(path, sub_mchid)

    async def close_order(self, sub_mchid: str, out_trade_no: str) -> None:
        """Close an unpaid order. A paid one raises ChannelError(code='ORDERPAID')."""
        path = f"/v3/pay/partner/transactions/out-trade-no/{_segment(out_trade_no)}/close"
        await self._call("POST", path, {"sp_mchid": self._credentials.sp_mchid, "sub_mchid": sub_mchid})

    def jsapi_pay_params(self, appid: str, prepay_id: str) -> dict[str, str]:
        """The object the mini-program passes to `wx.requestPayment`, signed by the mall.

        `appid` is the app the payer's openid belongs to (sub_appid for a sub_openid payer,
        sp_appid otherwise). Names are WeChat's because they go to WeChat's client as is.
        """
        timestamp = str(int(self._clock().timestamp()))
        nonce = signing.new_nonce()
        package = f"prepay_id={prepay_id}"
        message = f"{appid}\n{timestamp}\n{nonce}\n{package}\n".encode()
        pay_sign = signing.sign(self._credentials.merchant_private_key.reveal(), message)
        return {
            "appId": appid, "timeStamp": timestamp, "nonceStr": nonce,
            "package": package, "signType": "RSA", "paySign": pay_sign,
        }

    def parse_payment_notification(self, headers: Mapping[str, str], body: bytes) -> ChannelTrade:
        """Verify, decrypt and read a TRANSACTION.SUCCESS notification from WeChat Pay.

        Raises ChannelNotificationRejected when the signature, timestamp, key id, event
        type or ciphertext does not check out; the caller should then answer non-2xx so
        WeChat retries (a genuine notification will verify next time).
        """
        event_type, resource = self._open_notification(headers, body)
        if event_type != tf.EVENT_TRANSACTION_SUCCESS:
            raise _rejected("event_type")
        try:
            trade = tf.trade_from(resource)
        except tf.UnexpectedChannelResponse:
            raise _rejected("resource shape") from None
        if trade.sp_mchid != self._credentials.sp_mchid:
            raise _rejected("sp_mchid")
        if trade.state is not ChannelTradeState.SUCCESS or trade.transaction_id is None:
            raise _rejected("trade_state")
        return trade

    # -- notifications -----------------------------------------------------------------

    def _open_notification(self, headers: Mapping[str, str], body: bytes) -> tuple[str, dict[str, Any]]:
        """Check the signature headers over the exact body, then decrypt the resource."""
        lower = {name.lower(): value for name, value in headers.items()}
        timestamp = lower.get("wechatpay-timestamp", "")
        nonce = lower.get("wechatpay-nonce", "")
        signature = lower.get("wechatpay-signature", "")
        if not (timestamp and nonce and signature):
            raise _rejected("signature headers missing")
        if lower.get("wechatpay-signature-type", signing.SCHEMA) != signing.SCHEMA:
            raise _rejected("signature type")
        if lower.get("wechatpay-serial") != self._credentials.platform_public_key_id:
            raise _rejected("unknown platform key id")
        if not self._timestamp_fresh(timestamp):
            raise _rejected("timestamp outside window")
        message = signing.response_message(timestamp, nonce, body)
        if not signing.verify(self._credentials.platform_public_key, message, signature):
            raise _rejected("signature")
        try:
            envelope = json.loads(body)
            resource = envelope["resource"]
            event_type = envelope["event_type"]
            if envelope.get("resource_type") != tf.RESOURCE_TYPE_ENCRYPTED:
                raise _rejected("resource_type")
            if resource.get("algorithm") != tf.RESOURCE_ALGORITHM:
                raise _rejected("algorithm")
            plaintext = signing.aes_gcm_decrypt(
                self._credentials.apiv3_key.reveal(),
                resource["ciphertext"],
                resource["nonce"],
                resource.get("associated_data") or "",
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _rejected("envelope shape") from None
        if plaintext is None:
            raise _rejected("decryption")
        try:
            decrypted = json.loads(plaintext)
        except ValueError:
            raise _rejected("resource json") from None
        if not isinstance(decrypted, dict) or not isinstance(event_type, str):
            raise _rejected("resource shape")
        return event_type, decrypted

    # -- transport ---------------------------------------------------------------------

    async def _query(self, path: str, sub_mchid: str) -> ChannelTrade | None:
        query = urlencode({"sp_mchid": self._credentials.sp_mchid, "sub_mchid": sub_mchid})
        try:
            _, data = await self._call("GET", f"{path}?{query}", None)
        except ChannelError as exc:
            if exc.http_status == 404 and exc.code in (tf.CODE_NOT_FOUND, "ORDERNOTEXIST"):
                return None
            raise
        return self._read(tf.trade_from, data)

    async def _call(self, method: str, target: str, payload: dict[str, Any] | None) -> tuple[int, Any]:
        """Send one signed request; return (status, JSON or None) of a verified 2xx answer."""
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = self._request_headers(method, target, body)
        path = target.partition("?")[0]
        try:
            async with self._session.request(
                method, URL(self._base_url + target, encoded=True),
                data=body if payload is not None else None, headers=headers, timeout=self._timeout,
            ) as resp:
                raw = await self._read_body(resp)
                status, resp_headers = resp.status, resp.headers
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

    def _request_headers(self, method: str, target: str, body: bytes) -> dict[str, str]:
        creds = self._credentials
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

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self._response_bytes_max:
                raise aiohttp.ClientPayloadError("answer larger than response_bytes_max")
            chunks.append(chunk)
        return b"".join(chunks)

    def _response_signed(self, headers: Mapping[str, str], body: bytes) -> bool:
        timestamp = headers.get("Wechatpay-Timestamp", "")
        nonce = headers.get("Wechatpay-Nonce", "")
        signature = headers.get("Wechatpay-Signature", "")
        if headers.get("Wechatpay-Serial") != self._credentials.platform_public_key_id:
            return False
        if not (timestamp and nonce and signature) or not self._timestamp_fresh(timestamp):
            return False
        message = signing.response_message(timestamp, nonce, body)
        return signing.verify(self._credentials.platform_public_key, message, signature)

    def _timestamp_fresh(self, timestamp: str) -> bool:
        if not timestamp.isdigit():
            return False
        return abs(self._clock().timestamp() - int(timestamp)) <= SIGNATURE_WINDOW_S

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

    @staticmethod
    def _read(transform: Callable[[Any], Any], data: Any) -> Any:
        if not isinstance(data, dict):
            raise ChannelError(tf.CODE_BAD_RESPONSE, "channel answer has no JSON object", retryable=True)
        try:
            return transform(data)
        except tf.UnexpectedChannelResponse as exc:
            log.error("channel.unexpected_answer", reason=str(exc))
            raise ChannelError(tf.CODE_BAD_RESPONSE, "channel answer has an unexpected shape",
                               retryable=True) from None


def _segment(value: str) -> str:
    return quote(value, safe="")


def _rejected(reason: str) -> ChannelNotificationRejected:
    log.warning("channel.notification_rejected", reason=reason)
    return ChannelNotificationRejected(reason)
