"""Refund and split-return requests (/v3/refund/domestic/refunds, /v3/profitsharing/return-orders)."""

from __future__ import annotations

from gateway.api.requests import body_object, field, is_positive_int, notify_url, request_hash
from gateway.domain_errors import InvalidField
from gateway.formats import MCHID_RE, OUT_NO_RE, OUT_TRADE_NO_RE, TRANSACTION_ID_RE
from gateway.services.refunds import RefundRequest
from gateway.services.returns import ReturnRequest

REASON_CHARS_MAX = 80
FUNDS_ACCOUNTS = (None, "AVAILABLE", "UNSETTLED")


def parse_refund(body, allow_loopback_http: bool) -> RefundRequest:
    body = body_object(body)
    sub_mchid = field(body, "sub_mchid", MCHID_RE)
    out_refund_no = field(body, "out_refund_no", OUT_NO_RE)
    transaction_id = field(body, "transaction_id", TRANSACTION_ID_RE, required=False)
    out_trade_no = field(body, "out_trade_no", OUT_TRADE_NO_RE, required=False)
    hashed = request_hash(body)
    if (transaction_id is None) == (out_trade_no is None):
        raise InvalidField("transaction_id", "one_of_transaction_id_out_trade_no")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > REASON_CHARS_MAX):
        raise InvalidField("reason", "bad_length_or_characters")
    refund_notify_url = notify_url(body, allow_loopback_http) if body.get("notify_url") else None
    if body.get("funds_account") not in FUNDS_ACCOUNTS:
        raise InvalidField("funds_account", "unknown_funds_account")
    amount = body.get("amount")
    if not isinstance(amount, dict):
        raise InvalidField("amount", "required")
    for name in ("refund", "total"):
        if not is_positive_int(amount.get(name)):
            raise InvalidField(f"amount.{name}", "not_a_positive_integer")
    if amount.get("currency", "CNY") != "CNY":
        raise InvalidField("amount.currency", "unsupported_currency")
    return RefundRequest(sub_mchid=sub_mchid, out_refund_no=out_refund_no, transaction_id=transaction_id,
                         out_trade_no=out_trade_no, reason=reason, notify_url=refund_notify_url,
                         amount_fen=amount["refund"], total_fen=amount["total"], request_hash=hashed)


def parse_return(body) -> ReturnRequest:
    body = body_object(body)
    amount = body.get("amount")
    if not is_positive_int(amount):
        raise InvalidField("amount", "not_a_positive_integer")
    if body.get("order_id") is not None and body.get("out_order_no") is None:
        raise InvalidField("out_order_no", "required", "name the split by out_order_no")
    sub_mchid = field(body, "sub_mchid", MCHID_RE)
    out_order_no = field(body, "out_order_no", OUT_NO_RE)
    out_return_no = field(body, "out_return_no", OUT_NO_RE)
    return_mchid = field(body, "return_mchid", MCHID_RE)
    description = body.get("description")
    if not isinstance(description, str) or not description:
        raise InvalidField("description", "required")
    return ReturnRequest(sub_mchid=sub_mchid, out_order_no=out_order_no, out_return_no=out_return_no,
                         return_mchid=return_mchid, amount_fen=amount, description=description,
                         request_hash=request_hash(body))
