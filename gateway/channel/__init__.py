"""The payment channel: WeChat Pay's service-provider API, seen from the gateway.

`client.WeChatPayChannel` is the only code that speaks to WeChat Pay (or to the emulator,
which answers the same API). It returns the types below; WeChat's JSON and trade states
never leak past `transformers`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class ChannelTradeState(enum.Enum):
    NOTPAY = "NOTPAY"
    SUCCESS = "SUCCESS"
    CLOSED = "CLOSED"
    REFUND = "REFUND"
    PAYERROR = "PAYERROR"
    USERPAYING = "USERPAYING"
    REVOKED = "REVOKED"


@dataclass(frozen=True, slots=True)
class ChannelOrderRequest:
    """What the gateway asks the channel to open for a shopper (partner JSAPI order)."""

    sp_appid: str
    sp_mchid: str
    sub_mchid: str
    sub_appid: str | None
    description: str
    out_trade_no: str
    total_fen: int
    currency: str
    payer_sp_openid: str | None
    payer_sub_openid: str | None
    notify_url: str
    profit_sharing: bool
    time_expire: str | None
    attach: str | None


@dataclass(frozen=True, slots=True)
class ChannelTrade:
    """The channel's view of one order (query result or decrypted payment notification)."""

    sp_mchid: str
    sub_mchid: str
    out_trade_no: str
    transaction_id: str | None
    state: ChannelTradeState
    total_fen: int
    payer_total_fen: int | None
    currency: str
    bank_type: str | None
    success_at: datetime | None
    payer_sp_openid: str | None
    payer_sub_openid: str | None


class ChannelError(Exception):
    """The channel answered with an error or could not be reached.

    `retryable` says whether the same request may succeed later (timeouts, 5xx,
    FREQUENCY_LIMITED); `code` is WeChat's error code when it sent one.
    """

    def __init__(self, code: str, message: str, *, retryable: bool, http_status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.http_status = http_status


class ChannelNotificationRejected(Exception):
    """A notification that failed signature, timestamp or decryption checks."""
