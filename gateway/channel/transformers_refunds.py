"""WeChat's refund JSON (/v3/refund/domestic/refunds, REFUND.* resources) <-> the
channel's refund types. Pure functions, like `transformers`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.channel import ChannelRefund, ChannelRefundNotice, ChannelRefundRequest, ChannelRefundState
from gateway.channel.transformers import (
    UnexpectedChannelResponse,
    read_enum,
    read_fen,
    read_mapping,
    read_optional_text,
    read_optional_time,
    read_text,
    read_time,
)

EVENT_REFUND_STATES = {
    "REFUND.SUCCESS": ChannelRefundState.SUCCESS,
    "REFUND.ABNORMAL": ChannelRefundState.ABNORMAL,
    "REFUND.CLOSED": ChannelRefundState.CLOSED,
}


def refund_body(req: ChannelRefundRequest) -> dict[str, Any]:
    """The body of POST /v3/refund/domestic/refunds (partner mode: sub_mchid names the store)."""
    assert (req.transaction_id is None) != (req.out_trade_no is None), "exactly one order id"
    assert isinstance(req.refund_fen, int) and 0 < req.refund_fen <= req.total_fen
    assert req.funds_account in (None, "AVAILABLE")
    body: dict[str, Any] = {
        "sub_mchid": req.sub_mchid,
        "out_refund_no": req.out_refund_no,
        "amount": {"refund": req.refund_fen, "total": req.total_fen, "currency": req.currency},
    }
    optional = {
        "transaction_id": req.transaction_id, "out_trade_no": req.out_trade_no, "reason": req.reason,
        "notify_url": req.notify_url, "funds_account": req.funds_account,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


def refund_from(data: Mapping[str, Any]) -> ChannelRefund:
    amount = read_mapping(data.get("amount"), "amount")
    return ChannelRefund(
        **_refund_ids(data),
        channel=read_text(data, "channel"),
        user_received_account=read_optional_text(data, "user_received_account") or "",
        status=read_enum(ChannelRefundState, data, "status"),
        funds_account=read_optional_text(data, "funds_account"),
        created_at=read_time(data, "create_time"),
        success_at=read_optional_time(data, "success_time"),
        **_order_and_payer_amounts(amount),
        settlement_total_fen=read_fen(amount, "settlement_total"),
        settlement_refund_fen=read_fen(amount, "settlement_refund"),
        discount_refund_fen=read_fen(amount, "discount_refund"),
        currency=read_optional_text(amount, "currency") or "CNY",
        refund_fee_fen=read_fen(amount, "refund_fee") if amount.get("refund_fee") is not None else None,
    )


def refund_notice_from(event_id: str, event_type: str, data: Mapping[str, Any]) -> ChannelRefundNotice:
    """The decrypted resource of REFUND.SUCCESS / REFUND.ABNORMAL / REFUND.CLOSED."""
    status = read_enum(ChannelRefundState, data, "refund_status")
    if EVENT_REFUND_STATES.get(event_type) is not status:
        raise UnexpectedChannelResponse("refund_status does not match the event type")
    amount = read_mapping(data.get("amount"), "amount")
    return ChannelRefundNotice(
        event_id=event_id,
        sp_mchid=read_text(data, "sp_mchid"),
        sub_mchid=read_text(data, "sub_mchid"),
        **_refund_ids(data),
        status=status,
        success_at=read_optional_time(data, "success_time"),
        user_received_account=read_optional_text(data, "user_received_account"),
        **_order_and_payer_amounts(amount),
    )


def _refund_ids(data: Mapping[str, Any]) -> dict[str, str]:
    """The ids a refund's answer and its notice both carry: WeChat's and ours, of the refund
    and of its order."""
    return {name: read_text(data, name) for name in ("refund_id", "out_refund_no", "transaction_id", "out_trade_no")}


def _order_and_payer_amounts(amount: Mapping[str, Any]) -> dict[str, int]:
    """The amounts a refund's answer and its notice both carry: the order's total and the
    refund, and what the payer paid and gets back."""
    return {
        "total_fen": read_fen(amount, "total"),
        "refund_fen": read_fen(amount, "refund"),
        "payer_total_fen": read_fen(amount, "payer_total"),
        "payer_refund_fen": read_fen(amount, "payer_refund"),
    }
