"""Profit sharing (分账), service-provider mode: split orders, the unfreeze, the amount
still splittable and each store's maximum ratio.

WeChat's rules, each refused with WeChat's answer before anything changes:
  * the order must be paid with settle_info.profit_sharing=true
    (400 INVALID_REQUEST 非分账订单不支持分账);
  * not within `split_after_payment_s` of payment (400 INVALID_REQUEST 订单处理中，暂时无法
    分账，请稍后重试 -- v3's answer to what API v2 called ORDER_NOT_READY);
  * at most 50 receivers per request (400 PARAM_ERROR) and 50 split requests per order
    (400 INVALID_REQUEST 分账次数过多);
  * every receiver added for the store beforehand (400 PARAM_ERROR 分账接收方关系不存在);
  * the amounts within what is still unsplit (403 NOT_ENOUGH 分账金额不足; also once the
    order was unfrozen) and, summed over the order's splits to others, within
    floor(total x max_ratio / 10000) (403 RULE_LIMIT 分账金额超出最大分账比例);
  * the same out_order_no again answers the same order if the request is the same, else
    400 INVALID_REQUEST; an unfreeze needs an out_order_no of its own.
Sources: the v3 partner docs for 请求分账/解冻剩余资金 (error tables), WeChat's 分账 FAQ and
community answers quoting v3 error bodies.

Results are asynchronous: PROCESSING until `split_finish_delay_ms` later, then FINISHED
with each receiver SUCCESS or (at `split_failure_rate`) CLOSED/ACCOUNT_ABNORMAL; then a
分账动账通知 (PROFITSHARING.SUCCESS) per MERCHANT_ID receiver to `profitsharing_notify_url`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog
from aiohttp import web

from emulator import fields, keys
from emulator.auth import caller_mchid
from emulator.config import EmulatorConfig
from emulator.funds import Funds, TradeFunds
from emulator.notify import EVENT_PROFITSHARING_SUCCESS
from emulator.split_book import (
    CLOSED, FINISHED, KIND_SPLIT, KIND_UNFREEZE, MERCHANT_ID, RECEIVER_TYPES, SUCCESS,
    SplitBook, SplitLine, SplitOrder, split_order_json,
)
from emulator.state import new_split_detail_id, new_split_order_id
from emulator.wire import EmulatorError, format_time, json_response, param_error, read_json_object, required_query

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

BASE = "/v3/profitsharing"
RECEIVERS_PER_REQUEST_MAX = 50  # WeChat: 每次请求最多分给50个接收方
SPLIT_REQUESTS_PER_ORDER_MAX = 50  # WeChat: 对同一笔订单最多能发起50次分账请求
NOT_READY_MESSAGE = "订单处理中，暂时无法分账，请稍后重试"
FAIL_REASON_ACCOUNT_ABNORMAL = "ACCOUNT_ABNORMAL"
Owned = TypeVar("Owned", SplitOrder, TradeFunds)


@dataclass(frozen=True)
class Context:
    """What every profit-sharing handler needs, with the automatic unfreeze applied."""

    config: EmulatorConfig
    funds: Funds
    book: SplitBook
    now: datetime
    sp_mchid: str

    def own(self, record: Owned | None) -> Owned:
        """The split order or trade when the calling service provider's: WeChat answers for
        another provider's as for none (404)."""
        if record is None or record.sp_mchid != self.sp_mchid:
            raise not_found()
        return record


def context_of(request: web.Request) -> Context:
    app = request.app
    now = app[keys.CLOCK]()
    app[keys.FUNDS].sweep(now)  # WeChat's own unfreeze after freeze_days, applied lazily
    return Context(app[keys.CONFIG], app[keys.FUNDS], app[keys.SPLITS], now, caller_mchid(request))


def not_found() -> EmulatorError:
    return EmulatorError(404, "RESOURCE_NOT_EXISTS", "记录不存在")


def too_busy() -> EmulatorError:
    return EmulatorError(429, "FREQUENCY_LIMITED", "对同笔订单分账频率过高")


@routes.post(BASE + "/orders")
async def create_split(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    ctx = context_of(request)
    split = _validated_split(request, body, ctx.config)
    existing = ctx.book.order(split["sub_mchid"], split["out_order_no"])
    if existing is not None:
        return _same_request_or_refuse(existing, fields.fingerprint(split))
    trade = splittable_trade(ctx, split["sub_mchid"], split["transaction_id"])
    if trade.split_requests >= SPLIT_REQUESTS_PER_ORDER_MAX:
        raise EmulatorError(400, "INVALID_REQUEST", "分账次数过多")
    for receiver in split["receivers"]:
        if ctx.book.relation(trade.sub_mchid, receiver["type"], receiver["account"]) is None:
            raise param_error("分账接收方关系不存在，请检查参数中每个接收方的关系")
    total_fen = sum(receiver["amount"] for receiver in split["receivers"])
    to_store_fen = sum(r["amount"] for r in split["receivers"] if _is_store(r["type"], r["account"], trade))
    if total_fen > trade.unsplit_fen:
        raise EmulatorError(403, "NOT_ENOUGH", "分账金额不足")
    cap_fen = trade.total_fen * ctx.book.max_ratio_bps(trade.sub_mchid) // 10_000
    if trade.split_to_others_fen + total_fen - to_store_fen > cap_fen:
        raise EmulatorError(403, "RULE_LIMIT", "分账金额超出最大分账比例")
    jobs = request.app[keys.JOBS]
    if not jobs.has_capacity():
        raise too_busy()
    order = _new_order(request, ctx, trade, split, KIND_SPLIT, [
        (r["type"], r["account"], r["amount"], r["description"]) for r in split["receivers"]
    ])
    ctx.funds.hold_split(trade, total_fen - to_store_fen, to_store_fen)
    if split["unfreeze_unsplit"]:
        ctx.funds.close_for_splits(trade)
    ctx.book.add_order(order)
    jobs.after(ctx.config.split_finish_delay_ms / 1000, lambda: _finish(request.app, order, trade),
               name=f"split-{order.order_id}")
    log.info("emulator.split_accepted", sub_mchid=order.sub_mchid, out_order_no=order.out_order_no,
             fen=total_fen, receivers=len(order.lines))
    return json_response(split_order_json(order))


@routes.post(BASE + "/orders/unfreeze")
async def unfreeze(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    ctx = context_of(request)
    wanted = {
        "kind": KIND_UNFREEZE,
        "sub_mchid": fields.mchid(body, "sub_mchid"),
        "transaction_id": fields.text(body, "transaction_id", 32),
        "out_order_no": fields.out_no(body, "out_order_no"),
        "description": fields.text(body, "description", fields.DESCRIPTION_CHARS_MAX),
    }
    existing = ctx.book.order(wanted["sub_mchid"], wanted["out_order_no"])
    if existing is not None:
        return _same_request_or_refuse(existing, fields.fingerprint(wanted))
    trade = splittable_trade(ctx, wanted["sub_mchid"], wanted["transaction_id"])
    if trade.unsplit_fen == 0:
        raise EmulatorError(403, "NOT_ENOUGH", "分账金额为0，无需解冻剩余资金")
    jobs = request.app[keys.JOBS]
    if not jobs.has_capacity():
        raise too_busy()
    order = _new_order(request, ctx, trade, wanted, KIND_UNFREEZE,
                       [(MERCHANT_ID, trade.sub_mchid, trade.unsplit_fen, wanted["description"])])
    ctx.funds.close_for_splits(trade)
    ctx.book.add_order(order)
    jobs.after(ctx.config.split_finish_delay_ms / 1000, lambda: _finish(request.app, order, trade),
               name=f"unfreeze-{order.order_id}")
    log.info("emulator.unfreeze_accepted", sub_mchid=order.sub_mchid, out_order_no=order.out_order_no)
    return json_response(split_order_json(order))


@routes.get(BASE + "/orders/{out_order_no}")
async def query_split(request: web.Request) -> web.Response:
    ctx = context_of(request)
    sub_mchid, transaction_id = required_query(request, "sub_mchid", "transaction_id")
    order = ctx.own(ctx.book.order(sub_mchid, request.match_info["out_order_no"]))
    if order.transaction_id != transaction_id:
        raise not_found()
    return json_response(split_order_json(order))


@routes.get(BASE + "/transactions/{transaction_id}/amounts")
async def unsplit_amount(request: web.Request) -> web.Response:
    ctx = context_of(request)
    trade = ctx.own(ctx.funds.trade(request.match_info["transaction_id"]))
    if not trade.profit_sharing:
        raise EmulatorError(400, "INVALID_REQUEST", "非分账订单不支持此查询")
    return json_response({"transaction_id": trade.transaction_id, "unsplit_amount": trade.unsplit_fen})


@routes.get(BASE + "/merchant-configs/{sub_mchid}")
async def merchant_config(request: web.Request) -> web.Response:
    ctx = context_of(request)
    sub_mchid = request.match_info["sub_mchid"]
    if not fields.MCHID_RE.fullmatch(sub_mchid):
        raise param_error("sub_mchid must be digits")
    return json_response({"sub_mchid": sub_mchid, "max_ratio": ctx.book.max_ratio_bps(sub_mchid)})


def splittable_trade(ctx: Context, sub_mchid: str, transaction_id: str) -> TradeFunds:
    """The paid, profit-sharing, settled, still-frozen order a split or unfreeze acts on."""
    trade = ctx.funds.trade(transaction_id)
    if trade is None or trade.sub_mchid != sub_mchid or trade.sp_mchid != ctx.sp_mchid:
        raise EmulatorError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
    if not trade.profit_sharing:
        raise EmulatorError(400, "INVALID_REQUEST", "非分账订单不支持分账")
    if ctx.now < trade.paid_at + timedelta(seconds=ctx.config.split_after_payment_s):
        raise EmulatorError(400, "INVALID_REQUEST", NOT_READY_MESSAGE)
    if trade.closing:
        raise EmulatorError(403, "NOT_ENOUGH", "分账金额不足（订单剩余资金已解冻）")
    return trade


def _same_request_or_refuse(existing: SplitOrder, fingerprint: str) -> web.Response:
    # The fingerprint includes the kind, so a split's out_order_no reused for an unfreeze
    # (or the other way round) is refused here too.
    if existing.fingerprint != fingerprint:
        raise EmulatorError(400, "INVALID_REQUEST", "商户分账单号重复，且请求参数与原请求不一致")
    return json_response(split_order_json(existing))


def _new_order(request: web.Request, ctx: Context, trade: TradeFunds, wanted: dict[str, Any], kind: str,
               lines: list[tuple[str, str, int, str]]) -> SplitOrder:
    rng = ctx.config.rng
    order_id = new_split_order_id(rng)
    while ctx.book.order_id_taken(order_id):
        order_id = new_split_order_id(rng)
    return SplitOrder(
        sp_mchid=trade.sp_mchid, sub_mchid=trade.sub_mchid, transaction_id=trade.transaction_id,
        out_order_no=wanted["out_order_no"], order_id=order_id, kind=kind,
        fingerprint=fields.fingerprint(wanted), created_at=ctx.now,
        lines=[SplitLine(type=t, account=a, amount_fen=fen, description=d, detail_id=new_split_detail_id(rng),
                         created_at=ctx.now) for t, a, fen, d in lines],
        unfreeze_unsplit=bool(wanted.get("unfreeze_unsplit")),
    )


def _finish(app: web.Application, order: SplitOrder, trade: TradeFunds) -> None:
    """PROCESSING -> FINISHED: pay (or close) each line, release what is left if asked, notify."""
    config, funds, now = app[keys.CONFIG], app[keys.FUNDS], app[keys.CLOCK]()
    if order.kind == KIND_UNFREEZE:
        funds.release(trade)
        for line in order.lines:
            line.result, line.finished_at = SUCCESS, now
    else:
        for line in order.lines:
            if config.split_failure_rate and config.rng.random() < config.split_failure_rate:
                line.result, line.fail_reason = CLOSED, FAIL_REASON_ACCOUNT_ABNORMAL
                funds.undo_split_line(trade, line.type, line.account, line.amount_fen)
            else:
                line.result = SUCCESS
                funds.pay_receiver(trade, line.type, line.account, line.amount_fen)
            line.finished_at = now
        if order.unfreeze_unsplit:
            funds.release(trade)
    order.state = FINISHED
    log.info("emulator.split_finished", sub_mchid=order.sub_mchid, out_order_no=order.out_order_no, kind=order.kind)
    if order.kind == KIND_SPLIT:
        for line in order.lines:
            if line.result == SUCCESS and line.type == MERCHANT_ID and line.account != order.sub_mchid:
                notify_split(app, order, trade, EVENT_PROFITSHARING_SUCCESS, order.order_id, order.out_order_no,
                             line.account, line.amount_fen, line.description, now)


def notify_split(app: web.Application, order: SplitOrder, trade: TradeFunds, event_type: str, order_id: str,
                 out_order_no: str, account: str, amount_fen: int, description: str, now: datetime) -> None:
    """分账动账通知 for one MERCHANT_ID receiver (WeChat sends them to merchant receivers only)."""
    url, notifier = app[keys.CONFIG].profitsharing_notify_url, app[keys.NOTIFIER]
    if url is None:
        return
    if not notifier.has_capacity():
        log.warning("emulator.split_notice_dropped", out_order_no=out_order_no, reason="notify_pending_max")
        return
    resource = {
        "sp_mchid": order.sp_mchid, "sub_mchid": order.sub_mchid, "transaction_id": order.transaction_id,
        "order_id": order_id, "out_order_no": out_order_no,
        "receiver": {"type": MERCHANT_ID, "account": account, "amount": amount_fen, "description": description},
        "success_time": format_time(now),
    }
    notifier.submit(event_type, resource, sp_mchid=order.sp_mchid, sub_mchid=order.sub_mchid,
                    out_trade_no=trade.out_trade_no, notify_url=url)


def _is_store(receiver_type: str, account: str, trade: TradeFunds) -> bool:
    return receiver_type == MERCHANT_ID and account == trade.sub_mchid


def _validated_split(request: web.Request, body: dict[str, Any], config: EmulatorConfig) -> dict[str, Any]:
    receivers = body.get("receivers")
    if not isinstance(receivers, list) or not receivers:
        raise param_error("receivers is required")
    if len(receivers) > RECEIVERS_PER_REQUEST_MAX:
        raise param_error(f"分账接收方列表最多{RECEIVERS_PER_REQUEST_MAX}个")
    unfreeze_unsplit = body.get("unfreeze_unsplit")
    if not isinstance(unfreeze_unsplit, bool):
        raise param_error("unfreeze_unsplit is required and must be a boolean")
    split = {
        "kind": KIND_SPLIT,
        "sub_mchid": fields.mchid(body, "sub_mchid"),
        "appid": fields.optional_text(body, "appid", fields.APPID_CHARS_MAX),
        "sub_appid": fields.optional_text(body, "sub_appid", fields.APPID_CHARS_MAX),
        "transaction_id": fields.text(body, "transaction_id", 32),
        "out_order_no": fields.out_no(body, "out_order_no"),
        "receivers": [_validated_receiver(request, r, config) for r in receivers],
        "unfreeze_unsplit": unfreeze_unsplit,
    }
    seen = {(r["type"], r["account"]) for r in split["receivers"]}
    if len(seen) != len(split["receivers"]):
        raise param_error("a receiver appears twice in receivers")
    types = {receiver_type for receiver_type, _ in seen}
    if "PERSONAL_OPENID" in types and split["appid"] is None:
        raise param_error("appid is required for a PERSONAL_OPENID receiver")
    if "PERSONAL_SUB_OPENID" in types and split["sub_appid"] is None:
        raise param_error("sub_appid is required for a PERSONAL_SUB_OPENID receiver")
    return split


def _validated_receiver(request: web.Request, receiver: Any, config: EmulatorConfig) -> dict[str, Any]:
    if not isinstance(receiver, dict):
        raise param_error("分账接收方列表格式错误")
    receiver_type = receiver.get("type")
    if receiver_type not in RECEIVER_TYPES:
        raise param_error("receivers.type must be MERCHANT_ID, PERSONAL_OPENID or PERSONAL_SUB_OPENID")
    name = receiver.get("name")
    return {
        "type": receiver_type,
        "account": fields.text(receiver, "account", fields.ACCOUNT_CHARS_MAX),
        "amount": fields.fen(receiver.get("amount"), "receivers.amount"),
        "description": fields.text(receiver, "description", fields.DESCRIPTION_CHARS_MAX),
        "name": None if name is None else fields.encrypted_name(request, name, config.credentials),
    }
