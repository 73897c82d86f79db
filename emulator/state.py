"""The emulator's memory: orders as WeChat Pay keeps them, bounded, lost on restart.

Orders are keyed by (sub_mchid, out_trade_no): WeChat makes out_trade_no unique per
merchant. When `orders_max` is reached the oldest order is forgotten (a later query for
it answers 404), which keeps long load tests running in constant memory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from emulator.bounded import Bounded
from emulator.wire import fields_json, format_time

log = structlog.get_logger(__name__)

NOTPAY = "NOTPAY"
SUCCESS = "SUCCESS"
CLOSED = "CLOSED"
REFUND = "REFUND"  # paid, then (partly) refunded: WeChat's "转入退款"
PAID_STATES = frozenset({SUCCESS, REFUND})
TRADE_STATE_DESC = {NOTPAY: "订单未支付", SUCCESS: "支付成功", CLOSED: "订单已关闭", REFUND: "转入退款"}
TRADE_TYPE_JSAPI = "JSAPI"
BANK_TYPE_OTHERS = "OTHERS"


@dataclass
class Order:
    sp_appid: str
    sp_mchid: str
    sub_appid: str | None
    sub_mchid: str
    out_trade_no: str
    description: str
    attach: str | None
    notify_url: str
    total_fen: int
    currency: str
    payer_sp_openid: str | None
    payer_sub_openid: str | None
    profit_sharing: bool
    expire_at: datetime | None
    created_at: datetime
    request_fingerprint: str  # canonical JSON of the create request, for idempotency
    prepay_id: str
    state: str = NOTPAY
    transaction_id: str | None = None
    success_at: datetime | None = None
    bank_type: str | None = None
    payer_total_fen: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.sub_mchid, self.out_trade_no)

    def mark_paid(self, transaction_id: str, now: datetime) -> None:
        assert self.state == NOTPAY, "only an unpaid order can be paid"
        self.state = SUCCESS
        self.transaction_id = transaction_id
        self.success_at = now
        self.bank_type = BANK_TYPE_OTHERS
        self.payer_total_fen = self.total_fen  # no coupons at the channel in the emulator

    def close(self) -> None:
        assert self.state not in PAID_STATES, "a paid order cannot be closed"
        self.state = CLOSED

    def mark_refunded(self) -> None:
        assert self.state in PAID_STATES, "only a paid order is refunded"
        self.state = REFUND


def transaction_json(order: Order) -> dict[str, Any]:
    """The partner query answer, which is also the TRANSACTION.SUCCESS resource plaintext.

    Like WeChat, fields that only exist once paid (transaction_id, trade_type, bank_type,
    success_time, payer_total) are absent before.
    """
    payer: dict[str, str] = {}
    if order.payer_sp_openid:
        payer["sp_openid"] = order.payer_sp_openid
    if order.payer_sub_openid:
        payer["sub_openid"] = order.payer_sub_openid
    amount: dict[str, Any] = {"total": order.total_fen, "currency": order.currency, "payer_currency": order.currency}
    data: dict[str, Any] = {
        **fields_json(order, "sp_appid", "sp_mchid", "sub_mchid", "out_trade_no"),
        "trade_state": order.state,
        "trade_state_desc": TRADE_STATE_DESC[order.state],
        "attach": order.attach or "",
        "payer": payer,
        "amount": amount,
    }
    if order.sub_appid:
        data["sub_appid"] = order.sub_appid
    if order.state in PAID_STATES:
        assert order.transaction_id and order.success_at and order.payer_total_fen is not None
        data.update(
            transaction_id=order.transaction_id,
            trade_type=TRADE_TYPE_JSAPI,
            bank_type=order.bank_type,
            success_time=format_time(order.success_at),
        )
        amount["payer_total"] = order.payer_total_fen
    return data


class OrderBook:
    def __init__(self, orders_max: int):
        self._orders: Bounded[tuple[str, str], Order] = Bounded(orders_max)
        self.evicted_count = 0

    def __len__(self) -> int:
        return len(self._orders)

    def get(self, sub_mchid: str, out_trade_no: str) -> Order | None:
        return self._orders.get((sub_mchid, out_trade_no))

    def all(self) -> list[Order]:
        return self._orders.values()

    def by_transaction_id(self, transaction_id: str) -> Order | None:
        return self._orders.by_id(transaction_id)

    def add(self, order: Order) -> None:
        assert order.key not in self._orders, "an out_trade_no is created once"
        for oldest in self._orders.add(order.key, order):
            self.evicted_count += 1
            log.warning("emulator.order_evicted", sub_mchid=oldest.sub_mchid, out_trade_no=oldest.out_trade_no)

    def pay(self, order: Order, transaction_id: str, now: datetime) -> None:
        assert not self._orders.id_taken(transaction_id), "transaction ids are unique"
        order.mark_paid(transaction_id, now)
        self._orders.name(order.key, transaction_id)


def new_prepay_id(rng: random.Random, now: datetime) -> str:
    """Shaped like WeChat's: wx + China-time yyyyMMddHHmmss + 22 hex digits."""
    stamp = format_time(now)[:19].replace("-", "").replace("T", "").replace(":", "")
    return f"wx{stamp}{rng.getrandbits(88):022x}"


def new_transaction_id(rng: random.Random, now: datetime) -> str:
    """28 digits like WeChat's: 4200 + 6 random + China-time yyyyMMdd + 10 random."""
    day = format_time(now)[:10].replace("-", "")
    return f"4200{rng.randrange(10**6):06d}{day}{rng.randrange(10**10):010d}"


def new_event_id(rng: random.Random) -> str:
    return f"EV-{rng.getrandbits(80):020x}".upper()


def new_split_order_id(rng: random.Random) -> str:
    """28 digits like WeChat's 微信分账单号 (3008450740201411110007820472)."""
    return f"3008{rng.randrange(10**24):024d}"


def new_split_detail_id(rng: random.Random) -> str:
    """WeChat's 分账明细单号 look like 36011111111111111111111 (23 digits)."""
    return f"3601{rng.randrange(10**19):019d}"


def new_refund_id(rng: random.Random, now: datetime) -> str:
    """29 digits like WeChat's 50000000382019052709732678859: 5000 + 6 + China-time date + 11."""
    day = format_time(now)[:10].replace("-", "")
    return f"5000{rng.randrange(10**6):06d}{day}{rng.randrange(10**11):011d}"
