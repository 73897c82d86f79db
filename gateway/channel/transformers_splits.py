"""WeChat's profit-sharing (分账) JSON <-> the channel's split types.

Pure functions, like `transformers`: request bodies out, answers and notification
resources in. Sensitive fields (a receiver's name) are encrypted by the `encrypt` callable
the client hands in, so this module holds no keys.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

from gateway.channel import (
    ChannelReceiver,
    ChannelReceiverType,
    ChannelSplitDetail,
    ChannelSplitNotice,
    ChannelSplitNoticeKind,
    ChannelSplitOrder,
    ChannelSplitRequest,
    ChannelSplitResult,
    ChannelSplitReturn,
    ChannelSplitReturnRequest,
    ChannelSplitReturnResult,
    ChannelSplitState,
)
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

RECEIVERS_PER_REQUEST_MAX = 50  # WeChat: 每次请求最多分给50个接收方
BPS_WHOLE = 10_000


def split_order_body(req: ChannelSplitRequest, encrypt: Callable[[str], str]) -> dict[str, Any]:
    """The body of POST /v3/profitsharing/orders."""
    assert 0 < len(req.receivers) <= RECEIVERS_PER_REQUEST_MAX, "WeChat takes 1..50 receivers per split"
    receivers = []
    for receiver in req.receivers:
        assert isinstance(receiver.amount_fen, int) and receiver.amount_fen > 0
        line: dict[str, Any] = {
            "type": receiver.type.value, "account": receiver.account,
            "amount": receiver.amount_fen, "description": receiver.description,
        }
        if receiver.name is not None:
            line["name"] = encrypt(receiver.name)
        receivers.append(line)
    body: dict[str, Any] = {
        "sub_mchid": req.sub_mchid, "appid": req.appid, "transaction_id": req.transaction_id,
        "out_order_no": req.out_order_no, "receivers": receivers, "unfreeze_unsplit": req.unfreeze_unsplit,
    }
    if req.sub_appid is not None:
        body["sub_appid"] = req.sub_appid
    return body


def unfreeze_body(sub_mchid: str, transaction_id: str, out_order_no: str, description: str) -> dict[str, Any]:
    return {"sub_mchid": sub_mchid, "transaction_id": transaction_id, "out_order_no": out_order_no,
            "description": description}


def split_return_body(req: ChannelSplitReturnRequest) -> dict[str, Any]:
    assert (req.out_order_no is None) != (req.order_id is None), "exactly one of out_order_no and order_id"
    assert isinstance(req.amount_fen, int) and req.amount_fen > 0
    body: dict[str, Any] = {
        "sub_mchid": req.sub_mchid, "out_return_no": req.out_return_no, "return_mchid": req.return_mchid,
        "amount": req.amount_fen, "description": req.description,
    }
    if req.out_order_no is not None:
        body["out_order_no"] = req.out_order_no
    else:
        body["order_id"] = req.order_id
    return body


def receiver_add_body(receiver: ChannelReceiver, encrypt: Callable[[str], str]) -> dict[str, Any]:
    assert (receiver.relation_type == "CUSTOM") == (receiver.custom_relation is not None), \
        "custom_relation goes with relation_type CUSTOM only"
    body = receiver_delete_body(receiver.sub_mchid, receiver.appid, receiver.sub_appid, receiver.type,
                                receiver.account)
    body["relation_type"] = receiver.relation_type
    if receiver.custom_relation is not None:
        body["custom_relation"] = receiver.custom_relation
    if receiver.name is not None:
        body["name"] = encrypt(receiver.name)
    return body


def receiver_delete_body(sub_mchid: str, appid: str, sub_appid: str | None, receiver_type: ChannelReceiverType,
                         account: str) -> dict[str, Any]:
    body: dict[str, Any] = {"sub_mchid": sub_mchid, "appid": appid, "type": receiver_type.value, "account": account}
    if sub_appid is not None:
        body["sub_appid"] = sub_appid
    return body


def split_order_from(data: Mapping[str, Any]) -> ChannelSplitOrder:
    """A split order answer (request, query or unfreeze) -> ChannelSplitOrder."""
    receivers = data.get("receivers") or []
    if not isinstance(receivers, list):
        raise UnexpectedChannelResponse("receivers is not a list")
    return ChannelSplitOrder(
        sub_mchid=read_text(data, "sub_mchid"),
        transaction_id=read_text(data, "transaction_id"),
        out_order_no=read_text(data, "out_order_no"),
        order_id=read_text(data, "order_id"),
        state=read_enum(ChannelSplitState, data, "state"),
        receivers=tuple(_detail_from(read_mapping(line, "receivers[]")) for line in receivers),
    )


def _detail_from(line: Mapping[str, Any]) -> ChannelSplitDetail:
    result = read_enum(ChannelSplitResult, line, "result")
    return ChannelSplitDetail(
        type=read_enum(ChannelReceiverType, line, "type"),
        account=read_text(line, "account"),
        detail_id=read_text(line, "detail_id"),
        **_amount_and_outcome(line, result, done=result is not ChannelSplitResult.PENDING),
    )


def split_return_from(data: Mapping[str, Any]) -> ChannelSplitReturn:
    result = read_enum(ChannelSplitReturnResult, data, "result")
    return ChannelSplitReturn(
        sub_mchid=read_text(data, "sub_mchid"),
        order_id=read_text(data, "order_id"),
        out_order_no=read_text(data, "out_order_no"),
        out_return_no=read_text(data, "out_return_no"),
        return_id=read_text(data, "return_id"),
        return_mchid=read_text(data, "return_mchid"),
        **_amount_and_outcome(data, result, done=result is not ChannelSplitReturnResult.PROCESSING),
    )


def _amount_and_outcome(data: Mapping[str, Any], result: enum.Enum, *, done: bool) -> dict[str, Any]:
    """What a split's receiver line and a split return both say: the fen moved and why, the
    result, when it was made and finished, and why it failed. WeChat sends finish_time
    while still pending too; it only means something once done."""
    return {
        "amount_fen": read_fen(data, "amount"),
        "description": read_optional_text(data, "description") or "",
        "result": result,
        "fail_reason": read_optional_text(data, "fail_reason"),
        "created_at": read_time(data, "create_time"),
        "finished_at": read_optional_time(data, "finish_time") if done else None,
    }


def unsplit_fen_from(data: Mapping[str, Any], transaction_id: str) -> int:
    if read_text(data, "transaction_id") != transaction_id:
        raise UnexpectedChannelResponse("amounts answer names another transaction")
    return read_fen(data, "unsplit_amount")


def max_ratio_bps_from(data: Mapping[str, Any], sub_mchid: str) -> int:
    if read_text(data, "sub_mchid") != sub_mchid:
        raise UnexpectedChannelResponse("merchant-configs answer names another store")
    ratio = read_fen(data, "max_ratio")  # an integer in 1/10000, like fen in shape
    if ratio > BPS_WHOLE:
        raise UnexpectedChannelResponse("max_ratio above 10000")
    return ratio


def split_notice_from(event_id: str, kind: ChannelSplitNoticeKind, data: Mapping[str, Any]) -> ChannelSplitNotice:
    """The decrypted resource of a 分账动账通知 (PROFITSHARING.SUCCESS / .RETURN)."""
    receiver = read_mapping(data.get("receiver"), "receiver")
    return ChannelSplitNotice(
        event_id=event_id,
        kind=kind,
        sp_mchid=read_text(data, "sp_mchid"),
        sub_mchid=read_text(data, "sub_mchid"),
        transaction_id=read_text(data, "transaction_id"),
        order_id=read_text(data, "order_id"),
        out_order_no=read_text(data, "out_order_no"),
        receiver_type=read_enum(ChannelReceiverType, receiver, "type"),
        receiver_account=read_text(receiver, "account"),
        amount_fen=read_fen(receiver, "amount"),
        description=read_optional_text(receiver, "description") or "",
        success_at=read_time(data, "success_time"),
    )
