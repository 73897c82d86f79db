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


# What WeChat's codes mean to the gateway: the client raises these kinds of ChannelError
# (gateway.channel.transformers.error_from decides), so callers match a kind, never a code.


class ChannelNotFound(ChannelError):
    """The channel does not know the order, split, refund or return asked about (404)."""


class SplitNotReady(ChannelError):
    """A split or unfreeze asked for too soon after payment; WeChat takes it about a minute
    later. Not `retryable` in the transport's sense: asking again at once will not help."""


class BillNotReady(ChannelError):
    """The day's bill is not generated yet (retryable, later in the day)."""


class ChannelNotificationRejected(Exception):
    """A notification that failed signature, timestamp or decryption checks."""


# -- profit sharing (WeChat's 分账; "split" in this codebase) ------------------------------


class ChannelReceiverType(enum.Enum):
    MERCHANT_ID = "MERCHANT_ID"  # a merchant id: the mall, a brand headquarters
    PERSONAL_OPENID = "PERSONAL_OPENID"  # a person, openid under the mall's appid
    PERSONAL_SUB_OPENID = "PERSONAL_SUB_OPENID"  # a person, openid under the store's sub_appid


class ChannelSplitState(enum.Enum):
    PROCESSING = "PROCESSING"
    FINISHED = "FINISHED"


class ChannelSplitResult(enum.Enum):
    """One receiver's outcome inside a split order."""

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    CLOSED = "CLOSED"  # failed; `fail_reason` says why and the money stays with the store


class ChannelSplitReturnResult(enum.Enum):
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class ChannelReceiver:
    """A split receiver to add to (or delete from) a store's receiver list.

    `name` is plaintext here; the client encrypts it for the wire. WeChat requires it for
    MERCHANT_ID receivers (the merchant's full name) and checks it when given for a person.
    `relation_type` is WeChat's word (STORE, STAFF, HEADQUARTER, BRAND, PARTNER, ...,
    CUSTOM with `custom_relation`).
    """

    sub_mchid: str
    appid: str
    sub_appid: str | None
    type: ChannelReceiverType
    account: str
    name: str | None
    relation_type: str
    custom_relation: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelSplitReceiver:
    """One line of a split request: who gets how many fen, and why (shown in bills)."""

    type: ChannelReceiverType
    account: str
    amount_fen: int
    description: str
    name: str | None = None  # plaintext; checked against the person's real name when given


@dataclass(frozen=True, slots=True)
class ChannelSplitRequest:
    sub_mchid: str
    appid: str
    sub_appid: str | None
    transaction_id: str
    out_order_no: str
    receivers: tuple[ChannelSplitReceiver, ...]
    unfreeze_unsplit: bool  # release what is left to the store once this split is done


@dataclass(frozen=True, slots=True)
class ChannelSplitDetail:
    """One receiver line of a split order as the channel reports it."""

    type: ChannelReceiverType
    account: str
    amount_fen: int
    description: str
    result: ChannelSplitResult
    fail_reason: str | None
    detail_id: str
    created_at: datetime
    finished_at: datetime | None  # None while PENDING


@dataclass(frozen=True, slots=True)
class ChannelSplitOrder:
    """A split order (or an unfreeze, which WeChat reports in the same shape)."""

    sub_mchid: str
    transaction_id: str
    out_order_no: str
    order_id: str
    state: ChannelSplitState
    receivers: tuple[ChannelSplitDetail, ...]


@dataclass(frozen=True, slots=True)
class ChannelSplitReturnRequest:
    """Take money back from a MERCHANT_ID receiver of one split (before a refund).

    Exactly one of `out_order_no` and `order_id` names the split order.
    """

    sub_mchid: str
    out_order_no: str | None
    order_id: str | None
    out_return_no: str
    return_mchid: str
    amount_fen: int
    description: str


@dataclass(frozen=True, slots=True)
class ChannelSplitReturn:
    sub_mchid: str
    order_id: str
    out_order_no: str
    out_return_no: str
    return_id: str
    return_mchid: str
    amount_fen: int
    description: str
    result: ChannelSplitReturnResult
    fail_reason: str | None
    created_at: datetime
    finished_at: datetime | None


# -- refunds ------------------------------------------------------------------------------


class ChannelRefundState(enum.Enum):
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    CLOSED = "CLOSED"
    ABNORMAL = "ABNORMAL"  # e.g. the payer's card was cancelled; needs handling by hand


@dataclass(frozen=True, slots=True)
class ChannelRefundRequest:
    """A (partial) refund of one paid order. Exactly one of transaction_id/out_trade_no.

    `total_fen` must be the order's total (WeChat checks it); `funds_account` is None
    (WeChat's default: the order's unsettled funds first) or "AVAILABLE".
    """

    sub_mchid: str
    transaction_id: str | None
    out_trade_no: str | None
    out_refund_no: str
    refund_fen: int
    total_fen: int
    currency: str
    reason: str | None
    notify_url: str | None
    funds_account: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelRefund:
    refund_id: str
    out_refund_no: str
    transaction_id: str
    out_trade_no: str
    channel: str  # ORIGINAL, BALANCE, OTHER_BALANCE, OTHER_BANKCARD
    user_received_account: str
    status: ChannelRefundState
    funds_account: str | None
    created_at: datetime
    success_at: datetime | None
    total_fen: int
    refund_fen: int
    payer_total_fen: int
    payer_refund_fen: int
    settlement_total_fen: int
    settlement_refund_fen: int
    discount_refund_fen: int
    currency: str
    refund_fee_fen: int | None  # the channel fee given back with this refund


# -- notifications ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelPaymentNotice:
    """TRANSACTION.SUCCESS: `event_id` is WeChat's notification id (the same on every retry)."""

    event_id: str
    trade: ChannelTrade


@dataclass(frozen=True, slots=True)
class ChannelRefundNotice:
    """REFUND.SUCCESS / REFUND.ABNORMAL / REFUND.CLOSED, decrypted."""

    event_id: str
    sp_mchid: str
    sub_mchid: str
    transaction_id: str
    out_trade_no: str
    refund_id: str
    out_refund_no: str
    status: ChannelRefundState
    success_at: datetime | None
    user_received_account: str | None
    total_fen: int
    refund_fen: int
    payer_total_fen: int
    payer_refund_fen: int


class ChannelSplitNoticeKind(enum.Enum):
    SPLIT = "PROFITSHARING.SUCCESS"
    RETURN = "PROFITSHARING.RETURN"


@dataclass(frozen=True, slots=True)
class ChannelSplitNotice:
    """分账动账通知: money moved to (SPLIT) or back from (RETURN) one MERCHANT_ID receiver.

    For a RETURN, `order_id`/`out_order_no` are the return's ids (return_id/out_return_no),
    as WeChat sends them.
    """

    event_id: str
    kind: ChannelSplitNoticeKind
    sp_mchid: str
    sub_mchid: str
    transaction_id: str
    order_id: str
    out_order_no: str
    receiver_type: ChannelReceiverType
    receiver_account: str
    amount_fen: int
    description: str
    success_at: datetime


@dataclass(frozen=True, slots=True)
class ChannelPointsNotice:
    """One points change of a paid transaction, for WeChat's business-circle points API."""

    sub_mchid: str
    transaction_id: str
    appid: str
    openid: str
    earn_points: bool
    increased_points: int
    points_update_at: datetime
    no_points_remarks: str | None
    total_points: int
