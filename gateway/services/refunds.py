"""Refunds, partial and repeated (SPEC 5): merchant receivers give their share back
first (split returns), guides' shares are recorded as owed, then the channel refunds.

A refund is planned under the order's lock (so ten concurrent full refunds make exactly
one), written with its returns, and then driven step by step — inline for a quick
answer, and by the scheduler until the channel reports the end, across restarts.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog

from gateway.channel import ChannelError, ChannelRefundRequest, ChannelRefundState
from gateway.domain_errors import InvalidField, KeyReused, NotFound, Refused, StoreBalanceInsufficient
from gateway.repo import jobs as jobs_repo
from gateway.repo import orders as orders_repo
from gateway.repo import outbox as outbox_repo
from splitting import repo
from gateway.services import coupon_redemption, points, returns
from gateway.services.context import Services
from gateway.shapes.refunds import refund_json, refund_notice
from ledger import accounts
from ledger import repo as ledger_repo
from splitting import funds as order_funds
from splitting import postings
from splitting.funds import RefundPlan

log = structlog.get_logger(__name__)
REFUND_STEP = "refund_step"


@dataclass(frozen=True, slots=True)
class RefundRequest:  # checked at the edge (`gateway.api.requests.refunds.parse_refund`)
    sub_mchid: str
    out_refund_no: str
    transaction_id: str | None  # exactly one of transaction_id and out_trade_no names the order
    out_trade_no: str | None
    reason: str | None
    notify_url: str | None
    amount_fen: int
    total_fen: int  # the order's total as the client states it; the order decides
    request_hash: str


async def request_refund(svc: Services, caller, req: RefundRequest) -> dict:
    order = await _order(svc, caller.mall_id, req)
    if req.total_fen != order["total_fen"]:
        raise InvalidField("amount.total", "total_mismatch", "amount.total must be the order's total")
    key = (caller.mall_id, req.sub_mchid, req.out_refund_no)
    trade_key = (caller.mall_id, order["sub_mchid"], order["out_trade_no"])
    async with svc.pool.acquire() as conn, conn.transaction():
        # The order's lock first: a concurrent duplicate waits here and then finds the refund.
        _, funds = await repo.funds_for_update(conn, trade_key)
        existing = await repo.refund(conn, *key)
        if existing is not None:
            if existing["request_hash"] != req.request_hash:
                raise KeyReused("out_refund_no")
            return refund_json(existing)
        plan, funds = order_funds.plan_refund(funds, req.amount_fen)
        await _check_store_can_pay(conn, caller.mall_id, order["sub_mchid"], plan)
        refund = await repo.insert_refund(
            conn, mall_id=caller.mall_id, sub_mchid=order["sub_mchid"], out_refund_no=req.out_refund_no,
            out_trade_no=order["out_trade_no"], transaction_id=order["transaction_id"],
            amount_fen=req.amount_fen, total_fen=order["total_fen"], reason=req.reason,
            notify_url=req.notify_url, request_hash=req.request_hash, plan=plan.to_json(),
            refund_id="50" + "".join(str(secrets.randbelow(10)) for _ in range(28)),
            client_id=caller.client_id, created_at=svc.clock(),
        )
        await _prepare_returns(svc, conn, trade_key, refund, plan)
        await repo.save_funds(conn, trade_key, funds)
        await jobs_repo.ensure_job(conn, caller.mall_id, REFUND_STEP, f"{order['sub_mchid']}/{req.out_refund_no}",
                                   svc.clock() + timedelta(seconds=svc.settings.job_retry_base_s), svc.clock())
    try:
        await drive(svc, *key)
    except ChannelError as exc:  # the scheduler carries on; the client sees PROCESSING
        log.warning("refund_step_deferred", code=exc.code)
    async with svc.pool.acquire() as conn:
        return refund_json(await repo.refund(conn, *key))


async def find_refund(svc: Services, caller, sub_mchid: str, out_refund_no: str) -> dict | None:
    """A refund as its query answers it; None when missing or another store's."""
    async with svc.pool.acquire() as conn:
        row = await repo.refund(conn, caller.mall_id, sub_mchid, out_refund_no)
    if row is None or not caller.sees_store(row["sub_mchid"]):
        return None
    return refund_json(row)


async def _check_store_can_pay(conn, mall_id: str, sub_mchid: str, plan: RefundPlan) -> None:
    """Refuse up front what the channel would refuse after the receivers had returned
    their shares: the store's own part beyond this order's frozen money comes from its
    available balance, which the ledger mirrors."""
    available = await ledger_repo.balance_for_update(conn, mall_id, accounts.tenant_available(sub_mchid))
    committed = await repo.in_flight_refund_draw(conn, mall_id, sub_mchid)
    need = plan.available_draw_fen
    if need > 0 and available - committed < need:
        raise StoreBalanceInsufficient(available=max(0, available - committed), needed=need)


async def _order(svc: Services, mall_id: str, req: RefundRequest):
    async with svc.pool.acquire() as conn:
        if req.out_trade_no is not None:
            order = await orders_repo.order(conn, mall_id, req.sub_mchid, req.out_trade_no)
        else:
            order = await orders_repo.order_by_transaction_id(conn, mall_id, req.sub_mchid, req.transaction_id)
    if order is None:
        raise NotFound("order", "order_not_exist")
    if order["state"] != "SUCCESS":
        raise Refused("order_not_paid", "only a paid order can be refunded")
    return order


async def _prepare_returns(svc, conn, trade_key, refund, plan: RefundPlan) -> None:
    """Each merchant receiver's share comes back from the splits that paid it, newest first."""
    mall_id, sub_mchid, out_trade_no = trade_key
    splits = [(s["out_order_no"], [(p.get("ledger_account"), p["account"], p["amount"]) for p in s["parts"]])
              for s in await repo.split_orders_of_trade(conn, *trade_key)
              if s["state"] == "FINISHED" and s["kind"] == "split"]
    returned = await repo.returned_by_split(conn, *trade_key)
    for number, (out_order_no, account, mchid, fen) in enumerate(
            order_funds.allocate_returns(plan.returns, splits, returned), start=1):
        out_return_no = "RT" + hashlib.sha1(f"{refund['out_refund_no']}/{number}".encode()).hexdigest()[:30]
        await repo.insert_return(
            conn, mall_id=mall_id, sub_mchid=sub_mchid, out_return_no=out_return_no,
            out_order_no=out_order_no, out_trade_no=out_trade_no, return_mchid=mchid,
            ledger_account=account, amount_fen=fen, request_hash="refund", client_id=None,
            out_refund_no=refund["out_refund_no"], created_at=svc.clock())


async def drive(svc: Services, mall_id: str, sub_mchid: str, out_refund_no: str) -> bool:
    """One step further; True once the refund has ended (SUCCESS or ABNORMAL)."""
    key = (mall_id, sub_mchid, out_refund_no)
    async with svc.pool.acquire() as conn:
        refund = await repo.refund(conn, *key)
        planned_returns = await repo.returns_of_refund(conn, *key)
    if refund["state"] in ("SUCCESS", "ABNORMAL", "CLOSED"):
        return True
    if refund["state"] == "PREPARED":
        for item in planned_returns:
            if item["state"] in ("PREPARED", "PROCESSING"):
                item = await returns.advance(svc, item)
            if item["state"] == "FAILED":
                for other in planned_returns:  # a return in flight is asked about before the close
                    if other["state"] == "PROCESSING" and other["out_return_no"] != item["out_return_no"]:
                        await returns.advance(svc, other, ask_only=True)
                return await _closed(svc, refund, "split_return_failed")
            if item["state"] != "SUCCESS":
                return False
        await _ask_channel_to_refund(svc, refund)
        return False
    answer = await svc.channel.query_refund(sub_mchid, out_refund_no)
    if answer is None:
        return False
    return await apply_channel_refund(svc, refund, answer.status, answer.success_at, answer.refund_id)


async def _ask_channel_to_refund(svc: Services, refund) -> None:
    key = (refund["mall_id"], refund["sub_mchid"], refund["out_refund_no"])
    try:
        answer = await svc.channel.request_refund(ChannelRefundRequest(
            sub_mchid=refund["sub_mchid"], transaction_id=refund["transaction_id"], out_trade_no=None,
            out_refund_no=refund["out_refund_no"], refund_fen=refund["amount_fen"],
            total_fen=refund["total_fen"], currency="CNY", reason=refund["reason"],
            notify_url=svc.channel_notify_url))
    except ChannelError as exc:
        if exc.retryable:
            raise
        await _closed(svc, refund, exc.code)
        return
    async with svc.pool.acquire() as conn:
        await repo.mark_refund(conn, key, "PROCESSING", result={"channel_refund_id": answer.refund_id})
    if answer.status is not ChannelRefundState.PROCESSING:
        await apply_channel_refund(svc, refund, answer.status, answer.success_at, answer.refund_id)


async def apply_channel_refund(svc: Services, refund, status, success_at, channel_refund_id) -> bool:
    """The channel's word on a refund (query answer or REFUND.* notification)."""
    if status is ChannelRefundState.SUCCESS:
        await _succeeded(svc, refund, success_at or svc.clock())
        return True
    if status is ChannelRefundState.ABNORMAL:
        await _abnormal(svc, refund)
        return True
    if status is ChannelRefundState.CLOSED:
        return await _closed(svc, refund, status.value)
    return False


async def _succeeded(svc: Services, refund, success_at) -> None:
    if await _money_left_store(svc, refund, "SUCCESS", postings.refund_transfer, success_at=success_at):
        log.info("refund_succeeded", out_refund_no=refund["out_refund_no"], refund_fen=refund["amount_fen"])


async def _abnormal(svc: Services, refund) -> None:
    """The channel took the refund's money but could not pay the shopper (a closed card):
    the money waits at the channel (`channel:refunds_held`) for handling by hand, and the
    order stays refunded by that amount."""
    if await _money_left_store(svc, refund, "ABNORMAL", postings.held_refund_transfer,
                               result={"fail_reason": "ABNORMAL"}):
        log.error("refund_abnormal", out_refund_no=refund["out_refund_no"])


async def _money_left_store(svc: Services, refund, state: str, transfer_of, *, success_at=None,
                            result=None) -> bool:
    """The channel took the refund's money from the store: record the guides' debt and the
    transfer, announce it. False when an earlier notice or query recorded it already."""
    key = (refund["mall_id"], refund["sub_mchid"], refund["out_refund_no"])
    plan = _plan_of(refund)
    now = svc.clock()
    async with svc.pool.acquire() as conn, conn.transaction():
        row = await repo.mark_refund(conn, key, state, result=result, success_at=success_at)
        if row is None:
            return False
        if plan.owed:
            await ledger_repo.post_transfer(conn, refund["mall_id"], postings.owed_transfer(
                refund["sub_mchid"], refund["out_refund_no"], list(plan.owed)), now)
        await ledger_repo.post_transfer(conn, refund["mall_id"], transfer_of(
            refund["sub_mchid"], refund["out_refund_no"], plan), now)
        await points.reverse_for_refund(svc, conn, refund, now)
        await coupon_redemption.after_refund(conn, refund, now)
        await _announce(conn, svc, refund, row)
    return True


async def _closed(svc: Services, refund, reason: str) -> bool:
    """The channel refused the refund (or one of its split returns failed) and no refund
    money moved: give the order's refundable amount back and tell the client. Split
    returns already made stay made (the money is with the store); those never sent end
    FAILED with the refund, and the receivers' lines hold again what was not returned.
    A return the channel is still working on (PROCESSING) could go either way: the refund
    then closes later, once it has ended (False now). True once the refund has ended."""
    key = (refund["mall_id"], refund["sub_mchid"], refund["out_refund_no"])
    trade_key = (refund["mall_id"], refund["sub_mchid"], refund["out_trade_no"])
    plan = _plan_of(refund)
    now = svc.clock()
    async with svc.pool.acquire() as conn, conn.transaction():
        _, funds = await repo.funds_for_update(conn, trade_key)
        planned_returns = await repo.returns_of_refund(conn, *key)
        if any(item["state"] == "PROCESSING" for item in planned_returns):
            return False
        row = await repo.mark_refund(conn, key, "CLOSED", result={"fail_reason": reason})
        if row is None:
            return True
        not_returned = []
        for item in planned_returns:
            if item["state"] == "PREPARED":
                item = await repo.mark_return(conn, (item["mall_id"], item["sub_mchid"], item["out_return_no"]),
                                              "FAILED", result={"fail_reason": repo.CLOSED_UNSENT},
                                              finished_at=now) \
                    or await repo.split_return(conn, item["mall_id"], item["sub_mchid"], item["out_return_no"])
            if item["state"] == "FAILED":
                not_returned.append((item["ledger_account"], item["amount_fen"]))
        released, funds = order_funds.undo_refund(funds, plan, tuple(not_returned))
        if released:
            # The order was unfrozen meanwhile: the channel released this money to the store too.
            await ledger_repo.post_transfer(conn, refund["mall_id"], postings.unfreeze_transfer(
                refund["sub_mchid"], refund["out_refund_no"], released), now)
        await repo.save_funds(conn, trade_key, funds)
        await _announce(conn, svc, refund, row)
    log.warning("refund_closed", out_refund_no=refund["out_refund_no"], reason=reason)
    return True


async def _announce(conn, svc: Services, refund, row) -> None:
    """The refund's end, to the client at the refund's notify_url (or the order's)."""
    await outbox_repo.insert_order_event(
        conn, order_key=(refund["mall_id"], refund["sub_mchid"], refund["out_trade_no"]),
        notification_id=uuid.uuid4(), ref=f"{refund['sub_mchid']}/{refund['out_refund_no']}", now=svc.clock(),
        notify_url=refund["notify_url"], **refund_notice(row).columns())


def _plan_of(refund) -> RefundPlan:
    return RefundPlan.from_json(refund["plan"])
