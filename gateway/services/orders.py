"""Orders: create (idempotent per out_trade_no), query, close."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from gateway.channel import ChannelError, ChannelNotFound, ChannelOrderRequest
from gateway.domain_errors import (
    ChannelRefused, ChannelUnavailable, InProgress, KeyReused, NotFound, NotPermitted, Refused,
)
from gateway.nonces import RequestNonce
from gateway.repo import guides as guides_repo
from gateway.repo import orders as orders_repo
from gateway.repo import tenants as tenants_repo
from gateway.caller import Caller
from gateway.services import coupon_redemption, payments
from gateway.services.context import Services
from gateway.shapes.transactions import created_json, order_json
from gateway.wire import to_wechat_time

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A partner JSAPI order to open, as parsed at the edge (`gateway.api.requests.orders`)."""

    sp_appid: str
    sp_mchid: str
    sub_mchid: str
    sub_appid: str | None
    description: str
    out_trade_no: str
    time_expire: datetime | None
    attach: str | None
    notify_url: str
    total_fen: int
    currency: str
    payer_sp_openid: str | None
    payer_sub_openid: str | None
    profit_sharing: bool
    mall_info: dict
    request_hash: str


async def create_order(svc: Services, caller: Caller, req: OrderRequest, nonce: RequestNonce | None = None) -> dict:
    """Open the order at the channel once; every duplicate gets the first response.
    `nonce`: the request's, recorded by the order's insert (a replay is refused there)."""
    key = (caller.mall_id, req.sub_mchid, req.out_trade_no)
    now = svc.clock()
    async with svc.pool.acquire() as conn:
        await _check_guide(conn, caller.mall_id, req)
        if "coupon_id" in req.mall_info:
            row = await _insert_reserving_coupon(conn, _order_values(svc, caller, req, now), nonce, now)
        else:  # one statement: no BEGIN and COMMIT round trips around it
            row = await orders_repo.insert_order(conn, _order_values(svc, caller, req, now), nonce)
        if row is None:
            row = await orders_repo.order(conn, *key)
        if row is None and await tenants_repo.tenant(conn, caller.mall_id, req.sub_mchid) is None:
            raise NotPermitted("store_not_in_mall", "sub_mchid is not a store of this mall")
    if row is None:
        raise InProgress("request_in_progress", "retry shortly")  # raced with a channel refusal
    if row["request_hash"] != req.request_hash:
        raise KeyReused("out_trade_no")
    if row["create_response"] is not None:
        return row["create_response"]
    if row["state"] != "NOTPAY":
        raise Refused("order_closed", "the order is closed")
    try:
        prepay_id = await svc.channel.create_jsapi_order(_channel_request(svc, row))
    except ChannelError as exc:
        if exc.retryable:
            raise ChannelUnavailable() from None
        async with svc.pool.acquire() as conn:
            await orders_repo.forget_unopened_order(conn, key, req.request_hash)
        raise ChannelRefused("order", exc.code, reason="channel_rejected") from None
    response = created_json(prepay_id, pay_params(svc, row, prepay_id))
    async with svc.pool.acquire() as conn:
        return await orders_repo.store_create_response(conn, key, prepay_id, response)


async def _insert_reserving_coupon(conn, values: dict, nonce: RequestNonce | None, now: datetime):
    """The order and its coupon's reservation, together. A refused reservation rolls the
    nonce's record back with the order, so the nonce is left to be recorded on its own."""
    try:
        async with conn.transaction():
            row = await orders_repo.insert_order(conn, values, nonce)
            if row is not None:
                await coupon_redemption.reserve(conn, row, now)
            return row
    except Exception:
        if nonce is not None:
            nonce.rolled_back()
        raise


async def _check_guide(conn, mall_id: str, req: OrderRequest) -> None:
    """An order naming a guide names one of its own store: the reward would otherwise be
    skipped without anyone knowing."""
    guide_id = req.mall_info.get("guide_id")
    if guide_id is None:
        return
    guide = await guides_repo.guide(conn, mall_id, guide_id)
    if guide is None:
        raise Refused("guide_not_found", "mall_info.guide_id names no guide of this mall", guide_id=guide_id)
    if guide["sub_mchid"] != req.sub_mchid:
        raise Refused("guide_of_another_store", "mall_info.guide_id names a guide of another store",
                      guide_id=guide_id)


def pay_params(svc: Services, row, prepay_id: str) -> dict:
    """What the mini-program passes to wx.requestPayment, signed with the mall's key."""
    app_id = row["sub_appid"] if row["payer_sub_openid"] else row["sp_appid"]
    return svc.channel.jsapi_pay_params(app_id, prepay_id)


def _order_values(svc: Services, caller: Caller, req: OrderRequest, now: datetime) -> dict:
    expire = req.time_expire or now + timedelta(seconds=svc.settings.order_expire_after_s)
    return {
        "mall_id": caller.mall_id, "sub_mchid": req.sub_mchid, "out_trade_no": req.out_trade_no,
        "client_id": caller.client_id, "request_hash": req.request_hash, "sp_appid": req.sp_appid,
        "sub_appid": req.sub_appid, "description": req.description, "total_fen": req.total_fen,
        "currency": req.currency, "payer_sp_openid": req.payer_sp_openid,
        "payer_sub_openid": req.payer_sub_openid, "notify_url": req.notify_url,
        "attach": req.attach, "profit_sharing": req.profit_sharing, "time_expire": expire, "mall_info": req.mall_info,
        "created_at": now,
        "next_check_at": now + timedelta(seconds=svc.settings.unpaid_order_query_after_s),
    }


def _channel_request(svc: Services, row) -> ChannelOrderRequest:
    # Built only from the stored order, so concurrent duplicates ask the channel for
    # exactly the same order and get the same prepay_id back.
    return ChannelOrderRequest(
        sp_appid=row["sp_appid"], sp_mchid=row["mall_id"], sub_mchid=row["sub_mchid"],
        sub_appid=row["sub_appid"], description=row["description"],
        out_trade_no=row["out_trade_no"], total_fen=row["total_fen"], currency=row["currency"],
        payer_sp_openid=row["payer_sp_openid"], payer_sub_openid=row["payer_sub_openid"],
        notify_url=svc.channel_notify_url, profit_sharing=row["profit_sharing"],
        time_expire=to_wechat_time(row["time_expire"]), attach=row["attach"],
    )


def check_scope(caller: Caller, sp_mchid: str | None) -> None:
    """Another store's orders are not refused here: they are looked up and then answered
    as missing (query_order), so a tenant cannot tell them from orders that do not exist."""
    if not caller.names_its_mall(sp_mchid):
        raise NotPermitted("sp_mchid_not_yours", "sp_mchid is not the caller's mall")
    if caller.role not in ("mall_app", "tenant", "admin", "finance"):
        raise NotPermitted("role_cannot_read_orders")


async def query_order(svc: Services, caller: Caller, sp_mchid: str | None, sub_mchid: str, *, out_trade_no=None,
                      transaction_id=None, nonce: RequestNonce | None = None) -> dict:
    """`nonce`: the request's, recorded by the order's read (a replay is refused there)."""
    check_scope(caller, sp_mchid)
    async with svc.pool.acquire() as conn:
        if out_trade_no is not None:
            row = await orders_repo.order(conn, caller.mall_id, sub_mchid, out_trade_no, nonce)
        else:
            row = await orders_repo.order_by_transaction_id(conn, caller.mall_id, sub_mchid, transaction_id, nonce)
    if row is None or not caller.sees_store(row["sub_mchid"]):
        raise NotFound("order", "order_not_exist")
    if _worth_asking_channel(svc, row):
        row = await payments.sync_with_channel(svc, row) or row
    return order_json(row)


def _worth_asking_channel(svc: Services, row) -> bool:
    """An unpaid opened order old enough that a lost notification is plausible."""
    if row["state"] != "NOTPAY" or row["prepay_id"] is None:
        return False
    age_s = (svc.clock() - row["created_at"]).total_seconds()
    return age_s >= svc.settings.query_sync_after_s


async def close_order(svc: Services, caller: Caller, sp_mchid: str | None, sub_mchid: str,
                      out_trade_no: str) -> None:
    check_scope(caller, sp_mchid)
    if caller.role != "mall_app":
        raise NotPermitted("role_cannot_close_orders")
    key = (caller.mall_id, sub_mchid, out_trade_no)
    async with svc.pool.acquire() as conn:
        row = await orders_repo.order(conn, *key)
    if row is None:
        raise NotFound("order", "order_not_exist")
    if row["state"] == "SUCCESS":
        raise _order_paid()
    if row["state"] == "CLOSED":
        return
    try:
        await svc.channel.close_order(sub_mchid, out_trade_no)
    except ChannelNotFound:
        pass  # never opened there: closing ours is all there is to do
    except ChannelError:
        row = await payments.sync_with_channel(svc, row)
        if row is not None and row["state"] == "SUCCESS":
            raise _order_paid() from None
        raise ChannelUnavailable() from None
    async with svc.pool.acquire() as conn:
        closed = await orders_repo.close_order(conn, key, svc.clock())
    if not closed:
        row = await _reload(svc, key)
        if row["state"] == "SUCCESS":
            raise _order_paid()


def _order_paid() -> Refused:
    return Refused("order_paid", "the order is paid and cannot be closed")


async def _reload(svc: Services, key):
    async with svc.pool.acquire() as conn:
        return await orders_repo.order(conn, *key)
