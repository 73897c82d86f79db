"""Refunds as WeChat keeps them, bounded (oldest forgotten beyond `refunds_max`), and their
JSON: the answer of POST/GET /v3/refund/domestic/refunds and the REFUND.* resource."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from emulator.bounded import Bounded
from emulator.wire import fields_json, format_time

PROCESSING = "PROCESSING"
SUCCESS = "SUCCESS"
ABNORMAL = "ABNORMAL"
CHANNEL_ORIGINAL = "ORIGINAL"  # back the way it was paid
USER_RECEIVED_BALANCE = "支付用户零钱"  # the emulator's payers all pay from their WeChat balance
FUNDS_UNSETTLED = "UNSETTLED"
FUNDS_AVAILABLE = "AVAILABLE"


@dataclass
class Refund:
    sp_mchid: str
    sub_mchid: str
    out_refund_no: str
    refund_id: str
    transaction_id: str
    out_trade_no: str
    reason: str | None
    notify_url: str | None
    funds_account: str  # where the money came from: UNSETTLED (the frozen order) or AVAILABLE
    refund_fen: int
    total_fen: int
    refund_fee_fen: int
    fingerprint: str
    created_at: datetime
    status: str = PROCESSING
    success_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.sub_mchid, self.out_refund_no)


class RefundBook:
    def __init__(self, refunds_max: int):
        self._refunds: Bounded[tuple[str, str], Refund] = Bounded(refunds_max)

    def __len__(self) -> int:
        return len(self._refunds)

    def all(self) -> list[Refund]:
        return self._refunds.values()

    def get(self, sub_mchid: str, out_refund_no: str) -> Refund | None:
        return self._refunds.get((sub_mchid, out_refund_no))

    def add(self, refund: Refund) -> None:
        assert refund.key not in self._refunds, "an out_refund_no is used once"
        self._refunds.add(refund.key, refund)


def refund_json(refund: Refund) -> dict[str, Any]:
    """No coupons at the emulator's channel: payer amounts equal the order amounts."""
    data: dict[str, Any] = {
        **fields_json(refund, "refund_id", "out_refund_no", "transaction_id", "out_trade_no"),
        "channel": CHANNEL_ORIGINAL,
        "user_received_account": USER_RECEIVED_BALANCE,
        "create_time": format_time(refund.created_at),
        "status": refund.status,
        "funds_account": refund.funds_account,
        "amount": {
            "total": refund.total_fen,
            "refund": refund.refund_fen,
            "from": [],
            "payer_total": refund.total_fen,
            "payer_refund": refund.refund_fen,
            "settlement_refund": refund.refund_fen,
            "settlement_total": refund.total_fen,
            "discount_refund": 0,
            "currency": "CNY",
            "refund_fee": refund.refund_fee_fen,
        },
        "promotion_detail": [],
    }
    if refund.success_at is not None:
        data["success_time"] = format_time(refund.success_at)
    return data


# What WeChat's REFUND.* notice carries of the refund's query answer.
NOTICE_FIELDS = ("transaction_id", "out_trade_no", "refund_id", "out_refund_no")
NOTICE_AMOUNT_FIELDS = ("total", "refund", "payer_total", "payer_refund")


def refund_notice_resource(refund: Refund) -> dict[str, Any]:
    """The decrypted resource of REFUND.SUCCESS / REFUND.ABNORMAL (partner mode): the
    refund's own JSON narrowed to the notice's fields, with both merchants named."""
    full = refund_json(refund)
    data: dict[str, Any] = {
        **fields_json(refund, "sp_mchid", "sub_mchid"),
        **{name: full[name] for name in NOTICE_FIELDS},
        "refund_status": full["status"],
        "user_received_account": full["user_received_account"],
        "amount": {name: full["amount"][name] for name in NOTICE_AMOUNT_FIELDS},
    }
    if "success_time" in full:
        data["success_time"] = full["success_time"]
    return data
